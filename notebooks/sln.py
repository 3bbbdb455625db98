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
# # SLN: noise against noise (Chen et al., ICLR 2021)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nlkit/nlkit/blob/main/notebooks/sln.ipynb)
#
# **Stochastic label noise**: at every step, every sample's one-hot target gets fresh Gaussian noise,
# ỹ = y + σ·ξ with ξ ~ N(0, I), and the network minimises the soft cross-entropy to ỹ. In expectation this is plain
# cross-entropy, but the extra gradient noise keeps the network from fitting the wrong labels confidently.
# Two additions: a **momentum model** (an EMA of the weights, α = 0.999, reported as SLN-MO) and **label correction**
# (after epoch 250 the targets become a loss-weighted mix of the given label and the EMA's prediction, SLN-MO-LC).
#
# One run of this notebook trains one table cell (`params/sln/<cell>.yaml`) for one seed: CE (σ = 0), SLN (whose EMA
# gives SLN-MO) or SLN-MO-LC. The protocol reports the **last-epoch** test accuracy; the best-test-epoch accuracy
# and the mean of the last 10 epochs are recorded beside it.

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
params_file = "params/sln/cifar10-sym-0.40-paper-sln.yaml"   # the table cell
profile = default_profile  # smoke (CPU, digits), cpu (real CIFAR-10, reduced), quick (one GPU, 120 epochs) or paper (300 epochs)
seed = 0
out_dir = None          # None: the pipeline's run folder, outputs/<profile>/<paper>/<cell>/seed<k>
data_root = None        # folder holding CIFAR (e.g. cifar10-jpeg.tar.gz) for quick and paper runs
noise_root = None       # folder holding the published label files (sln/<dataset>/*.csv)
needs = {}              # artefacts of the cells this one needs; {}: the cell's own `needs:`, run first when missing
compare_with_ce = True  # exploring an SLN cell: also train the CE cell of the same setting for the comparison

# %%

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from nlkit.methods import sln, write_results
from nlkit.pipeline import load_cell
from nlkit.pipeline.describe import output_dir, run_banner, run_label
from nlkit.pipeline.notebook import notebook_roots, record_run, run_folder, show_committed_results
from nlkit.train import default_device
from nlkit.viz import (
    confidence_histogram,
    dissection_plot,
    image_grid,
    readings,
    save_figure,
    training_curves,
)

cell = load_cell(params_file, profile)
cfg = sln.Config.from_cell(cell)
out = run_folder(out_dir, cell, seed, data_root, needs)
ran = run_label(cell)  # names the stand-in when the profile swaps the data, e.g. digits for CIFAR-10
lc = f"label correction from epoch {cfg.lc_start}" if cfg.lc_start is not None else "no label correction"
print(f"{ran}: method {cell['method']}, sigma {cfg.sigma}, {cfg.epochs} epochs, {lc}, net {cfg.arch}, "
      f"device {default_device()}")
if (banner := run_banner(cell)):
    print(banner)

# %% [markdown]
# ## What the committed runs show
# Before anything runs: the kit's real-data runs of this paper (committed under `outputs/`), their reading and
# table figure. A smoke run below only checks the pipeline on stand-in data.

# %%
if out_dir is None:  # exploring by hand; the pipeline's runs (which pass out_dir) skip this
    show_committed_results("sln")

# %% [markdown]
# ## Data and label noise

# %%
data = sln.prepare(cell, seed, notebook_roots(cell, data_root, noise_root, needs))
print(f"{cell['dataset']}: {len(data.noisy)} training images ({data.pixels} pixels), {len(data.test_labels)} test; "
      f"noise {data.noise_meta.get('generator')}: {data.noisy_mask.mean():.2%} of the training samples are noisy")
if data.val_labels is not None:
    print(f"sigma search: {len(data.val_labels)} samples held out as a noisy validation split")
fig = image_grid(data.train_images, data.noisy, data.clean, data.classes, n=16, seed=seed,
                 title=f"training images: noisy label (clean label) - {ran}")
display(fig)
plt.close(fig)

# %% [markdown]
# ## Training
# The whole dataset lives on the device; crops and flips are drawn there, and statistics are read once per epoch.
# Checkpoints are written every few minutes, so an interrupted run continues where it stopped.

# %%
output = sln.run(data, cfg, seed, out)
run, history = output.state, output.history
display(history.tail(3).round(4))
n_test, noise_rate = len(data.test_labels), float(data.noisy_mask.mean())
print(readings.final_accuracy(output.metrics, n_test=n_test, profile=cell["profile"],
                              best_epoch_key=f"best_epoch_{cfg.report_net}"))

# %% [markdown]
# ## Training curves
# What the paper reports: CE (σ = 0) first learns the clean pattern, then memorises the noisy labels: its test
# accuracy peaks early and falls, while its training accuracy against the given labels keeps rising. SLN's does
# not. The reading below the figure says what this run's curves show.

# %%
fig = training_curves(history, ran)
save_figure(fig, out / "curves.png")
display(fig)
plt.close(fig)
print(readings.training_curve(history, test_col=f"test_acc_{cfg.report_net}", noise_rate=noise_rate, n_test=n_test,
                              profile=cell["profile"]))

# %% [markdown]
# ## Confidence on clean and noisy training samples
# Maximum predicted probability of the reported network over the training set (no augmentation). In the paper CE
# piles both groups up near 1 and SLN keeps the noisy-label samples at low confidence; the reading says what this
# run's histograms show.

# %%
analysis = sln.train_set_analysis(run, data, use_ema=cfg.analysis_net == "ema")
net = "EMA" if cfg.analysis_net == "ema" else "live"
fig = confidence_histogram(analysis["max_prob"], analysis["noisy"], f"max probability, {net} net - {ran}")
save_figure(fig, out / "confidence.png")
display(fig)
plt.close(fig)
print(readings.confidence(analysis["max_prob"], analysis["noisy"], profile=cell["profile"]))

# %% [markdown]
# ### CE beside SLN, same data, same seed
# The comparison the text above describes: the CE cell of this setting is trained too (its own folder; a second
# Run All resumes it) and both confidence histograms are drawn side by side. Exploring only: pipeline runs skip it.

# %%
companion = sln.ce_companion(cell["params_file"]) if compare_with_ce and out_dir is None else None
if companion is not None:
    ce_cell = load_cell(companion, profile)
    ce_data = sln.prepare(ce_cell, seed, notebook_roots(ce_cell, data_root, noise_root, {}))
    ce_output = sln.run(ce_data, sln.Config.from_cell(ce_cell), seed, output_dir(None, ce_cell, seed))
    ce_analysis = sln.train_set_analysis(ce_output.state, ce_data, use_ema=False)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4), sharey=True)
    confidence_histogram(ce_analysis["max_prob"], ce_analysis["noisy"],
                         f"CE (sigma 0), live net: test {ce_output.metrics['acc_last']:.1f}%", ax=axes[0])
    confidence_histogram(analysis["max_prob"], analysis["noisy"],
                         f"{cell['method'].upper()}, {net} net: test {output.metrics[f'acc_last_{net.lower()}']:.1f}%",
                         ax=axes[1])
    fig.suptitle(f"max predicted probability on the training set - {ran}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "confidence_ce_vs_sln.png")
    display(fig)
    plt.close(fig)
    print("CE: " + readings.confidence(ce_analysis["max_prob"], ce_analysis["noisy"]))
    this = f"{cell['method'].upper()} ({net} net)"
    print(readings.versus({"CE": ce_output.metrics["acc_last"], this: output.metrics[f"acc_last_{net.lower()}"]},
                          expected_best=this, n_test=n_test, profile=cell["profile"]))
else:
    print("no CE comparison here (a CE cell, a pipeline run, or compare_with_ce = False)")

# %% [markdown]
# ## Sample dissection
# Training samples sorted by their loss w.r.t. the given label and cut into 50 bins; each bar splits a bin into
# label correct/wrong × prediction correct/wrong (against the clean label).

# %%
dissection = sln.sample_dissection(analysis, bins=50)
fig = dissection_plot(dissection, f"sample dissection, {net} net - {ran}")
save_figure(fig, out / "dissection.png")
display(fig)
plt.close(fig)
print(readings.dissection(analysis, profile=cell["profile"]))

# %% [markdown]
# ## Results

# %%
write_results(out, output, cell=cell, seed=seed)
record_run(out, cell, seed, data_root)
display(pd.Series({k: v for k, v in output.metrics.items() if isinstance(v, (int, float))}).round(2).to_frame(ran))
if output.metrics.get("acc_last_ema") is not None:  # SLN-MO's claim: the weight average beats the live net
    print(readings.versus({"live net": output.metrics["acc_last_live"], "EMA net": output.metrics["acc_last_ema"]},
                          expected_best="EMA net", n_test=n_test, profile=cell["profile"]))
else:
    print(readings.final_accuracy(output.metrics, n_test=n_test, profile=cell["profile"],
                                  best_epoch_key=f"best_epoch_{cfg.report_net}"))
