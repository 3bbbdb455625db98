"""LRA-Diffusion (Chen et al., NeurIPS 2023): a conditional diffusion model over one-hot labels, trained on labels
retrieved from the image's nearest neighbours in a frozen feature space (docs/lra-diffusion.md §1-§2).

Faithful default = the paper's intent: a CIFAR ResNet-34 image encoder trained with the denoiser, cosine beta
schedule, 200 epochs. Named switches reproduce the public code's other behaviours: `head_compat` (untrained encoder,
BN in train mode at test), `beta_schedule: linear`, `include_self`, `weight_norm`, `decode: argmax`.
`image_encoder: none` is the labelled "LRA-MLP (cached features)" variant: x_embed = BN(Linear(f_p)).

Modules: `diffusion` (schedules, DDIM), `model` (the denoiser), `retrieval` (kNN and label sampling), `data`
(splits and cached features), `train` (the run and its baselines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ..contract import PROTOCOL_METRICS, MethodSpec, PositiveInt, Roots, RunOutput
from .data import CIFAR_MEAN, CIFAR_STD, LRAData, encoder_features, prepare_data
from .diffusion import (
    DDIM_TIMESTEPS,
    T_STEPS,
    alphas_cumprod,
    antithetic_timesteps,
    beta_schedule,
    ddim_sample,
    decode,
    learning_rate,
)
from .model import ConditionalDenoiser, FeatureEmbedding, GatedLinear, LRAModel
from .train import (
    LRAConfig,
    LRARun,
    batch_retrieval,
    ddim_predict,
    linear_probe,
    train_lra,
)

SPEC = MethodSpec("lra_diffusion", metrics=PROTOCOL_METRICS + (
    "best_val_acc", "retrieval_purity", "noisy_label_accuracy", "knn_majority_acc", "linear_probe_acc",
    "noise_rate", "epochs", "seconds_per_epoch"))
Config = LRAConfig


class EncoderSettings(BaseModel):
    """A cell's `encoder:` (f_p): CLIP (open_clip model and pretrained tag), a SimCLR network (its weights come
    from the cell it `needs`), or PCA of the pixels (the smoke stand-in)."""
    model_config = ConfigDict(extra="forbid", strict=True, protected_namespaces=())
    name: Literal["clip", "simclr", "pca"]
    model: str | None = None
    pretrained: str | None = None
    arch: str | None = None
    dim: PositiveInt | None = None
    weights: str | None = None


# Top-level keys an LRA-Diffusion cell may set beyond the pipeline's own (checked by the params schema).
CELL_KEYS = {"encoder": EncoderSettings, "val_size": PositiveInt, "train_feat": Literal["augmented", "clean"]}


@dataclass
class LRAInputs:
    """What one run needs: the splits and the frozen features (and, for `real_fp`, the encoder network)."""
    data: LRAData
    features: dict
    encoder: dict
    fp_model: object = None


def resolve_encoder(cell: dict, roots: Roots) -> dict:
    """The cell's `encoder` entry; a SimCLR encoder takes its weights from the cell it `needs` (the runner
    resolves `needs: {encoder: simclr/<cell>}` to the weights file that run left)."""
    encoder = dict(cell["encoder"])
    if encoder.get("name") == "simclr" and not encoder.get("weights"):
        encoder["weights"] = str(roots.artefact("encoder"))
    return encoder


def prepare(cell: dict, seed: int, roots: Roots | None = None, *, device=None) -> LRAInputs:
    roots = roots or Roots()
    data = prepare_data(cell, roots.data_root, roots.noise_root)
    encoder = resolve_encoder(cell, roots)
    feats = encoder_features(data, encoder, train_feat=cell.get("train_feat", "augmented"), seed=seed,
                             device=device)
    fp_model = None
    if (cell.get("train") or {}).get("real_fp"):  # the code's SimCLR path: f_p recomputed on every batch
        from ...encoders.simclr import load_simclr

        fp_model = load_simclr(encoder["weights"], encoder.get("arch", "resnet50"))
    return LRAInputs(data, feats, encoder, fp_model)


def run(inputs: LRAInputs, config: LRAConfig, seed: int, workdir=None, *, device=None,
        progress: bool = True) -> RunOutput:
    data = inputs.data
    result = train_lra(data, inputs.features, config, seed, out_dir=workdir, device=device, progress=progress,
                       fp_model=inputs.fp_model)
    variant = "LRA-MLP (cached features)" if config.image_encoder == "none" else "LRA-Diffusion"
    metrics = {**result.metrics, "noise_rate": float(np.mean(data.noisy != data.clean)),
               "noise_meta": data.noise_meta, "pixels": data.pixels, "variant": variant}
    return RunOutput(result.history, metrics, state=result, completed=result.completed)


__all__ = ["CIFAR_MEAN", "CIFAR_STD", "DDIM_TIMESTEPS", "SPEC", "T_STEPS", "Config", "ConditionalDenoiser",
           "FeatureEmbedding", "GatedLinear", "LRAConfig", "LRAData", "LRAInputs", "LRAModel", "LRARun",
           "alphas_cumprod", "antithetic_timesteps", "batch_retrieval", "beta_schedule", "ddim_predict",
           "ddim_sample", "decode", "encoder_features", "learning_rate", "linear_probe", "prepare", "prepare_data",
           "resolve_encoder", "run", "train_lra"]
