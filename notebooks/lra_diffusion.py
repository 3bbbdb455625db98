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
# # LRA-Diffusion: label-retrieval-augmented diffusion (Chen et al., NeurIPS 2023)
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nlkit/nlkit/blob/main/notebooks/lra_diffusion.ipynb)
#
# LRA-Diffusion treats a label as a sample from a **conditional diffusion model** over the one-hot vector, given the
# image. Its robustness comes from **label retrieval**: each training image's target is drawn, afresh at every
# visit, from the noisy labels of its k nearest neighbours in a frozen pretrained feature space (CLIP or SimCLR).
# Where neighbours mostly carry the clean label, the model learns the clean label. Inference runs 10 deterministic
# DDIM steps from y = 0 and picks the component closest to 1.
#
# This notebook runs one table cell (`params/lra_diffusion/<cell>.yaml`) for one seed and shows what retrieval and
# diffusion each contribute: the retrieval purity, two reference baselines on the same features (kNN majority vote
# and a linear probe), and the diffusion model's validation curve. The protocol reports the test accuracy at the
# epoch of best accuracy on 5,000 **clean** validation images (PLC's protocol).

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

    default_profile = setup(extras=["notebooks", "clip", "faiss"], downloads=False)

# %% tags=["parameters"]
params_file = "params/lra_diffusion/cifar10-pmd-0.35-clip.yaml"   # the table cell
profile = default_profile  # smoke (CPU, digits), cpu (real CIFAR-10, reduced), quick (one GPU, cached features) or paper
seed = 0
out_dir = None          # None: the pipeline's run folder, outputs/<profile>/<paper>/<cell>/seed<k>
data_root = None        # folder holding CIFAR (e.g. cifar10-jpeg.tar.gz)
noise_root = None       # folder holding the published label files (lra-pmd/*.npy)
needs = {}              # {}: the cell's own `needs:` (run first when missing); or {artefact: file} by hand

# %%

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import display

from nlkit.methods import write_results
from nlkit.methods import lra_diffusion as lra
from nlkit.pipeline import load_cell
from nlkit.pipeline.describe import run_banner, run_label
from nlkit.pipeline.notebook import notebook_roots, record_run, run_folder, show_committed_results
from nlkit.train import default_device
from nlkit.viz import per_class_noise_bars, readings, save_figure

cell = load_cell(params_file, profile)
cfg = lra.Config.from_cell(cell)
out = run_folder(out_dir, cell, seed, data_root, needs)
ran = run_label(cell)  # names the stand-ins when the profile swaps data or encoder (digits, PCA features)
variant = "LRA-MLP (cached features)" if cfg.image_encoder == "none" else "LRA-Diffusion"
print(f"{ran}: {variant}, f_p = {cell['encoder']['name']}, k = {cfg.k}, "
      f"{cfg.epochs} epochs, device {default_device()}" + (", HEAD-compat (untrained encoder)" if cfg.head_compat else ""))
if (banner := run_banner(cell)):
    print(banner)

# %% [markdown]
# ## What the committed runs show
# Before anything runs: the kit's real-data runs of this paper (committed under `outputs/`), their reading and
# table figure. A smoke run below only checks the pipeline on stand-in data.

# %%
if out_dir is None:  # exploring by hand; the pipeline's runs (which pass out_dir) skip this
    show_committed_results("lra_diffusion")

# %% [markdown]
# ## Data, noisy labels and features
# Features of the frozen encoder are computed once per dataset and cached on disk; every noise setting and seed
# reuses them.

# %%
inputs = lra.prepare(cell, seed, notebook_roots(cell, data_root, noise_root, needs))
data, feats = inputs.data, inputs.features
print(f"{cell['dataset']}: train {len(data.noisy)} (noisy labels, {np.mean(data.noisy != data.clean):.1%} wrong), "
      f"val {len(data.val_labels)} (clean), test {len(data.test_labels)}; features {feats['train'].shape[1]}-d")
f_p = lra.encoder_metrics(inputs.encoder)
if "fp_weights" in f_p:  # SimCLR: the authors' published weights or the kit's own run
    print(f"f_p weights: {f_p['fp_weights']}, {f_p['fp_weights_source']}, {f_p['fp_weights_arch']}, "
          f"sha256 {f_p['fp_weights_sha256'][:12]}")

# %% [markdown]
# ## Retrieval, diffusion training and evaluation

# %%
output = lra.run(inputs, cfg, seed, out)
run, m = output.state, output.metrics
display(pd.Series({
    "noisy labels correct (%)": m["noisy_label_accuracy"],
    "retrieved label correct (%), the retrieval purity": m["retrieval_purity"],
    "kNN majority vote on test (%)": m.get("knn_majority_acc"),
    "linear probe on test (%)": m.get("linear_probe_acc"),
    f"{variant}: test @ best clean val (%)": m["acc_val_selected"],
    f"{variant}: last epoch (%)": m["acc_last"],
    f"{variant}: best test over the evaluated epochs, the last included (%), an oracle": m["acc_best_test"],
}).round(2).to_frame("value"))
n_test = len(data.test_labels)
print(readings.lra_accuracy(m, variant=variant, n_test=n_test, n_train=len(data.noisy), profile=cell["profile"]))

# %% [markdown]
# ## Validation curve
# The learning rate stays near 1e-3 (a 1000-epoch cosine horizon), so validation accuracy oscillates; selecting
# the best clean-val epoch hides this.

# %%
# validation follows the code's epochs (6, 11, ...); the test curve also has the last epoch, which those can skip.
# A run stopped (time budget) before its first validation, after the warm-up, has no validation rows yet
h = run.history.reindex(columns=[*run.history.columns, *({"val_acc", "test_acc"} - set(run.history.columns))])
val, test = h.dropna(subset=["val_acc"]), h.dropna(subset=["test_acc"])
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(val["epoch"], val["val_acc"], "o-", label="clean validation")
ax.plot(test["epoch"], test["test_acc"], "s--", label="test")
if m["best_val_epoch"]:
    ax.axvline(m["best_val_epoch"], color="gray", ls=":", label=f"best val (epoch {m['best_val_epoch']})")
ax.set_xlabel("epoch"), ax.set_ylabel("accuracy (%)"), ax.legend(), ax.grid(alpha=0.3)
ax.set_title(ran)
save_figure(fig, out / "validation.png")
display(fig)
plt.close(fig)
print(readings.validation_curve(h, profile=cell["profile"]))

# %% [markdown]
# ## Per class: retrieval purity and accuracy
# Retrieval can only help a class whose neighbours mostly carry its clean label.

# %%
purity = np.array([v if v is not None else np.nan for v in m["per_class_retrieval_purity"]]) / 100
acc = np.array([v if v is not None else np.nan for v in (m["per_class_acc_at_best_val"] or [np.nan] * data.num_classes)]) / 100
fig, axes = plt.subplots(1, 2, figsize=(13, 3.8))
per_class_noise_bars(1 - purity, data.classes, title="retrieved label wrong, per clean class", ax=axes[0])
axes[0].set_ylabel("retrieved labels wrong (%)")
per_class_noise_bars(1 - acc, data.classes, title="test error at the best-val epoch, per class", ax=axes[1])
axes[1].set_ylabel("test error (%)")
fig.suptitle(ran)
fig.tight_layout()
save_figure(fig, out / "per_class.png")
display(fig)
plt.close(fig)
print(readings.per_class_retrieval(purity, acc, data.classes))

# %% [markdown]
# ## Results

# %%
write_results(out, output, cell=cell, seed=seed)
record_run(out, cell, seed, data_root)
display(pd.Series({k: v for k, v in m.items() if isinstance(v, (int, float))}).round(2).to_frame(ran))
print(readings.final_accuracy(m, n_test=n_test, profile=cell["profile"], best_epoch_key=None))
