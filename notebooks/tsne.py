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
# # t-SNE of encoder features, clean vs noisy labels
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nlkit/nlkit/blob/main/notebooks/tsne.ipynb)
#
# Label-retrieval methods (LRA-Diffusion) and sample-selection methods rest on one assumption: in a good feature
# space, a sample's neighbours mostly carry its *clean* label even when its own label is noisy. This notebook maps
# the features of a chosen encoder to 2-D with t-SNE, colours each point by its clean label and marks the samples
# whose noisy label is wrong. It also measures the assumption: how often the majority noisy label of a sample's
# k nearest neighbours is its clean label.
#
# Encoders: `pixels` (raw pixels), `pca` (PCA of the pixels), `clip` (open_clip; OpenAI weights are downloaded on
# first use), `model` (a checkpoint saved by nlkit).

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

    default_profile = setup(extras=["notebooks", "clip"], downloads=False)

# %% tags=["parameters"]
dataset = "digits"
data_root = None
encoder = "pca"               # pixels, pca, clip or model
clip_model = "ViT-L-14"       # CLIP architecture (encoder clip)
clip_pretrained = "openai"    # None gives random weights (offline smoke runs)
model_path = None             # checkpoint saved by nlkit (encoder model)
noise = "sym"                 # any noise model of the noise explorer
rate = 0.4
seed = 0
asym_map = None
label_file = None
n_samples = 2000              # points in the plot
perplexity = 30.0
knn_k = 10
out_dir = "outputs/explore/tsne"
# Pipeline runs (`nlkit run params/explore/tsne.yaml`) set these; the cell's settings then replace the above.
params_file = None
profile = "smoke"
noise_root = None

# %%

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from nlkit.data import load_dataset
from nlkit.encoders import cached, embed
from nlkit.io import atomic_write_json
from nlkit.noise.setting import apply_noise_model, restrict, setting_from_params
from nlkit.pipeline import load_cell
from nlkit.pipeline.describe import output_dir, run_label
from nlkit.viz import readings, save_figure, tsne_scatter
from nlkit.viz.tsne import knn_label_agreement, tsne_2d

noise_seed, label_range, ran = seed, None, None
if params_file:
    cell = load_cell(params_file, profile)
    ran = run_label(cell)  # names the stand-ins when the profile swaps data or encoder
    print(ran)
    setting = setting_from_params(cell, data_root, noise_root)
    dataset, noise, rate, asym_map = setting["dataset"], setting["noise"], setting["rate"], setting["asym_map"]
    label_file, label_range, noise_seed = setting["label_file"], setting["label_range"], setting["noise_seed"]
    encoder, n_samples = cell.get("encoder", encoder), cell.get("n_samples", n_samples)
    clip_model, clip_pretrained = cell.get("clip_model", clip_model), cell.get("clip_pretrained", clip_pretrained)

ds = restrict(load_dataset(dataset, data_root=data_root), label_range)
result = apply_noise_model(ds, noise, rate, noise_seed, asym_map=asym_map, label_file=label_file)
subset = np.sort(np.random.default_rng(seed).choice(len(ds.train_labels), min(n_samples, len(ds.train_labels)),
                                                    replace=False))
print(f"{ds.name}: {len(subset)} of {len(ds.train_labels)} train images; {noise} noise, "
      f"realised rate {result.realised_rate:.1%} overall, {np.mean(result.noisy[subset] != result.clean[subset]):.1%} "
      "in the plotted subset")

# %% [markdown]
# ## Features
# Features are cached on disk, keyed by encoder, dataset and subset, so re-running with another noise model or
# perplexity does not recompute them.

# %%
key = {"dataset": dataset, "data_root": str(data_root), "split": "train", "subset_seed": seed, "n": len(subset),
       "encoder": encoder, "clip_model": clip_model if encoder == "clip" else None,
       "clip_pretrained": clip_pretrained if encoder == "clip" else None, "model_path": str(model_path)}
features = cached(key, lambda: embed(ds.train_images[subset], encoder, clip_model=clip_model,
                                     clip_pretrained=clip_pretrained, model_path=model_path, seed=seed))
print(f"features: {features.shape[0]} x {features.shape[1]}")

# %% [markdown]
# ## Do neighbours carry the clean label?

# %%
agreement = knn_label_agreement(features, result.noisy[subset], result.clean[subset], k=knn_k)
for name, value in agreement.items():
    print(f"{name}: {value:.1%}")
print(readings.neighbour_agreement(agreement, num_classes=len(ds.classes), n=len(subset)))

# %% [markdown]
# ## t-SNE map
# Colour = clean label; black-edged crosses = samples whose noisy label is wrong. Crosses sitting inside a
# same-coloured cluster are the ones a neighbour-based method can correct.

# %%
xy = tsne_2d(features, perplexity=perplexity, seed=seed)
fig = tsne_scatter(xy, result.clean[subset], result.noisy[subset], ds.classes,
                   title=f"t-SNE of {encoder} features, {dataset}, {noise} p={rate:g}\n"
                         f"neighbours' majority = clean label for "
                         f"{agreement['knn_majority_equals_clean_on_noisy_samples']:.0%} of the mislabelled samples"
                         + (f"\n{ran}" if ran else ""))
out = output_dir(out_dir)
save_figure(fig, out / "tsne.png")
display(fig)
plt.close(fig)
print(readings.neighbour_agreement(agreement, num_classes=len(ds.classes), n=len(subset)))
atomic_write_json(out / "results.json", {"dataset": dataset, "encoder": encoder, "noise": noise, "rate": rate,
                                         "n_samples": int(len(subset)), "knn_k": knn_k, "realised_rate": result.realised_rate,
                                         **agreement})
print(f"figure and results.json saved in {out}")

# %% [markdown]
# ## Result

# %%
import pandas as pd  # noqa: E402

display(pd.Series({"realised noise rate": result.realised_rate, **agreement}).round(4)
        .to_frame(ran or f"{encoder} features, {dataset}, {noise} p={rate:g}"))
