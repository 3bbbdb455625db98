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
# # Training a SimCLR encoder for label retrieval
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nlkit/nlkit/blob/main/notebooks/simclr.ipynb)
#
# LRA-Diffusion retrieves labels from neighbours in a self-supervised feature space. The paper used SimCLR
# ResNet-50 weights that the authors publish in the `model/` folder of their repository (`SimCLR_128_cifar10.pt`,
# `SimCLR_128_cifar100.pt`); placed in `<data root>/weights/`, the LRA cells use them and need no run of this
# notebook. Without them the kit trains its own encoder here: SimCLR (Chen et al. 2020) with NT-Xent (temperature
# 0.5), Adam, and per-sample random resized crops, flips, colour jitter and grayscale drawn on the device. No
# labels are used. The encoder is then judged by what retrieval needs: the accuracy of a k-nearest-neighbour
# classifier with the **clean** labels (an upper bound on retrieval purity).

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

    default_profile = setup(extras=["notebooks", "faiss"], downloads=False)

# %% tags=["parameters"]
params_file = "params/simclr/cifar10.yaml"
profile = default_profile  # set by the first cell: smoke here, quick on a Colab GPU
seed = 0
out_dir = None          # None: the pipeline's run folder, outputs/<profile>/<paper>/<cell>/seed<k>
data_root = None
noise_root = None
needs = {}              # artefacts of the cells this one needs; {}: the cell's own `needs:`, run first when missing

# %%

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from nlkit.methods import simclr, write_results
from nlkit.pipeline import load_cell
from nlkit.pipeline.describe import run_banner, run_label
from nlkit.pipeline.notebook import notebook_roots, record_run, run_folder, show_committed_results
from nlkit.train import default_device
from nlkit.viz import readings, save_figure

cell = load_cell(params_file, profile)
cfg = simclr.Config.from_cell(cell)
ran = run_label(cell)
out = run_folder(out_dir, cell, seed, data_root, needs)
data = simclr.prepare(cell, seed, notebook_roots(cell, data_root, noise_root, needs))
print(f"{ran}: {data.dataset.name}, {len(data.dataset.train_labels)} training images; SimCLR {cfg.arch}, {cfg.epochs} epochs, "
      f"batch {cfg.batch_size}, device {default_device()}")
if (banner := run_banner(cell)):
    print(banner)

# %% [markdown]
# ## What the committed runs show
# Before anything runs: the kit's real-data runs of this paper (committed under `outputs/`), their reading and
# table figure. A smoke run below only checks the pipeline on stand-in data.

# %%
if out_dir is None:  # exploring by hand; the pipeline's runs (which pass out_dir) skip this
    show_committed_results("simclr")

# %% [markdown]
# ## Training, then how good the features are for retrieval
# After training, a 10-nearest-neighbour majority vote with the clean training labels is measured on the test set.

# %%
output = simclr.run(data, cfg, seed, out)
hist, m = output.history, output.metrics
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(hist["epoch"], hist["loss"])
ax.set_xlabel("epoch"), ax.set_ylabel("NT-Xent loss"), ax.grid(alpha=0.3)
ax.set_title(f"SimCLR {cfg.arch} - {ran}")
save_figure(fig, out / "loss.png")
display(fig)
plt.close(fig)
print(f"kNN (k={cfg.knn_k}, clean labels) test accuracy: {m['knn_clean_acc']:.2f}%; "
      f"training took {m['train_seconds'] / 60:.1f} min")
print(readings.loss_curve(hist, x="epoch", unit="epochs", profile=cell["profile"]))
print(readings.knn_accuracy(m["knn_clean_acc"], num_classes=len(data.dataset.classes),
                            n_test=len(data.dataset.test_labels), profile=cell["profile"]))
write_results(out, output, cell=cell, seed=seed)
record_run(out, cell, seed, data_root)
display(pd.Series({k: v for k, v in m.items() if isinstance(v, (int, float))}).round(2).to_frame(ran))
