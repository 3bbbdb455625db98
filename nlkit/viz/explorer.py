"""The noise explorer: draw what a noise model did to a dataset (grid, heatmap, per-class bars), once
(papermill, scripts) or behind ipywidgets controls (JupyterLab, Colab)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..noise import NoiseResult, noise_report
from ..noise.maps import default_asym_map
from ..noise.setting import (
    NOISE_MODEL_HELP,
    NOISE_MODELS,
    apply_noise_model,
    classifier_probabilities,
)


def noise_figures(dataset, result: NoiseResult, *, class_filter=None, nominal: float | None = None,
                  n_images: int = 32, seed: int = 0, label: str = "",
                  which=("grid", "transition", "per_class")) -> dict:
    """The explorer's three figures for one setting: 'grid', 'transition', 'per_class' (or those in `which`)."""
    from . import figures as viz

    classes = dataset.classes
    rep = noise_report(result.clean, result.noisy, dataset.num_classes)
    pool = None
    if class_filter:
        unknown = [c for c in class_filter if c not in classes]
        if unknown:
            raise UserError(f"class filter names unknown classes {unknown}; classes are {classes}")
        pool = np.flatnonzero(np.isin(result.clean, [classes.index(c) for c in class_filter]))
    suffix = f" - {label}" if label else ""
    draw = {
        "grid": lambda: viz.image_grid(dataset.train_images, result.noisy, result.clean, classes, indices=pool,
                               n=n_images, seed=seed,
                                       title=f"noisy label (clean label); red = flipped{suffix}"),
        "transition": lambda: viz.transition_heatmap(
            np.asarray(rep["transition_matrix"]), classes,
            title=f"P(noisy | clean), realised rate {rep['noise_rate']:.1%}{suffix}"),
        "per_class": lambda: viz.per_class_noise_bars(rep["per_class_noise_rate"], classes, overall=rep["noise_rate"],
                                                      nominal=nominal, title=f"noise rate per clean class{suffix}"),
    }
    return {name: draw[name]() for name in which}


def setting_title(dataset: str, noise: str, rate: float | None, seed: int) -> str:
    """'digits, sym p=0.4, seed 0': what a figure shows (no rate for clean labels and label files)."""
    return f"{dataset}, {noise}" + (f" p={rate:g}" if rate is not None else "") + f", seed {seed}"


def parse_seed(text) -> int:
    """A seed typed into the explorer: an integer in [0, 2^32), else one clear line."""
    try:
        seed = int(str(text).strip())
    except ValueError:
        raise UserError(f"the seed must be a whole number in [0, 2^32), got {text!r}") from None
    if not 0 <= seed < 2**32:
        raise UserError(f"the seed must be a whole number in [0, 2^32), got {text!r}")
    return seed


def noise_name(s: dict, num_classes: int) -> str:
    """The noise model as a title names it: the asymmetric map it used ('asym/asym_c10') and the label file's name
    ('file cifar10-1-0.35.npy'), so two settings never share a title."""
    if s["noise"] == "asym":
        try:
            return f"asym/{s.get('asym_map') or default_asym_map(num_classes)}"
        except UserError:
            return "asym"
    if s["noise"] == "file" and s.get("label_file"):
        path, _, field = str(s["label_file"]).partition(":")
        return f"file {Path(path).name}" + (f":{field}" if field else "")
    return s["noise"]


def label_file_stamp(s: dict) -> tuple | None:
    """What tells a label file's versions apart (its size and modification time, to the nanosecond), so that a
    file rewritten at the same path is read again rather than its old labels shown from the cache. None for a
    setting without one (or a file that is not there: reading it reports that)."""
    if s.get("noise") != "file" or not s.get("label_file"):
        return None
    from ..io import project_path
    from ..noise.labelfiles import split_label_spec

    try:
        st = project_path(split_label_spec(s["label_file"])[0]).stat()
    except (OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


def available_datasets(data_root=None, candidates=None, loaded: dict | None = None) -> list[str]:
    """The datasets that load on this machine without a download (digits always does); `loaded` receives them,
    so the explorer does not read them twice."""
    from ..data import load_dataset
    from ..data.registry import DATASETS

    found = []
    for name in candidates or DATASETS:
        try:
            ds = load_dataset(name, data_root=data_root, download=False)
        except Exception:  # noqa: BLE001 - missing or unreadable data: not offered
            continue
        found.append(name)
        if loaded is not None:
            loaded[name] = ds
    return found


def figure_svg(fig) -> str:
    """SVG with real <text> elements: titles stay readable (and searchable) in the rendered notebook."""
    import io

    import matplotlib.pyplot as plt

    import re

    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", dpi=72)  # 72 dpi: images of a few dozen pixels need no more
    plt.close(fig)
    # scale down to the output area instead of being clipped by it (the 8-column grid is wider than a Lab output
    # beside the file browser at 1400 px): width follows the container up to the natural size, height the viewBox
    return re.sub(r'<svg([^>]*?) width="([\d.]+pt)" height="[\d.]+pt"',
                  r'<svg\1 width="100%" style="max-width: \2; height: auto"', buf.getvalue(), count=1)


class Explorer:
    """State behind the widget: caches and a single drawing worker.

    Noisy labels are cached per setting, PMD's classifier per dataset, and each figure per the settings it depends
    on (a class-filter change redraws only the image grid). Redraws are serialised: a change while a redraw is in
    flight supersedes it, the worker then draws the latest controls, and only a drawing that still matches the
    controls is shown, so the final figures always match the final controls."""

    def __init__(self, data_root=None, background: bool = True):
        self.data_root = data_root
        self.background = background
        self._datasets: dict = {}
        self._probs: dict = {}
        self._noise: dict = {}
        self._svgs: dict = {}
        self._lock = threading.Lock()     # one drawing at a time (pyplot is not thread-safe)
        self._wanted = 0                  # generation of the latest control change
        self._worker: threading.Thread | None = None
        self._cv = threading.Condition()
        self._running = False
        self.drawn: dict | None = None    # the settings of the figures on screen

    def dataset(self, name):
        if name not in self._datasets:
            from ..data import load_dataset

            self._datasets[name] = load_dataset(name, data_root=self.data_root)
        return self._datasets[name]

    def probs(self, name):
        if name not in self._probs:
            ds = self.dataset(name)
            self._probs[name] = classifier_probabilities(ds.train_images, ds.train_labels)
        return self._probs[name]

    def noise(self, s: dict) -> NoiseResult:
        key = (s["dataset"], s["noise"], s["rate"], s["seed"], s["asym_map"], s["label_file"],
               label_file_stamp(s))
        if key not in self._noise:
            if len(self._noise) >= 32:
                self._noise.pop(next(iter(self._noise)))
            ds = self.dataset(s["dataset"])
            self._noise[key] = apply_noise_model(ds, s["noise"], s["rate"], s["seed"], asym_map=s["asym_map"],
                                                 label_file=s["label_file"],
                                                 probs=self.probs(s["dataset"]) if s["noise"] == "pmd" else None)
        return self._noise[key]

    def figures(self, s: dict) -> tuple[dict, dict]:
        """{'grid'|'transition'|'per_class': svg} for a setting and a summary of it; cached figures are reused."""
        import matplotlib.pyplot as plt

        from . import figures as viz

        ds, res = self.dataset(s["dataset"]), self.noise(s)
        nominal = None if s["noise"] in ("clean", "file") else s["rate"]
        label = setting_title(s["dataset"], noise_name(s, ds.num_classes), nominal, s["seed"])
        rep_key = ("report", label_file_stamp(s)) + tuple(sorted((k, v) for k, v in s.items()
                                                                   if k not in ("classes", "n_images")))
        if rep_key not in self._svgs:
            rep = noise_report(res.clean, res.noisy, ds.num_classes)
            figs = noise_figures(ds, res, nominal=nominal, label=label, which=("transition", "per_class"))
            if s["noise"] == "file":  # a real noise pattern (CIFAR-N): beside class-independent noise of its rate
                figs["vs_symmetric"] = viz.flip_matrix_vs_symmetric(res.clean, res.noisy, ds.classes,
                                                                    name=noise_name(s, ds.num_classes),
                                                                    seed=s["seed"])
            self._svgs[rep_key] = ({k: figure_svg(f) for k, f in figs.items()}, float(rep["noise_rate"]))
        svgs, realised = self._svgs[rep_key]
        grid_key = rep_key + (("classes", s["classes"]), ("n", s["n_images"]))
        if grid_key not in self._svgs:
            classes = list(s["classes"]) or None
            pool = None
            if classes:
                pool = np.flatnonzero(np.isin(res.clean, [ds.classes.index(c) for c in classes]))
            fig = viz.image_grid(ds.train_images, res.noisy, res.clean, ds.classes, indices=pool, n=s["n_images"],
                                 seed=s["seed"], title=f"noisy label (clean label) - {label}"
                                 + (f", clean classes {', '.join(classes)}" if classes else ""))
            shown = [a for a in fig.axes[0].patches if (a.get_gid() or "").startswith("flipped-image")]
            self._svgs[grid_key] = (figure_svg(fig), len(shown))
            plt.close("all")
        grid, flipped = self._svgs[grid_key]
        if len(self._svgs) > 64:
            self._svgs.pop(next(iter(self._svgs)))
        return ({"grid": grid, **svgs},
                {"label": label, "realised_rate": realised, "flipped_shown": flipped})

    def request(self, read_controls, show, show_error):
        """A control changed: draw the latest controls (now, or on the worker)."""
        with self._cv:
            self._wanted += 1
            if not self.background:
                pass
            elif self._running:
                return  # the running worker picks the new controls up when its drawing ends
            else:
                self._running = True
                self._worker = threading.Thread(target=self._draw_latest, args=(read_controls, show, show_error),
                                                daemon=True)
                self._worker.start()
                return
        self._draw_latest(read_controls, show, show_error)

    def _draw_latest(self, read_controls, show, show_error):
        while True:
            generation = self._wanted
            settings = None
            try:
                settings = read_controls()  # a malformed entry (a seed of 3.7) is reported like any bad setting
                with self._lock:
                    svgs, summary = self.figures(settings)
            except UserError as e:
                outcome = (show_error, (settings, str(e)))
            except Exception as e:  # noqa: BLE001 - keep the worker alive; say what failed
                outcome = (show_error, (settings, f"{type(e).__name__}: {e}"))
            else:
                outcome = (show, (settings, svgs, summary))
            with self._cv:
                if generation == self._wanted:  # superseded drawings are dropped, never shown
                    outcome[0](*outcome[1])
                    self.drawn = settings
                    self._running = False
                    self._cv.notify_all()
                    return

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the latest controls are drawn (tests, scripts)."""
        with self._cv:
            self._cv.wait_for(lambda: not self._running, timeout)


def cifarn_options(dataset: str, noise_root=None, data_root=None) -> list[tuple[str, str]]:
    """The CIFAR-N label sets the explorer offers for a dataset: [(shown, spec PATH:KEY)], empty when the release
    file is not found (or is not the published one). Never downloads."""
    from ..noise import cifarn

    if not cifarn.available(dataset, noise_root, data_root):
        return []
    path = cifarn.find_file(dataset, noise_root, data_root, download=False)
    return [(f"{dataset}n {name} ({key})", f"{path}:{key}") for name, key in cifarn.LABEL_SETS[dataset].items()]


def explorer_widget(datasets=None, data_root=None, initial: dict | None = None, background: bool = True,
                    noise_root=None):
    """Interactive controls (dataset, noise model, rate, seed, map, class filter) that redraw the figures.

    `datasets=None` offers every dataset that loads on this machine. Where the CIFAR-N release file of the dataset
    is found (under `noise_root`, $NLKIT_NOISE_ROOT or <data_root>/noise), a "CIFAR-N" dropdown offers its human
    label sets: choosing one sets the `file` noise model to it. The returned VBox holds the controls, a line
    stating the effective setting and what it realised, and the figures; `.explorer` is its `Explorer`."""
    import ipywidgets as w

    from ..noise import ASYM_MAPS

    initial = initial or {}
    state = Explorer(data_root, background=background)
    names = list(datasets) if datasets else available_datasets(data_root, loaded=state._datasets)
    first = initial.get("dataset") or names[0]
    if first not in names:
        names.insert(0, first)

    ds_box = w.Dropdown(options=names, value=first, description="dataset")
    model_box = w.Dropdown(options=[(f"{m}: {NOISE_MODEL_HELP[m]}", m) for m in NOISE_MODELS],
                           value=initial.get("noise") or "sym", description="noise", layout=w.Layout(width="640px"))
    rate_box = w.FloatSlider(value=initial.get("rate", 0.4), min=0, max=1, step=0.05, description="rate p",
                             continuous_update=False, readout_format=".2f")
    # a text box read strictly: an integer widget turns a typed "3.7" into 37 without a word
    seed_box = w.Text(value=str(initial.get("seed", 0)), description="seed", continuous_update=False)
    # "default" is a real option (never a blank dropdown): its label names the map it stands for
    map_box = w.Dropdown(options=[("default", "default")] + [(m, m) for m in sorted(ASYM_MAPS)],
                         value=initial.get("asym_map") or "default", description="asym map")
    file_box = w.Text(value=initial.get("label_file") or "", description="label file",
                      placeholder="PATH[:FIELD] (noise model file)", continuous_update=False)
    cifarn_box = w.Dropdown(options=[("—", "")], value="", description="CIFAR-N", layout=w.Layout(width="640px"))
    class_box = w.SelectMultiple(options=[], description="classes", rows=6)
    class_note = w.HTML()
    status = w.HTML()
    status.add_class("nlkit-status")
    out = w.Output()
    out.add_class("nlkit-figures")

    def refresh_dataset(*_):
        ds = state.dataset(ds_box.value)
        try:
            default = f"default ({default_asym_map(ds.num_classes)})"
        except UserError:
            default = f"default (none for {ds.num_classes} classes)"
        value = map_box.value
        map_box.options = [(default, "default")] + [(m, m) for m in sorted(ASYM_MAPS)]
        map_box.value = value
        class_box.options = ds.classes
        class_box.value = ()
        label_sets = cifarn_options(ds_box.value, noise_root, data_root)
        cifarn_box.options = [("—", "")] + label_sets
        cifarn_box.value = file_box.value if file_box.value in [v for _, v in label_sets] else ""
        cifarn_box.disabled = not label_sets

    def choose_cifarn(*_):
        if cifarn_box.value:  # the file model, pre-filled with the chosen human label set
            file_box.value = cifarn_box.value
            model_box.value = "file"

    def refresh_enabled():
        model = model_box.value
        rate_box.disabled = model in ("clean", "file")
        map_box.disabled = model != "asym"
        file_box.disabled = model != "file"
        class_note.value = ("shown classes: all (select some to filter the image grid)" if not class_box.value
                            else f"shown classes: {', '.join(class_box.value)}")

    def read_controls() -> dict:
        return {"dataset": ds_box.value, "noise": model_box.value, "rate": float(rate_box.value),
                "seed": parse_seed(seed_box.value), "asym_map": None if map_box.value == "default" else map_box.value,
                "label_file": file_box.value or None, "classes": tuple(class_box.value),
                "n_images": int(initial.get("n_images", 32))}

    def show(settings, svgs, summary):
        from html import escape

        shown = f", clean classes {', '.join(settings['classes'])}" if settings["classes"] else ""
        status.value = (f"<b>{escape(summary['label'] + shown)}</b>: realised rate "
                        f"<span class='nlkit-realised'>{summary['realised_rate']:.1%}</span>; "
                        f"<span class='nlkit-flipped'>{summary['flipped_shown']}</span> of the shown images have "
                        "a flipped label")
        out.outputs = tuple({"output_type": "display_data", "metadata": {},
                             "data": {"image/svg+xml": svg, "text/plain": f"<{name} figure>"}}
                            for name, svg in svgs.items())

    def show_error(settings, message):
        from html import escape

        status.value = f"cannot draw this setting: {escape(message)}"
        out.outputs = ()

    def changed(*_):
        refresh_enabled()
        if background and "redrawing" not in status.value:
            status.value += " <i>(redrawing...)</i>"
        state.request(read_controls, show, show_error)

    refresh_dataset()
    refresh_enabled()
    ds_box.observe(refresh_dataset, "value")
    cifarn_box.observe(choose_cifarn, "value")
    for box in (ds_box, model_box, rate_box, seed_box, map_box, file_box, class_box):
        box.observe(changed, "value")
    # The first drawing happens in the cell itself: a worker still drawing when the cell ends would leave a pyplot
    # figure open for the inline backend to show a second time below the widget.
    state.background = False
    state.request(read_controls, show, show_error)
    state.background = background
    controls = w.VBox([w.HBox([ds_box, seed_box]), model_box, w.HBox([rate_box, map_box]),
                       w.VBox([cifarn_box, file_box]), class_box, class_note])
    ui = w.VBox([controls, status, out])
    ui.explorer = state
    return ui
