"""SimCLR encoders trained by the kit for LRA-Diffusion's label retrieval, used where the authors' published
weights (SimCLR_128_<dataset>.pt) are not at hand. The run leaves its weights as the artefact `encoder`, which LRA
cells declare under `needs:`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import load_dataset, stratified_subset
from ..encoders.simclr import save_simclr, simclr_features, train_simclr
from ..hardware import Switch, precision_report
from ..train import default_device
from .contract import (
    PROTOCOL_METRICS,
    MethodSpec,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Roots,
    RunOutput,
    config_from_cell,
)
from .lra_diffusion.retrieval import knn, knn_majority_vote

SPEC = MethodSpec("simclr", metrics=PROTOCOL_METRICS + ("knn_clean_acc", "train_seconds", "final_loss", "epochs"),
                  artefacts=("encoder",))
WEIGHTS_FILE = "simclr.pt"
CELL_KEYS: dict = {}  # nothing beyond the pipeline's own keys
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


@dataclass
class Config:
    arch: str = "resnet50"
    width_mult: PositiveFloat = 1.0   # resnet9 only: the cpu profile's narrower network
    # speed switches (nlkit.hardware). The kit's trainer autocasts to bf16 unless told not to (the paper profile
    # sets fp32, as leftthomas/SimCLR); channels_last where a profile asks for it
    bf16: Switch = True
    channels_last: Switch = False
    epochs: PositiveInt = 500
    batch_size: PositiveInt = 512
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 1e-6
    temperature: PositiveFloat = 0.5
    knn_k: PositiveInt = 10
    checkpoint_every_seconds: PositiveFloat = 300.0
    time_budget_seconds: PositiveFloat | None = None

    @classmethod
    def from_cell(cls, cell: dict) -> "Config":
        return config_from_cell(cls, cell, "SimCLR")


@dataclass
class SimCLRData:
    dataset: object
    mean: tuple
    std: tuple


def prepare(cell: dict, seed: int, roots: Roots | None = None) -> SimCLRData:
    roots = roots or Roots()
    ds = load_dataset(cell["dataset"], data_root=roots.data_root)
    if cell.get("train_subset") or cell.get("test_subset"):  # reduced budgets (the cpu profile)
        keep = stratified_subset(ds.train_labels, cell.get("train_subset"))
        held = stratified_subset(ds.test_labels, cell.get("test_subset"))
        ds = replace(ds, train_images=ds.train_images[keep], train_labels=ds.train_labels[keep],
                     test_images=ds.test_images[held], test_labels=ds.test_labels[held], train_paths=None, extra={})
    mean, std = CIFAR_STATS if ds.train_images.shape[-1] == 3 else ((0.5,), (0.5,))
    return SimCLRData(ds, mean, std)


def run(data: SimCLRData, config: Config, seed: int, workdir, *, device=None, progress: bool = True) -> RunOutput:
    """Train (resumable), save the weights, and measure the features with a k-NN vote using the clean labels."""
    ds = data.dataset
    model, loop = train_simclr(ds.train_images, arch=config.arch, epochs=config.epochs,
                               batch_size=config.batch_size, lr=config.lr, weight_decay=config.weight_decay,
                               temperature=config.temperature, seed=seed, device=device, mean=data.mean,
                               std=data.std, checkpoint_dir=Path(workdir),
                               checkpoint_every_seconds=config.checkpoint_every_seconds,
                               time_budget_seconds=config.time_budget_seconds, progress=progress,
                               width_mult=config.width_mult, bf16=config.bf16, channels_last=config.channels_last)
    history = pd.DataFrame(loop.history)
    save_simclr(model, Path(workdir) / WEIGHTS_FILE)
    train_f = simclr_features(model, ds.train_images, device=device, mean=data.mean, std=data.std)
    test_f = simclr_features(model, ds.test_images, device=device, mean=data.mean, std=data.std)
    _, nbrs = knn(train_f, test_f, config.knn_k)
    knn_acc = float(np.mean(knn_majority_vote(nbrs, ds.train_labels, ds.num_classes) == ds.test_labels) * 100)
    metrics = {"knn_clean_acc": knn_acc, "train_seconds": float(history["seconds"].sum()),
               "epochs": len(history), "final_loss": float(history["loss"].iloc[-1]), "arch": config.arch,
               "width_mult": config.width_mult,
               "hardware": precision_report(device or default_device(), config.bf16, config.channels_last),
               "acc_last": None, "acc_best_test": None, "acc_val_selected": None}
    return RunOutput(history, metrics, artefacts={"encoder": WEIGHTS_FILE}, state=model, completed=loop.completed)
