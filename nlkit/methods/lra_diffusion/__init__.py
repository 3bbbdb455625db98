"""LRA-Diffusion (Chen et al., NeurIPS 2023): a conditional diffusion model over one-hot labels, trained on labels
retrieved from the image's nearest neighbours in a frozen feature space (docs/lra-diffusion.md §1-§2).

Default = the paper's intent: a CIFAR ResNet-34 image encoder trained with the denoiser, cosine beta
schedule, 200 epochs. Named switches reproduce the public code's other behaviours: `head_compat` (untrained encoder,
BN in train mode at test), `beta_schedule: linear`, `include_self`, `weight_norm`, `decode: argmax`, `real_fp`
(f_p recomputed on every augmented batch, the code's SimCLR path). The code's precision is the default (fp32
training; CLIP fp16 weights on CUDA); `bf16` is a speed switch.
`image_encoder: none` is the labelled "LRA-MLP (cached features)" variant: x_embed = BN(Linear(f_p)).

Modules: `diffusion` (schedules, DDIM), `model` (the denoiser), `retrieval` (kNN and label sampling), `data`
(splits and cached features), `train` (the run and its baselines).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ...noise.issues import per_sample_frame, write_per_sample
from ..contract import PROTOCOL_METRICS, MethodSpec, PositiveInt, Roots, RunOutput
from .data import CIFAR_MEAN, CIFAR_STD, LRAData, encoder_features, normalisation, prepare_data
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
from .retrieval import knn_majority_vote
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
    # the frozen feature pass: 'code' = the LRA code's (CLIP fp16 weights on CUDA, fp32 on the CPU; SimCLR fp32),
    # 'bf16' = bf16 autocast (a speed switch), 'fp16' / 'fp32' forced
    precision: Literal["code", "fp16", "bf16", "fp32"] | None = None


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
    """The cell's `encoder` entry; a SimCLR encoder takes its weights from what the cell `needs`: the runner
    resolves `needs: {encoder: {cell: simclr/<cell>, published: SimCLR_128_<dataset>.pt}}` to the authors' file
    when it lies in a weights root (nlkit.pipeline.deps.weights_roots), else to the weights the kit's SimCLR run
    left."""
    encoder = dict(cell["encoder"])
    if encoder.get("name") == "simclr" and not encoder.get("weights"):
        encoder["weights"] = str(roots.artefact("encoder"))
    return encoder


def prepare(cell: dict, seed: int, roots: Roots | None = None, *, device=None) -> LRAInputs:
    roots = roots or Roots()
    return inputs_for(prepare_data(cell, roots.data_root, roots.noise_root), cell, seed, roots, device=device)


def inputs_for(data: LRAData, cell: dict, seed: int, roots: Roots, *, device=None) -> LRAInputs:
    """The frozen f_p features of `data` by the cell's encoder (and, for `real_fp`, the encoder network): what
    `run` takes besides the splits. The benchmark calls it on its shared splits."""
    encoder = resolve_encoder(cell, roots)
    feats = encoder_features(data, encoder, train_feat=cell.get("train_feat", "augmented"), seed=seed,
                             device=device)
    fp_model = None
    if encoder["name"] == "simclr":
        from ...encoders.simclr import load_simclr
        from ...noise import sha256_file

        fp_model = load_simclr(encoder["weights"], encoder.get("arch", "resnet50"))
        # which weights ran: the authors' published file or the kit's own SimCLR run (metrics.json and the table)
        encoder.update(weights_layout=fp_model.checkpoint_layout, weights_arch=fp_model.arch,
                       weights_sha256=sha256_file(encoder["weights"]))
        if not (cell.get("train") or {}).get("real_fp"):  # the network is needed only to recompute f_p per batch
            fp_model = None
    return LRAInputs(data, feats, encoder, fp_model)


def encoder_metrics(encoder: dict) -> dict:
    """What f_p was, for metrics.json: the encoder, and for SimCLR which weights (file, layout, sha256)."""
    out = {"fp_encoder": encoder["name"] if encoder["name"] != "clip" else
           f"clip {encoder.get('model', 'ViT-L-14')} {encoder.get('pretrained', 'openai')}"}
    if encoder.get("weights_layout"):
        source = "published (the authors' weights)" if encoder["weights_layout"] == "published" else "kit-trained"
        out.update(fp_weights=Path(encoder["weights"]).name, fp_weights_source=source,
                   fp_weights_arch=encoder["weights_arch"], fp_weights_sha256=encoder["weights_sha256"])
    return out


def run(inputs: LRAInputs, config: LRAConfig, seed: int, workdir=None, *, device=None,
        progress: bool = True) -> RunOutput:
    data = inputs.data
    result = train_lra(data, inputs.features, config, seed, out_dir=workdir, device=device, progress=progress,
                       fp_model=inputs.fp_model)
    variant = "LRA-MLP (cached features)" if config.image_encoder == "none" else "LRA-Diffusion"
    metrics = {**result.metrics, "noise_rate": float(np.mean(data.noisy != data.clean)),
               "noise_meta": data.noise_meta, "pixels": data.pixels, "variant": variant,
               **encoder_metrics(inputs.encoder)}
    write_per_sample(workdir, per_sample_verdicts(result, data))
    return RunOutput(result.history, metrics, state=result, completed=result.completed)


def per_sample_verdicts(result: LRARun, data: LRAData):
    """per_sample.csv: the share of the retrieved candidate labels (the k neighbours' noisy labels, plus the own
    one where the retrieval includes it) that agree with the given label (`vote_share`; score 1 - vote_share), the
    retrieval's majority label (`retrieved_label`), and the final model's class (`predicted`, the corrected label;
    suspected where it differs from the given label)."""
    cands = result.candidates
    vote_share = (cands == data.noisy[:, None]).mean(1)
    retrieved = knn_majority_vote(cands, np.arange(data.num_classes), data.num_classes)  # the candidates' majority
    return per_sample_frame(data.noisy, 1 - vote_share, result.train_pred != data.noisy, clean=data.clean,
                            index=data.train_index, vote_share=vote_share, retrieved_label=retrieved, predicted=result.train_pred,
                            corrected_label=result.train_pred)


__all__ = ["CIFAR_MEAN", "CIFAR_STD", "DDIM_TIMESTEPS", "SPEC", "T_STEPS", "Config", "ConditionalDenoiser",
           "FeatureEmbedding", "GatedLinear", "LRAConfig", "LRAData", "LRAInputs", "LRAModel", "LRARun",
           "alphas_cumprod", "antithetic_timesteps", "batch_retrieval", "beta_schedule", "ddim_predict",
           "ddim_sample", "decode", "encoder_features", "encoder_metrics", "inputs_for", "learning_rate",
           "linear_probe", "normalisation", "prepare", "prepare_data", "resolve_encoder", "run", "train_lra"]
