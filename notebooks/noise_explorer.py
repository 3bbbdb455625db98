# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Noise explorer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nlkit/nlkit/blob/main/notebooks/noise_explorer.ipynb)
#
# What does "40% symmetric noise" or "35% PMD noise" actually do to a dataset? This notebook applies one
# label-noise model and shows three things:
#
# 1. a grid of training images titled **noisy label (clean label)**, flipped samples framed in red;
# 2. the **transition matrix** P(noisy | clean), rows = clean class;
# 3. the **noise rate per clean class**, against the overall realised rate and the nominal rate.
#
# Nominal and realised rates often differ (CIFAR-10 asymmetric noise at p = 0.4 flips only 20% of all labels,
# inclusive symmetric noise realises p(C-1)/C), so both are always shown. The last section has interactive
# controls; when papermill runs the notebook (`interactive=False`) it draws the same figures for its parameters
# and saves them to `out_dir`.

# %%
# Colab (opened from the badge): installs the kit (params included) and what this notebook needs, leaving Colab's
# torch as it is, and picks the profile: quick on a GPU runtime, smoke otherwise. downloads=True lets runs fetch
# CIFAR-10 and the CLIP weights. Elsewhere this cell only sets the default profile.
import sys

default_profile = "smoke"
if "google.colab" in sys.modules:
    import subprocess

    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "nlkit @ git+https://github.com/nlkit/nlkit"])
    from nlkit.colab import setup

    default_profile = setup(extras=["notebooks"], downloads=False)

# %% tags=["parameters"]
dataset = "digits"      # digits (embedded), cifar10, cifar100, mnist, animal10n, ...
data_root = None        # folder holding the data when it is not the default
noise = "sym"           # clean, sym, sym-incl, asym, pairflip, idn, pmd, file
rate = 0.4              # nominal rate p
seed = 0
asym_map = None         # e.g. asym_c10, asym_mnist_tdsm, asym_c100_superclass (None: asym_c10 for 10 classes)
label_file = None       # PATH[:FIELD] of a label file (noise model file)
class_filter = None     # e.g. ["3", "5"]: show only these clean classes in the image grid
n_images = 32
interactive = True      # ipywidgets controls (papermill runs set this to False)
out_dir = "outputs/explore/noise_explorer"
# Noise-study runs (`nlkit run params/noise/<cell>.yaml`) set these; the cell's settings then replace the above.
params_file = None
profile = "smoke"
noise_root = None       # folder holding published label files (lra-pmd/, sln/, cifar-n/)

# %%

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from nlkit.data import load_dataset
from nlkit.io import atomic_write_json
from nlkit.noise import noise_report
from nlkit.noise.setting import (
    NOISE_MODEL_HELP,
    apply_noise_model,
    restrict,
    setting_from_params,
    study_metrics,
)
from nlkit.pipeline import load_cell
from nlkit.pipeline.describe import output_dir, run_label
from nlkit.viz import save_figure
from nlkit.viz.explorer import explorer_widget, noise_figures, noise_name, setting_title

noise_seed, label_range, ran = seed, None, None
if params_file:
    cell = load_cell(params_file, profile)
    ran = run_label(cell)
    print(f"noise-study cell {ran}: {cell['row']}")
    setting = setting_from_params(cell, data_root, noise_root)
    dataset, noise, rate, asym_map = setting["dataset"], setting["noise"], setting["rate"], setting["asym_map"]
    label_file, label_range, noise_seed = setting["label_file"], setting["label_range"], setting["noise_seed"]
    interactive = False

ds = restrict(load_dataset(dataset, data_root=data_root), label_range)
print(f"{ds.name}: {len(ds.train_labels)} train / {len(ds.test_labels)} test images of shape "
      f"{ds.train_images.shape[1:]}, {ds.num_classes} classes")
print(f"noise model {noise!r}: {NOISE_MODEL_HELP[noise]}")

# %% [markdown]
# ## Apply the noise model
# Every generator is seeded and records what it did: its parameters, the realised rate and a checksum of the
# labels.

# %%
result = apply_noise_model(ds, noise, rate, noise_seed, asym_map=asym_map, label_file=label_file)
report = noise_report(result.clean, result.noisy, ds.num_classes)
summary = pd.Series({
    "nominal rate": rate if noise not in ("clean", "file") else "-",
    "realised rate": round(report["noise_rate"], 4),
    "classes whose plurality noisy label is still correct": f"{report['classes_with_true_plurality']} of {ds.num_classes}",
    "generator": result.meta["generator"],
    "labels sha256": result.meta["sha256"][:16] + "...",
})
display(summary.to_frame("value"))
display(pd.DataFrame([{**t, "clean": ds.classes[t["clean"]], "noisy": ds.classes[t["noisy"]]}
                      for t in report["top_confusions"]]).rename(columns={"share_of_class": "share of clean class"}))

# %% [markdown]
# ## What it looks like

# %%
nominal = rate if noise not in ("clean", "file") else None
label = setting_title(dataset, noise_name({"noise": noise, "asym_map": asym_map, "label_file": label_file},
                                          ds.num_classes), nominal, noise_seed)
if ran:
    label = f"{label}\n{ran}"
figures = noise_figures(ds, result, class_filter=class_filter, nominal=nominal, n_images=n_images, seed=seed,
                        label=label)
out = output_dir(out_dir)
for name, fig in figures.items():
    save_figure(fig, out / f"{name}.png")
    if not interactive:  # the explorer below draws the same setting; showing both would duplicate them
        display(fig)
    plt.close(fig)
metrics = study_metrics(report, ds.classes, nominal)
atomic_write_json(out / "results.json", {**metrics, "dataset": dataset, "noise": noise, "noise_meta": result.meta,
                                         "report": report})
print(f"figures and results.json saved in {out}" + ("; the explorer below shows them" if interactive else ""))

# %% [markdown]
# ## Explore interactively
# Change the dataset, noise model, rate, seed, flip map or class filter; the figures redraw. Where the CIFAR-N
# release file is found (under `noise_root`, or `<data_root>/noise/cifar-n/`), the CIFAR-N dropdown offers its human
# label sets; a label file's flip matrix is then drawn beside symmetric noise of the same rate.

# %%
if interactive:  # offers every dataset that loads on this machine
    display(explorer_widget(data_root=data_root, noise_root=noise_root,
                            initial={"dataset": dataset, "noise": noise, "rate": rate, "seed": seed,
                                     "asym_map": asym_map, "label_file": label_file, "n_images": n_images}))

# %% [markdown]
# ## Result
# The numbers this run records (results.json) for the setting above.

# %%
display(pd.Series({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}, dtype=object)
        .to_frame(ran or setting_title(dataset, noise, nominal, noise_seed)))
