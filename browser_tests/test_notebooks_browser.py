"""Every notebook as a researcher meets it on a fresh clone: JupyterLab in headless Chromium, open, Run All, no
error output, save, close; afterwards `git status --porcelain` is empty (the notebook filters and the committed
scripts keep git clean after a Lab session).

Run with `make test-browser`. Skips when no Chromium is installed. Screenshots land in outputs/browser/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labtools import CHROMIUM_FLAGS, ROOT, SHOTS, _chromium, start_lab

# the noise explorer has its own, deeper test (test_explorer_browser.py); here it is only run and saved
NOTEBOOKS = ["tables", "sln", "instancegm", "lra_diffusion", "simclr", "tdsm", "bench", "tsne", "noise_explorer"]
if os.environ.get("NLKIT_BROWSER_NOTEBOOKS"):  # a subset, e.g. while working on one notebook
    NOTEBOOKS = os.environ["NLKIT_BROWSER_NOTEBOOKS"].split(",")
STRIP = ("-m nbstripout --keep-id --extra-keys 'metadata.language_info metadata.widgets metadata.papermill "
         "cell.metadata.execution cell.metadata.papermill'")


@pytest.fixture
def clone(tmp_path):
    """A fresh clone of the committed project with git set up as `make install` sets it up."""
    repo = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(repo)], check=True)
    strip = f"{sys.executable} {STRIP}"
    for key, value in (("filter.nbstripout.clean", strip), ("filter.nbstripout.smudge", "cat"),
                       ("diff.ipynb.textconv", f"{strip} -t")):
        subprocess.run(["git", "config", key, value], cwd=repo, check=True)
    assert _porcelain(repo) == "", "the clone is not clean before the session"
    return repo


def _porcelain(repo: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


ERRORS_JS = """() => {
    const nb = window.jupyterapp.shell.currentWidget;
    const out = [];
    const cells = nb.content.model.cells;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        for (const o of cell.outputs.toJSON()) {
            if (o.output_type === 'error') out.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
        }
    }
    return out;
}"""

DONE_JS = """() => {
    const nb = window.jupyterapp.shell.currentWidget;
    if (!nb || !nb.sessionContext.session || !nb.sessionContext.session.kernel) return false;
    if (nb.sessionContext.session.kernel.status !== 'idle') return false;
    const cells = nb.content.model.cells;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type === 'code' && cell.sharedModel.getSource().trim() && cell.executionCount === null) return false;
    }
    return true;
}"""


def test_every_notebook_runs_in_jupyterlab_and_leaves_git_clean(clone, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium (apt-get install chromium, or `make test-browser`)")
    playwright = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    with start_lab(tmp_path, root_dir=clone, project=clone) as (base, token), \
            playwright.sync_playwright() as p, __import__("tempfile").TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                   args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1500})
        page = ctx.new_page()
        try:
            for name in NOTEBOOKS:
                t0 = time.time()
                page.goto(f"{base}/lab/tree/notebooks/{name}.ipynb?reset&token={token}")
                page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
                page.wait_for_function(DONE_JS.replace("cell.executionCount === null", "false"), timeout=180_000)
                page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
                page.wait_for_timeout(2_000)
                page.wait_for_function(DONE_JS, timeout=900_000, polling=1_000)
                errors = page.evaluate(ERRORS_JS)
                page.screenshot(path=str(SHOTS / f"{name}.png"))
                assert not errors, f"{name}.ipynb: {errors}"
                if name == "tables":
                    _screens_per_paper(page)
                page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
                page.wait_for_timeout(1_500)
                page.evaluate("() => window.jupyterapp.commands.execute('kernelmenu:shutdown')")
                page.wait_for_timeout(500)
                page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
                page.wait_for_timeout(1_000)
                timings[name] = time.time() - t0
        except BaseException:
            page.screenshot(path=str(SHOTS / "notebooks_failed.png"), full_page=True)
            raise
        finally:
            ctx.close()
    print("Run All in JupyterLab, seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    assert _porcelain(clone) == "", f"git is not clean after the Lab session:\n{_porcelain(clone)}"
    saved = (clone / f"notebooks/{NOTEBOOKS[0]}.ipynb").read_text()
    assert '"outputs": [\n' in saved and '"output_type"' in saved, "the session saved no outputs (nothing tested)"
    _commit_an_edit_offline(clone, tmp_path, NOTEBOOKS[0])
    if os.environ.get("NLKIT_KEEP_BROWSER_CLONE"):
        shutil.copytree(clone / "outputs", SHOTS / "clone-outputs", dirs_exist_ok=True)


SECTION_TOPS_JS = """() => {
    const scroller = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')
        || document.querySelector('.jp-NotebookPanel .jp-Notebook');
    const top = e => e.getBoundingClientRect().top + scroller.scrollTop;
    const heads = [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea h3')];
    const end = scroller.scrollHeight;
    return heads.map((h, i) => [h.textContent, top(h), i + 1 < heads.length ? top(heads[i + 1]) : end]);
}"""


def _screens_per_paper(page) -> None:
    """tables.ipynb reads in about one screen per paper and profile: each section (its reading, tables and figure)
    is screenshotted from its heading, and none is taller than three screens of the test's viewport."""
    screen = page.viewport_size["height"]
    sections = page.evaluate(SECTION_TOPS_JS)
    assert sections, "tables.ipynb shows no paper section"
    heights = {}
    for i, (title, top, bottom) in enumerate(sections):
        page.locator(".jp-NotebookPanel .jp-OutputArea h3").nth(i).evaluate(
            "e => e.scrollIntoView({block: 'start'})")
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / f"tables-{i}.png"))
        heights[title] = (bottom - top) / screen
    print("tables.ipynb, screens per section: " + ", ".join(f"{k} {v:.1f}" for k, v in heights.items()))
    assert max(heights.values()) <= 3, f"a section of tables.ipynb is longer than three screens: {heights}"


def _commit_an_edit_offline(clone: Path, tmp_path: Path, name: str) -> None:
    """After the session, an edit of a notebook saved with outputs is committed offline with the hooks installed:
    the commit holds no outputs, the notebook on disk keeps them, and `git status` is clean."""
    import json

    sys.path.insert(0, str(ROOT / "tests"))
    from git_hooks import commit, git, install_hooks, offline_env

    env = offline_env(tmp_path)
    install_hooks(clone, env)
    path = clone / f"notebooks/{name}.ipynb"
    nb = json.loads(path.read_text())
    first = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    first["source"] = list(first["source"]) + ["\n", "An edit made in Lab.\n"]
    path.write_text(json.dumps(nb, indent=1) + "\n")
    git(clone, env, "add", "-A")
    done = commit(clone, env, "an edit made in Lab")
    assert done.returncode == 0, done.stdout + done.stderr
    committed = json.loads(git(clone, env, "show", f"HEAD:notebooks/{name}.ipynb").stdout)
    assert not any(c.get("outputs") for c in committed["cells"] if c["cell_type"] == "code")
    assert any(c.get("outputs") for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert _porcelain(clone) == "", f"git is not clean after an offline commit:\n{_porcelain(clone)}"
