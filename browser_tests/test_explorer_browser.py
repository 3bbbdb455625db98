"""The noise explorer as a user meets it: JupyterLab in headless Chromium, Run All, then the widgets.

Run with `make test-browser` (it installs Chromium and Playwright). Not part of `make test`: it needs a browser and
takes a few minutes. Skips when no Chromium is installed. The screenshot lands in outputs/browser/."""

from __future__ import annotations

import base64
import re
import shutil
import time
import urllib.parse
import urllib.request

import pytest

from labtools import CHROMIUM_FLAGS, ROOT, SHOTS, _chromium, start_lab


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of the notebook (the committed one is never saved)."""
    work = tmp_path / "lab"
    work.mkdir()
    shutil.copy(ROOT / "notebooks" / "noise_explorer.ipynb", work / "noise_explorer.ipynb")
    (tmp_path / "project").mkdir()
    with start_lab(tmp_path, root_dir=work, project=tmp_path / "project") as served:
        yield served


def _svgs(page) -> list[str]:
    """The SVG figures the explorer's output area shows (inline, or as data: images as JupyterLab renders them)."""
    found = page.evaluate("""() => {
        const area = document.querySelector('.nlkit-figures') || document;
        const out = [];
        area.querySelectorAll('img[src^="data:image/svg+xml"]').forEach(i => out.push(i.getAttribute('src')));
        area.querySelectorAll('.jp-RenderedSVG svg, .widget-output svg').forEach(s => out.push(s.outerHTML));
        return out;
    }""")
    texts = []
    for src in found:
        if src.startswith("data:"):
            head, data = src.split(",", 1)
            texts.append(base64.b64decode(data).decode() if ";base64" in head else urllib.parse.unquote(data))
        else:
            texts.append(src)
    return texts


def _status(page) -> str:
    return page.locator(".nlkit-status").inner_text()


def _wait_drawn(page, expected_label: str, timeout: float = 120) -> None:
    """Until the status names the expected setting and no redraw is pending."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = _status(page) if page.locator(".nlkit-status").count() else ""
        if expected_label in text and "redrawing" not in text:
            return
        time.sleep(0.25)
    raise AssertionError(f"explorer never showed {expected_label!r}; status: {text!r}")


def _expected_rate(noise: str, rate: float, seed: int) -> float:
    from nlkit.data import load_dataset
    from nlkit.noise.setting import apply_noise_model

    return apply_noise_model(load_dataset("digits"), noise, rate, seed).realised_rate


def _check_figures(page, label: str, realised: float, flipped: int | None = None, classes=None) -> None:
    svgs = _svgs(page)
    assert len(svgs) == 3, f"expected the explorer's 3 figures, found {len(svgs)}"
    joined = "\n".join(svgs)
    assert all(label in s for s in svgs), f"a figure title does not name {label!r}"
    assert f"realised rate {realised:.1%}".replace("%", "%") in joined.replace("&#37;", "%")
    framed = len(re.findall(r'id="flipped-image-\d+"', svgs[0]))
    if flipped is not None:
        assert framed == flipped
    assert f"{framed} of " in svgs[0]
    if classes:
        shown = re.findall(r">\s*\d \((\d)\)\s*<", svgs[0])
        assert shown and set(shown) <= set(classes), shown


def test_noise_explorer_in_jupyterlab(lab):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium, or `make test-browser`)")
    playwright = pytest.importorskip("playwright.sync_api")
    from nlkit.noise.setting import NOISE_MODELS

    base, token = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with playwright.sync_playwright() as p, __import__("tempfile").TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                   args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1500})
        page = ctx.new_page()
        try:
            page.goto(f"{base}/lab/tree/noise_explorer.ipynb?token={token}")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel && "
                                   "window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
                                   " === 'idle'", timeout=120_000)
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".nlkit-status .nlkit-realised", timeout=240_000)
            _wait_drawn(page, "digits, sym p=0.4, seed 0")
            _check_figures(page, "digits, sym p=0.4, seed 0", _expected_rate("sym", 0.4, 0))
            # Run All draws the initial setting once, in the explorer only: no duplicated figures in the notebook
            figures = page.evaluate("() => Array.from(document.querySelectorAll("
                                    "'.jp-CodeCell .jp-OutputArea-output img')).map(i => i.src.slice(0, 30))")
            assert len(figures) == 3, f"{figures}: after Run All the notebook shows the explorer's 3 figures only"
            t_run_all = time.time() - t0

            # noise model: asym (its map defaults to asym_c10, shown in the dropdown)
            page.locator(".widget-dropdown:has(label:text-is('noise')) select").select_option(
                index=list(NOISE_MODELS).index("asym"))
            _wait_drawn(page, "digits, asym/asym_c10 p=0.4, seed 0")
            _check_figures(page, "digits, asym/asym_c10 p=0.4, seed 0", _expected_rate("asym", 0.4, 0))
            map_select = page.locator(".widget-dropdown:has(label:text-is('asym map')) select")
            assert "asym_c10" in map_select.evaluate("s => s.options[s.selectedIndex].text")

            # rate: type into the slider's readout
            readout = page.locator(".widget-slider:has(label:text-is('rate p')) .widget-readout")
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("0.2")
            page.keyboard.press("Enter")
            _wait_drawn(page, "digits, asym/asym_c10 p=0.2, seed 0")
            _check_figures(page, "digits, asym/asym_c10 p=0.2, seed 0", _expected_rate("asym", 0.2, 0))

            # seed
            seed_box = page.locator(".widget-text:has(label:text-is('seed')) input")
            seed_box.fill("7")
            seed_box.press("Enter")
            _wait_drawn(page, "digits, asym/asym_c10 p=0.2, seed 7")
            _check_figures(page, "digits, asym/asym_c10 p=0.2, seed 7", _expected_rate("asym", 0.2, 7))

            # quick successive changes: the last one wins, and the figures shown are the last setting's
            for value in ("1", "2", "9"):
                seed_box.fill(value)
                seed_box.press("Enter")
            _wait_drawn(page, "digits, asym/asym_c10 p=0.2, seed 9")
            _check_figures(page, "digits, asym/asym_c10 p=0.2, seed 9", _expected_rate("asym", 0.2, 9))
            seed_box.fill("7")
            seed_box.press("Enter")
            _wait_drawn(page, "digits, asym/asym_c10 p=0.2, seed 7")

            # clean labels: nothing is framed
            page.locator(".widget-dropdown:has(label:text-is('noise')) select").select_option(
                index=list(NOISE_MODELS).index("clean"))
            _wait_drawn(page, "digits, clean, seed 7")
            _check_figures(page, "digits, clean, seed 7", 0.0, flipped=0)
            page.locator(".widget-dropdown:has(label:text-is('noise')) select").select_option(
                index=list(NOISE_MODELS).index("asym"))
            _wait_drawn(page, "digits, asym/asym_c10 p=0.2, seed 7")

            # class filter: the grid shows only those clean classes
            page.locator(".widget-select-multiple:has(label:text-is('classes')) select").select_option(["3", "5"])
            page.wait_for_function("() => document.querySelector('.nlkit-status').innerText.includes('classes 3, 5')"
                                   " && !document.querySelector('.nlkit-status').innerText.includes('redrawing')",
                                   timeout=120_000)
            _check_figures(page, "digits, asym/asym_c10 p=0.2, seed 7", _expected_rate("asym", 0.2, 7), classes={"3", "5"})

            news = page.locator("button.jp-toast-button", has_text="No")  # Lab's "get news?" prompt
            if news.count():
                news.first.click()
            page.locator(".nlkit-status").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "noise_explorer.png"), full_page=True)
        except BaseException:
            page.screenshot(path=str(SHOTS / "noise_explorer_failed.png"), full_page=True)
            raise
        finally:
            ctx.close()
    print(f"Run All until the explorer drew: {t_run_all:.0f} s; whole test: {time.time() - t0:.0f} s")
