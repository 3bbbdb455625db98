# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# ResNet-50 weights whose files are not distributed with the kit, so the kit trains its own: SimCLR (Chen et al.
# 2020) with NT-Xent (temperature 0.5), Adam, and per-sample random resized crops, flips, colour jitter and
# grayscale drawn on the device. No labels are used. The encoder is then judged by what retrieval needs: the
# accuracy of a k-nearest-neighbour classifier with the **clean** labels (an upper bound on retrieval purity).

# %%
# Colab: install the kit without touching Colab's own torch. Elsewhere this cell does nothing.
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("nlkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "nlkit[notebooks,faiss] @ git+https://github.com/nlkit/nlkit"])

# %% tags=["parameters"]
params_file = "params/simclr/cifar10.yaml"
profile = "smoke"
seed = 0
out_dir = "outputs/explore/simclr"
data_root = None
noise_root = None

# %%
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from nlkit.data import load_dataset
from nlkit.noise.labelfiles import atomic_write_json
from nlkit.pipeline import load_cell
from nlkit.retrieval import knn, knn_majority_vote
from nlkit.simclr import save_simclr, simclr_features, train_simclr
from nlkit.train import default_device
from nlkit.viz import save_figure

cell = load_cell(params_file, profile)
t = cell["train"]
ds = load_dataset(cell["dataset"], data_root=data_root)
mean, std = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) if ds.train_images.shape[-1] == 3 else ((0.5,), (0.5,))
print(f"{ds.name}: {len(ds.train_labels)} training images; SimCLR {t['arch']}, {t['epochs']} epochs, "
      f"batch {t['batch_size']}, device {default_device()}")

# %%
start = time.perf_counter()
model, history = train_simclr(ds.train_images, arch=t["arch"], epochs=t["epochs"], batch_size=t["batch_size"],
                              lr=t["lr"], weight_decay=t["weight_decay"], temperature=t["temperature"], seed=seed,
                              mean=mean, std=std, checkpoint_dir=Path(out_dir))
train_seconds = sum(h["seconds"] for h in history)
weights = save_simclr(model, Path(out_dir) / "simclr.pt")
hist = pd.DataFrame(history)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(hist["epoch"], hist["loss"])
ax.set_xlabel("epoch"), ax.set_ylabel("NT-Xent loss"), ax.set_title("SimCLR training"), ax.grid(alpha=0.3)
save_figure(fig, Path(out_dir) / "loss.png")
display(fig)
plt.close(fig)

# %% [markdown]
# ## How good are the features for retrieval?
# A 10-nearest-neighbour majority vote with the clean training labels, on the test set.

# %%
train_f = simclr_features(model, ds.train_images, mean=mean, std=std)
test_f = simclr_features(model, ds.test_images, mean=mean, std=std)
_, nbrs = knn(train_f, test_f, 10)
knn_acc = float(np.mean(knn_majority_vote(nbrs, ds.train_labels, ds.num_classes) == ds.test_labels) * 100)
print(f"kNN (k=10, clean labels) test accuracy: {knn_acc:.2f}%; training took {train_seconds / 60:.1f} min")
hist.to_csv(Path(out_dir) / "history.csv", index=False)
atomic_write_json(Path(out_dir) / "results.json", {
    "knn_clean_acc": knn_acc, "train_seconds": train_seconds, "epochs": len(history),
    "final_loss": float(hist["loss"].iloc[-1]), "weights": "simclr.pt", "arch": t["arch"],
    "acc_last": None, "acc_best_test": None, "acc_val_selected": None})
