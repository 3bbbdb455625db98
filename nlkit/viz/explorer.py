"""The noise explorer: draw what a noise model did to a dataset (grid, heatmap, per-class bars), once
(papermill, scripts) or behind ipywidgets controls (JupyterLab, Colab)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import UserError
from ..noise import NoiseResult, noise_report
from ..noise.setting import (
    NOISE_MODEL_HELP,
    NOISE_MODELS,
    apply_noise_model,
    classifier_probabilities,
)


def noise_figures(dataset, result: NoiseResult, *, class_filter=None, nominal: float | None = None,
                  n_images: int = 32, seed: int = 0, label: str = "") -> dict:
    """The explorer's three figures for one setting: 'grid', 'transition', 'per_class'."""
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
    return {
        "grid": viz.image_grid(dataset.train_images, result.noisy, result.clean, classes, indices=pool,
                               n=n_images, seed=seed,
                               title=f"noisy label (clean label); red = flipped{suffix}"),
        "transition": viz.transition_heatmap(np.asarray(rep["transition_matrix"]), classes,
                                             title=f"P(noisy | clean), realised rate {rep['noise_rate']:.1%}{suffix}"),
        "per_class": viz.per_class_noise_bars(rep["per_class_noise_rate"], classes, overall=rep["noise_rate"],
                                              nominal=nominal, title=f"noise rate per clean class{suffix}"),
    }


def explorer_widget(datasets=("digits",), data_root=None, initial: dict | None = None):
    """Interactive controls (dataset, noise model, rate, seed, map, class filter) that redraw the figures."""
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from ..data import load_dataset
    from ..noise import ASYM_MAPS

    initial = initial or {}

    @lru_cache(maxsize=4)
    def dataset(name):
        return load_dataset(name, data_root=data_root)

    @lru_cache(maxsize=4)
    def probs(name):
        ds = dataset(name)
        return classifier_probabilities(ds.train_images, ds.train_labels)

    ds_box = w.Dropdown(options=list(datasets), value=initial.get("dataset", datasets[0]), description="dataset")
    model_box = w.Dropdown(options=[(f"{m}: {NOISE_MODEL_HELP[m]}", m) for m in NOISE_MODELS],
                           value=initial.get("noise", "sym"), description="noise", layout=w.Layout(width="640px"))
    rate_box = w.FloatSlider(value=initial.get("rate", 0.4), min=0, max=1, step=0.05, description="rate p",
                             continuous_update=False)
    seed_box = w.IntText(value=initial.get("seed", 0), description="seed")
    map_box = w.Dropdown(options=[("default for 10 classes", None)] + [(m, m) for m in sorted(ASYM_MAPS)],
                         value=initial.get("asym_map"), description="asym map")
    file_box = w.Text(value=initial.get("label_file") or "", description="label file",
                      placeholder="PATH[:FIELD]", continuous_update=False)
    class_box = w.SelectMultiple(options=[], description="classes", rows=6)
    out = w.Output()

    def refresh_classes(*_):
        class_box.options = dataset(ds_box.value).classes
        class_box.value = ()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            try:
                ds = dataset(ds_box.value)
                res = apply_noise_model(ds, model_box.value, rate_box.value, seed_box.value, asym_map=map_box.value,
                                        label_file=file_box.value or None,
                                        probs=probs(ds_box.value) if model_box.value == "pmd" else None)
                figs = noise_figures(ds, res, class_filter=list(class_box.value) or None,
                                     nominal=None if model_box.value in ("clean", "file") else rate_box.value,
                                     seed=seed_box.value)
                for fig in figs.values():
                    display(fig)
                    plt.close(fig)
            except UserError as e:
                print(f"cannot draw this setting: {e}")

    ds_box.observe(refresh_classes, "value")
    for box in (ds_box, model_box, rate_box, seed_box, map_box, file_box, class_box):
        box.observe(redraw, "value")
    refresh_classes()
    redraw()
    controls = w.VBox([w.HBox([ds_box, seed_box]), model_box, w.HBox([rate_box, map_box]), file_box, class_box])
    return w.VBox([controls, out])


