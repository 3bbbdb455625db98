"""GCE (Zhang & Sabuncu, NeurIPS 2018): the generalized cross-entropy loss L_q = (1 - p_y^q) / q.

q -> 0 gives cross-entropy, q = 1 the MAE (robust to noise but slow to train); q = 0.7 is the paper's choice. Its
gradient is p_y^q times that of the cross-entropy, so samples the network finds unlikely (often the mislabelled
ones) weigh less. The truncated variant (`truncate_k`, the paper's k = 0.5) makes the loss constant below
p_y = k, so such samples give no gradient at all.

A plug-in in one file: the data step is SLN's (same images, same noisy labels from the cell's `noise:` block),
the training the kit's Trainer and TrainLoop. See docs/adding-a-method.md, which walks through this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..data import DeviceBatcher
from ..hardware import Switch, use_bf16
from ..models import build_model
from ..noise import noise_report
from ..noise.issues import write_per_sample
from ..train import Trainer, TrainLoop, run_identity
from . import sln
from .contract import (
    PROTOCOL_METRICS,
    Fraction,
    MethodSpec,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    RunOutput,
    config_from_cell,
)

# The metrics a table may name: the protocol's and the per-run numbers below.
SPEC = MethodSpec("gce", metrics=PROTOCOL_METRICS + ("acc_last10", "best_epoch", "noise_rate", "epochs",
                                                     "seconds_per_epoch"))

# Top-level keys a GCE cell may set beyond the pipeline's own: those SLN's data step reads.
CELL_KEYS = {
    "val_fraction": OpenFraction | None,
    "image_size": PositiveInt | None,
    "downsample": PositiveInt | None,
}


# ---------------------------------------------------------------------------------------------- the loss

def gce_loss(logits: torch.Tensor, labels: torch.Tensor, q: float = 0.7,
             truncate_k: float | None = None) -> torch.Tensor:
    """Per-sample L_q = (1 - p_y^q) / q (paper eq. 6), with p_y^q = exp(q log softmax(z)_y) in fp32 (no 0^q).

    With `truncate_k`, the truncated loss (eq. 9): L_q(k) = (1 - k^q) / q, a constant, where p_y <= k."""
    log_py = torch.log_softmax(logits.float(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1)
    loss = (1 - torch.exp(q * log_py)) / q
    if truncate_k is not None:
        floor = torch.full_like(loss, (1 - truncate_k ** q) / q)
        loss = torch.where(log_py.exp() > truncate_k, loss, floor)
    return loss


# ---------------------------------------------------------------------------------------------- settings

@dataclass
class GCEConfig:
    # the paper's CIFAR recipe (§4): ResNet-34, SGD momentum 0.9, weight decay 1e-4, lr 0.01 divided by 10 at
    # epochs 40 and 80, 120 epochs, batch 128
    q: OpenFraction = 0.7
    truncate_k: OpenFraction | None = None
    epochs: PositiveInt = 120
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 0.01
    lr_milestones: tuple[PositiveInt, ...] = (40, 80)
    lr_decay: Fraction = 0.1
    momentum: Fraction = 0.9
    weight_decay: NonNegativeFloat = 1e-4
    arch: str = "preact_resnet34"
    width_mult: PositiveFloat | None = None
    crop_padding: NonNegativeInt = 4
    flip: bool = True
    bf16: Switch = False   # False, True or 'auto' (nlkit.hardware)
    channels_last: Switch = False  # the convnet's memory layout: True pays with bf16 on a CPU with bf16 units
    checkpoint_every_seconds: PositiveFloat = 300.0
    time_budget_seconds: PositiveFloat | None = None

    @classmethod
    def from_cell(cls, cell: dict) -> "GCEConfig":
        return config_from_cell(cls, cell, "GCE")


Config = GCEConfig


# ---------------------------------------------------------------------------------------------- the contract

def prepare(cell: dict, seed: int, roots=None) -> sln.SLNData:
    """SLN's data step: the same images and noisy labels as an SLN run of the same cell."""
    return sln.prepare(cell, seed, roots)


def lr_at(epoch: int, cfg: GCEConfig) -> float:
    """Step schedule: lr times lr_decay for every milestone already passed (1-based epochs)."""
    return cfg.lr * cfg.lr_decay ** sum(epoch > m for m in cfg.lr_milestones)


def run(data: sln.SLNData, config: GCEConfig, seed: int, workdir=None, *, device=None, progress: bool = True
        ) -> RunOutput:
    """Train one network on the noisy labels with the GCE loss; the protocol reports its last epoch."""
    cfg = config
    torch.manual_seed(seed)
    width = {"width_mult": cfg.width_mult} if cfg.width_mult else {}
    model = build_model(cfg.arch, num_classes=data.num_classes, in_channels=data.train_images.shape[-1], **width)
    trainer = Trainer(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, device=device,
                      bf16=cfg.bf16, channels_last=cfg.channels_last)
    dev = trainer.device
    if dev.type == "cuda":  # fp32 means fp32; the bf16 switch allows TF32 too
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = use_bf16(cfg.bf16, dev)
    common = dict(device=dev, mean=data.mean, std=data.std, channels_last=trainer.channels_last)
    train = DeviceBatcher(data.train_images, batch_size=cfg.batch_size, shuffle=True,
                          crop_padding=cfg.crop_padding, flip=cfg.flip, seed=seed, **common)
    test = DeviceBatcher(data.test_images, batch_size=512, shuffle=False, **common)
    noisy = torch.as_tensor(data.noisy, device=dev)
    references = {"noisy": noisy, "clean": torch.as_tensor(data.clean, device=dev)}
    test_labels = torch.as_tensor(data.test_labels, device=dev)

    def loss_fn(logits, batch):
        return gce_loss(logits, noisy.index_select(0, batch.idx), cfg.q, cfg.truncate_k)

    def epoch_fn(epoch: int) -> dict:
        lr = lr_at(epoch, cfg)
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        train.next_epoch = epoch - 1  # the epoch's augmentation draw, also after a resume
        stats = trainer.train_epoch(train, loss_fn, references)
        return {"lr": lr, **stats, "test_acc_live": trainer.accuracy(test, test_labels)}

    loop = TrainLoop(workdir, epochs=cfg.epochs, desc="GCE", checkpoint_every_seconds=cfg.checkpoint_every_seconds,
                     time_budget_seconds=cfg.time_budget_seconds, progress=progress,
                     postfix=("loss", "test_acc_live"),
                     identity=run_identity(cfg, seed, data.train_images, data.noisy, data.test_images))
    result = loop.run(epoch_fn, trainer.state_dict, trainer.load_state_dict, map_location=dev)
    history = pd.DataFrame(result.history)
    summary = sln.summarise(history, len(data.train_images))  # the live net's numbers, as for SLN's CE
    metrics = {**sln.protocol_metrics(summary, "live"),
               "acc_last10": summary["acc_last10_live"], "best_epoch": summary["best_epoch_live"],
               "epochs": summary["epochs"], "seconds_per_epoch": summary["seconds_per_epoch"],
               "noise_rate": float(data.noisy_mask.mean()), "noise_meta": data.noise_meta}
    if data.noisy_mask.any() and data.noise_meta.get("generator") != "openset":
        metrics["noise_report"] = noise_report(data.clean, data.noisy, data.num_classes)["per_class_noise_rate"]
    write_per_sample(workdir, sln.classifier_verdicts(trainer, data))   # the final net's loss on the given labels
    return RunOutput(history, metrics, state=trainer, completed=result.completed)
