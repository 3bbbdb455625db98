"""Co-teaching (Han et al., NeurIPS 2018): two networks teach each other with their small-loss samples.

In every mini-batch each network ranks the samples by its own cross-entropy and keeps the R(T) fraction with the
smallest loss; each network is then updated on the samples its peer kept (Algorithm 1). Networks learn clean,
easy patterns first, so small-loss samples are mostly correctly labelled; exchanging them keeps one network's
selection errors from feeding back into itself. The kept fraction falls from 1 to 1 - tau over the first T_k
epochs: R(T) = 1 - min(T / T_k * tau, tau), tau the noise rate (assumed known, as in the paper), T_k = 10.

A plug-in in one file: the data step is SLN's (same images, same noisy labels from the cell's `noise:` block),
the networks are two Trainers (model, optimizer, accuracy, state) and TrainLoop runs the epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..data import DeviceBatcher
from ..errors import UserError, check_choice
from ..hardware import Switch, use_bf16
from ..models import build_model
from ..noise import noise_report
from ..noise.issues import write_per_sample
from ..train import Trainer, TrainLoop, autocast_for, run_identity
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

# acc_*: network 1 (the protocol's number); *_net2: its peer; label_precision: clean share of the kept samples
SPEC = MethodSpec("coteaching", metrics=PROTOCOL_METRICS + (
    "acc_last_net2", "acc_best_test_net2", "acc_last10", "label_precision_last", "noise_rate", "epochs",
    "seconds_per_epoch"))

# Top-level keys a Co-teaching cell may set beyond the pipeline's own: those SLN's data step reads.
CELL_KEYS = {
    "val_fraction": OpenFraction | None,
    "image_size": PositiveInt | None,
    "downsample": PositiveInt | None,
}


# ---------------------------------------------------------------------------------------------- the method

def remember_rate(epoch: int, forget_rate: float, num_gradual: int) -> float:
    """R(T) = 1 - min(T / T_k * tau, tau) with T the number of epochs already trained (0 in the first epoch)."""
    return 1.0 - min((epoch - 1) / num_gradual * forget_rate, forget_rate)


def small_loss_indices(losses: torch.Tensor, rate: float) -> torch.Tensor:
    """Positions of the floor(rate * B) smallest losses, smallest first (ties: the earlier position first). The
    epsilon keeps 0.7 * 10 = 7.000000000000001 and 0.3 * 10 = 2.9999999999999996 at 7 and 3."""
    keep = int(rate * len(losses) + 1e-9)
    return torch.sort(losses.detach(), stable=True).indices[:keep]


def coteaching_losses(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor, rate: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's exchange: each network's mean cross-entropy on the samples its PEER kept, and the kept positions
    of network 1 and network 2. Returns (loss of net 1, loss of net 2, kept by net 1, kept by net 2)."""
    ce1 = F.cross_entropy(logits1.float(), labels, reduction="none")
    ce2 = F.cross_entropy(logits2.float(), labels, reduction="none")
    kept1, kept2 = small_loss_indices(ce1, rate), small_loss_indices(ce2, rate)
    return ce1[kept2].mean(), ce2[kept1].mean(), kept1, kept2


# ---------------------------------------------------------------------------------------------- settings

@dataclass
class CoteachingConfig:
    # the paper's recipe (§4): Adam lr 0.001, batch 128, 200 epochs, lr decayed linearly to 0 from epoch 80 with
    # beta1 0.9 -> 0.1; T_k = 10; tau = the noise rate (None: the realised rate of the cell's noisy labels)
    forget_rate: Fraction | None = None
    num_gradual: PositiveInt = 10
    epochs: PositiveInt = 200
    batch_size: PositiveInt = 128
    optimizer: str = "adam"          # adam (the paper) | sgd (the kit's Trainer default)
    lr: PositiveFloat = 0.001
    decay_start: PositiveInt = 80
    momentum: Fraction = 0.9         # SGD momentum, or Adam's beta1 before decay_start
    weight_decay: NonNegativeFloat = 0.0
    arch: str = "preact_resnet18"    # the paper's 9-layer CNN is not among the kit's architectures
    width_mult: PositiveFloat | None = None
    crop_padding: NonNegativeInt = 0  # the paper trains without augmentation
    flip: bool = False
    bf16: Switch = False   # False, True or 'auto' (nlkit.hardware)
    channels_last: Switch = False  # the convnet's memory layout: True pays with bf16 on a CPU with bf16 units
    checkpoint_every_seconds: PositiveFloat = 300.0
    time_budget_seconds: PositiveFloat | None = None

    @classmethod
    def from_cell(cls, cell: dict) -> "CoteachingConfig":
        cfg = config_from_cell(cls, cell, "Co-teaching")
        check_choice(cfg.optimizer, ("adam", "sgd"), "Co-teaching optimizer")
        return cfg


Config = CoteachingConfig


def schedule(epoch: int, cfg: CoteachingConfig) -> tuple[float, float]:
    """(lr, momentum) of a 1-based epoch: constant until decay_start, then lr falls linearly to 0 at the last
    epoch and Adam's beta1 is 0.1 (the paper's §4; SGD keeps its momentum)."""
    if epoch <= cfg.decay_start or cfg.epochs <= cfg.decay_start:
        return cfg.lr, cfg.momentum
    left = (cfg.epochs - epoch + 1) / (cfg.epochs - cfg.decay_start)
    return cfg.lr * left, 0.1 if cfg.optimizer == "adam" else cfg.momentum


def _set_schedule(trainer: Trainer, lr: float, momentum: float, optimizer: str) -> None:
    for group in trainer.optimizer.param_groups:
        group["lr"] = lr
        if optimizer == "adam":
            group["betas"] = (momentum, group["betas"][1])


# ---------------------------------------------------------------------------------------------- the contract

def prepare(cell: dict, seed: int, roots=None) -> sln.SLNData:
    """SLN's data step: the same images and noisy labels as an SLN run of the same cell."""
    return sln.prepare(cell, seed, roots)


def _trainer(cfg: CoteachingConfig, data: sln.SLNData, device) -> Trainer:
    width = {"width_mult": cfg.width_mult} if cfg.width_mult else {}
    model = build_model(cfg.arch, num_classes=data.num_classes, in_channels=data.train_images.shape[-1], **width)
    trainer = Trainer(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, device=device,
                      bf16=cfg.bf16, channels_last=cfg.channels_last)
    if cfg.optimizer == "adam":
        trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999),
                                             weight_decay=cfg.weight_decay)
    return trainer


def run(data: sln.SLNData, config: CoteachingConfig, seed: int, workdir=None, *, device=None,
        progress: bool = True) -> RunOutput:
    """Train the two networks; the protocol reports network 1's last epoch (the paper's curves show one)."""
    cfg = config
    tau = float(data.noisy_mask.mean()) if cfg.forget_rate is None else cfg.forget_rate
    if not 0 <= tau < 1:
        raise UserError(f"Co-teaching's forget rate must lie in [0, 1), got {tau}")
    torch.manual_seed(seed)
    net1 = _trainer(cfg, data, device)
    net2 = _trainer(cfg, data, net1.device)  # a second initialisation from the same generator stream
    dev = net1.device
    if dev.type == "cuda":  # fp32 means fp32; the bf16 switch allows TF32 too
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = use_bf16(cfg.bf16, dev)
    common = dict(device=dev, mean=data.mean, std=data.std, channels_last=net1.channels_last)
    train = DeviceBatcher(data.train_images, batch_size=cfg.batch_size, shuffle=True,
                          crop_padding=cfg.crop_padding, flip=cfg.flip, seed=seed, **common)
    test = DeviceBatcher(data.test_images, batch_size=512, shuffle=False, **common)
    noisy = torch.as_tensor(data.noisy, device=dev)
    is_clean = torch.as_tensor(~data.noisy_mask, device=dev)
    test_labels = torch.as_tensor(data.test_labels, device=dev)

    def epoch_fn(epoch: int) -> dict:
        rate = remember_rate(epoch, tau, cfg.num_gradual)
        lr, momentum = schedule(epoch, cfg)
        for net in (net1, net2):
            net.model.train()
            _set_schedule(net, lr, momentum, cfg.optimizer)
        loss_sum = torch.zeros((), device=dev)
        kept_clean = torch.zeros((), device=dev)
        kept = 0
        train.next_epoch = epoch - 1
        for batch in train:
            labels = noisy.index_select(0, batch.idx)
            with autocast_for(dev, cfg.bf16):
                logits1, logits2 = net1.forward(batch.x), net2.forward(batch.x)
            loss1, loss2, kept1, kept2 = coteaching_losses(logits1, logits2, labels, rate)
            for net, loss in ((net1, loss1), (net2, loss2)):
                net.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                net.optimizer.step()
            loss_sum += (loss1 + loss2).detach() / 2 * len(kept1)
            kept_clean += is_clean.index_select(0, batch.idx[kept1]).sum()
            kept += len(kept1)
        for net in (net1, net2):
            net.epochs_done += 1
        return {"remember_rate": rate, "lr": lr, "loss": float(loss_sum) / max(kept, 1),
                "label_precision": float(kept_clean) / max(kept, 1),
                "test_acc_net1": net1.accuracy(test, test_labels), "test_acc_net2": net2.accuracy(test, test_labels)}

    def get_state() -> dict:
        return {"net1": net1.state_dict(), "net2": net2.state_dict()}

    def set_state(state: dict) -> None:
        net1.load_state_dict(state["net1"])
        net2.load_state_dict(state["net2"])

    loop = TrainLoop(workdir, epochs=cfg.epochs, desc="Co-teaching", progress=progress,
                     checkpoint_every_seconds=cfg.checkpoint_every_seconds,
                     time_budget_seconds=cfg.time_budget_seconds,
                     postfix=("loss", "label_precision", "test_acc_net1", "test_acc_net2"),
                     identity=run_identity(cfg, seed, data.train_images, data.noisy, data.test_images, tau=tau))
    result = loop.run(epoch_fn, get_state, set_state, map_location=dev)
    history = pd.DataFrame(result.history)
    write_per_sample(workdir, per_sample_verdicts(net1, net2, data, tau))
    return RunOutput(history, _metrics(history, data, tau), state=(net1, net2), completed=result.completed)


def per_sample_verdicts(net1: Trainer, net2: Trainer, data: sln.SLNData, tau: float):
    """Network 1's (the reported one's) loss on the given labels as the score, network 2's beside it; the verdict
    is Co-teaching's own: the share `tau` of largest losses, which its last epoch would drop as noisy."""
    frame = sln.classifier_verdicts(net1, data)
    frame["loss_net2"] = sln.classifier_verdicts(net2, data)["loss"].to_numpy()
    n_drop = int(round(tau * len(frame)))
    dropped = np.zeros(len(frame), bool)
    dropped[np.argsort(-frame["loss"].to_numpy(), kind="stable")[:n_drop]] = True
    frame["suspected_issue"] = dropped
    return frame


def _metrics(history: pd.DataFrame, data: sln.SLNData, tau: float) -> dict:
    acc1, acc2 = history["test_acc_net1"] * 100, history["test_acc_net2"] * 100
    metrics = {"acc_last": float(acc1.iloc[-1]), "acc_best_test": float(acc1.max()), "acc_val_selected": None,
               "acc_last_net2": float(acc2.iloc[-1]), "acc_best_test_net2": float(acc2.max()),
               "acc_last10": float(acc1.iloc[-10:].mean()),
               "label_precision_last": float(history["label_precision"].iloc[-1]),
               "forget_rate": tau, "noise_rate": float(data.noisy_mask.mean()), "noise_meta": data.noise_meta,
               "epochs": int(history["epoch"].max()), "seconds_per_epoch": float(np.median(history["seconds"]))}
    if data.noisy_mask.any() and data.noise_meta.get("generator") != "openset":
        metrics["noise_report"] = noise_report(data.clean, data.noisy, data.num_classes)["per_class_noise_rate"]
    return metrics
