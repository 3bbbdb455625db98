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
# # Benchmark: every method on the same noise, images and budget
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nlkit/nlkit/blob/main/notebooks/bench.ipynb)
#
# Each paper reports its method on its own noise files, backbone and schedule, so their tables cannot be set side
# by side. Here every classifier method of the kit (CE, SLN and SLN-MO, SLN-MO-LC, DivideMix, InstanceGM, GCE,
# Co-teaching, LRA-Diffusion) runs through the same contract: the same images, the same noisy labels (one generator
# or one published file), the same backbone and the same number of epochs; each keeps its own loss, schedule shape
# and hyperparameters from its paper. LRA-Diffusion classifies from a frozen encoder's features instead of training
# the backbone, and its run also reports the kNN vote over those features that it refines.
#
# One run of this notebook trains one benchmark cell (`params/bench/<setting>-<method>.yaml`) for one seed. The
# method is looked up by name in the kit's method registry; `make reproduce PAPER=bench` runs every cell and writes
# the table (mean ± std over seeds, each method's rank per noise setting) and a methods × settings heat map.

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
params_file = "params/bench/sym-0.5-gce.yaml"   # the benchmark cell: one (method, noise setting) pair
profile = default_profile  # smoke (CPU, digits), cpu (CPU, MNIST), quick (one GPU, 100 epochs) or paper (200 epochs)
seed = 0
out_dir = None          # None: the pipeline's run folder, outputs/<profile>/<paper>/<cell>/seed<k>
data_root = None        # folder holding the datasets (CIFAR-10, MNIST) for the cpu, quick and paper profiles
noise_root = None       # folder holding published label files (none of the generated settings needs one)
needs = {}              # artefacts of the cells this one needs (a benchmark cell needs none)

# %%

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from nlkit.methods import bench, write_results
from nlkit.pipeline import load_cell
from nlkit.pipeline.describe import run_banner, run_label
from nlkit.pipeline.notebook import notebook_roots, record_run, run_folder, show_committed_results
from nlkit.train import default_device
from nlkit.viz import image_grid, readings, save_figure

cell = load_cell(params_file, profile)
cfg = bench.Config.from_cell(cell)
out = run_folder(out_dir, cell, seed, data_root, needs)
ran = run_label(cell)
print(f"{ran}: method {cell['bench_method']} (run by nlkit.methods.{cfg.method}), net {cfg.arch}, "
      f"{cfg.epochs} epochs, device {default_device()}")
if (banner := run_banner(cell)):
    print(banner)

# %% [markdown]
# ## What the committed runs show
# The benchmark's real-data runs (committed under `outputs/`), their reading and table figure, before anything runs.

# %%
if out_dir is None:  # exploring by hand; the pipeline's runs (which pass out_dir) skip this
    show_committed_results("bench")

# %% [markdown]
# ## Data and label noise
# The same data step for every method: the cell's dataset and its noisy labels, drawn once on the full training set
# with the cell's noise seed, whatever the method and the run seed.

# %%
data = bench.prepare(cell, seed, notebook_roots(cell, data_root, noise_root, needs))
splits = bench.shared(data)   # the same for every row (LRA-Diffusion's row adds its encoder's features)
print(f"{cell['dataset']}: {len(splits.noisy)} training images ({splits.pixels} pixels), {len(splits.test_labels)} "
      f"test; noise {splits.noise_meta.get('generator')}: {(splits.noisy != splits.clean).mean():.2%} of the "
      f"training labels are wrong")
fig = image_grid(splits.train_images, splits.noisy, splits.clean, splits.classes, n=16, seed=seed,
                 title=f"training images: noisy label (clean label) - {ran}")
display(fig)
plt.close(fig)

# %% [markdown]
# ## Training
# The method's own training loop (checkpoints every few minutes: an interrupted run continues where it stopped).

# %%
output = bench.run(data, cfg, seed, out)
history = output.history
display(history.tail(3).round(4))
n_test, noise_rate = len(splits.test_labels), float((splits.noisy != splits.clean).mean())
print(readings.final_accuracy(output.metrics, n_test=n_test, profile=cell["profile"]))

# %% [markdown]
# ## Test accuracy per epoch
# Every test-accuracy curve the method records (live and EMA nets, both networks of a two-network method). Under
# heavy symmetric noise CE's curve peaks early and falls as it memorises the wrong labels; the robust methods'
# should not.

# %%
curves = [c for c in history.columns if c.startswith("test_acc") and history[c].notna().any()]
fig, ax = plt.subplots(figsize=(9, 4))
for col in curves:
    scale = 100 if history[col].max() <= 1.0 else 1
    ax.plot(history["epoch"], history[col] * scale, marker=".", label=col.removeprefix("test_acc_") or col)
ax.set_xlabel("epoch")
ax.set_ylabel("test accuracy (%)")
ax.set_title(f"{cell['bench_method']}: test accuracy per epoch - {ran}", fontsize=10)
ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
fig.tight_layout()
save_figure(fig, out / "curves.png")
display(fig)
plt.close(fig)
print(readings.training_curve(history, noise_rate=noise_rate, n_test=n_test, profile=cell["profile"]))

# %% [markdown]
# ## Results
# Last-epoch (the protocol's number), best-test-epoch (an oracle, beside it only) and, where the method has one, the
# validation-selected accuracy.

# %%
write_results(out, output, cell=cell, seed=seed)
record_run(out, cell, seed, data_root)
display(pd.Series({k: v for k, v in output.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        .round(2).to_frame(ran))
print(readings.final_accuracy(output.metrics, n_test=n_test, profile=cell["profile"]))

# %% [markdown]
# ## Which samples do the methods flag?
# Every scoring method leaves its per-sample verdicts beside `metrics.json`: `per_sample.csv`, one row per
# training image with the given (noisy) label, the clean label, the method's own score (`issue_score`: higher =
# more suspect; DivideMix's and InstanceGM's 1 − clean probability, CE's and GCE's loss on the given label,
# LRA-Diffusion's 1 − vote share of the retrieved labels, ...) and its verdict (`suspected_issue`,
# `corrected_label`); docs/bench.md §7 lists the columns per method. Below: this run's most suspected samples, then
# its ranking beside those of the other methods' runs of the same noise setting and seed that have finished
# (`make reproduce PAPER=bench` runs them all): how many of each method's top-k suspects truly carry a wrong label
# (k = the number of wrong labels), ROC AUC of its score, precision and recall of its own verdict, and how much the
# methods' top-k suspects overlap.

# %%
from nlkit.noise.issues import PER_SAMPLE_FILE, compare_issue_rankings, load_per_sample
from nlkit.pipeline.currency import run_dir
from nlkit.viz import issue_grid

this = bench.ROWS[cell["bench_method"]].label
if not (out / PER_SAMPLE_FILE).is_file():   # a plug-in method that scores no samples
    print(f"{this} left no {PER_SAMPLE_FILE}: no per-sample verdicts to show")
else:
    verdicts = load_per_sample(out)
    fig = issue_grid(splits.train_images, verdicts, splits.classes, n=24,
                     title=f"{this}: most suspected labels, given → corrected (clean) - {ran}")
    save_figure(fig, out / "label_issues.png")
    display(fig)
    plt.close(fig)

    # the other rows of this noise setting (cells `<setting>-<row>`), where the pipeline has run them for this seed
    setting = str(cell["cell_id"]).rsplit("-", 1)[0]
    sources = {this: verdicts}
    for name, row in bench.ROWS.items():
        path = run_dir({**cell, "cell_id": f"{setting}-{name}"}, seed) / PER_SAMPLE_FILE
        if row.label != this and path.is_file():
            sources[row.label] = path
    comparison = compare_issue_rankings(sources, skip_other_noise=True)
    if comparison.skipped:
        print(f"left out (another noise draw or subset than this run's): {', '.join(comparison.skipped)}")
    display(comparison.table.round(3))
    if len(comparison.frames) > 1:
        display(comparison.overlap.round(2).rename_axis(f"share of top-{comparison.k} in common"))
    else:
        print("no other method's run of this setting and seed has finished yet: nothing to compare with")
    print(comparison.reading)
