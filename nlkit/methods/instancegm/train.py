"""One InstanceGM-paper run: CE, DivideMix or InstanceGM on the same code path (docs/instancegm.md §4, §8).

- `ce`: one network, plain cross-entropy on the noisy labels at every epoch (DivideMix's warm-up, batch 128), the
  same augmentation, un-normalised inputs and SGD schedule.
- `dividemix`: two networks, `warmup_epochs` of CE, then DivideMix (InstanceGM with the generative module off, as
  the authors' `temp.py` baseline).
- `instancegm`: DivideMix plus one generative module per network, trained jointly: one loss L_DM + L_VAE, one
  backward, an SGD step for the network and an Adam step for its generative module. The generative modules start
  from random weights at the first semi-supervised epoch (they are not trained during the warm-up).

Epochs are 1-based in the loop and history; the schedule speaks the code's 0-based epochs (epoch0 = epoch - 1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from ...data import DeviceBatcher
from ...errors import UserError, check_choice
from ...hardware import Switch, use_channels_last
from ...models import WIDTH_SCALABLE, build_model
from ...train import TrainLoop, autocast_for, default_device, run_identity
from ..contract import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, config_from_cell
from .data import IGMData
from .dividemix import DivideMix, DivideMixConfig, Draws, ExtraLoss, division_quality
from .generative import EPS_DISTS, KL_REDUCTIONS, T_INPUTS, GenerativeModule, vae_loss

METHODS = ("ce", "dividemix", "instancegm")


@dataclass
class InstanceGMConfig(DivideMixConfig):
    epochs: PositiveInt = 300
    arch: str = "preact_resnet18_dividemix"
    width_mult: PositiveFloat = 1.0               # WIDTH_SCALABLE networks only (reduced CPU profiles)
    crop_padding: NonNegativeInt = 4
    flip: bool = True
    # the generative module (method instancegm)
    z_dim: PositiveInt = 25
    vae_batch_size: PositiveInt = 128
    vae_lr: PositiveFloat = 1e-3
    recon_weight: NonNegativeFloat = 1.0
    noisy_ce_weight: NonNegativeFloat = 1.0
    prior_weight: float = -1e-5
    kl_weight: float = -3e-4
    eps_dist: str = "uniform"             # code: U[0,1) reparameterisation noise; "normal" is the textbook VAE
    double_sigmoid: bool = True           # code: sigmoid(decoder output), whose last layer is already a sigmoid
    kl_reduction: str = "sum"             # code: KL summed over the batch; "mean" averages it
    t_decoder_input: str = "xhat"         # code: p(Ŷ | X̂, Y) reads the reconstruction; "x" the image
    gumbel_tau: PositiveFloat = 1.0
    channels_last: Switch = "auto"       # the networks' layout; 'auto': CUDA, or the CPU with bf16
    checkpoint_every_seconds: NonNegativeFloat = 300.0  # 0: after every epoch
    time_budget_seconds: PositiveFloat | None = None
    method: str = "instancegm"            # from the cell's top-level `method`, not the train block

    @classmethod
    def from_cell(cls, cell: dict) -> "InstanceGMConfig":
        cfg = config_from_cell(cls, cell, "InstanceGM")
        cfg = replace(cfg, method=cell.get("method", cfg.method))
        cfg.check()
        return cfg

    def check(self) -> None:
        check_choice(self.method, METHODS, "InstanceGM-paper method")
        check_choice(self.eps_dist, EPS_DISTS, "eps_dist")
        check_choice(self.kl_reduction, KL_REDUCTIONS, "kl_reduction")
        check_choice(self.t_decoder_input, T_INPUTS, "t_decoder_input")
        if self.epochs < 1 or self.warmup_epochs < 0:
            raise UserError(f"epochs must be >= 1 and warmup_epochs >= 0, got {self.epochs}, {self.warmup_epochs}")
        if self.method != "ce" and self.warmup_epochs >= self.epochs:
            raise UserError(f"{self.method} needs semi-supervised epochs after the warm-up: warmup_epochs "
                            f"({self.warmup_epochs}) must be below epochs ({self.epochs})")

    @property
    def num_nets(self) -> int:
        return 1 if self.method == "ce" else 2

    @property
    def vae(self) -> bool:
        return self.method == "instancegm"


Config = InstanceGMConfig


def build_classifier(arch: str, num_classes: int, in_channels: int, width_mult: float = 1.0) -> torch.nn.Module:
    """DivideMix's PreAct ResNet-18 (CIFAR, Red Mini-ImageNet), torchvision's VGG-19-BN from scratch (Animal-10N),
    or any kit architecture."""
    if arch == "vgg19_bn":
        import torchvision

        # as instanceGM_animal10N.py create_model: the 1000-class network (torchvision's init draws its head from
        # N(0, 0.01)), then a fresh nn.Linear(4096, C) with PyTorch's default init in place of classifier[6]
        net = torchvision.models.vgg19_bn(weights=None)
        net.classifier[6] = torch.nn.Linear(net.classifier[6].in_features, num_classes)
        if in_channels != 3:
            net.features[0] = torch.nn.Conv2d(in_channels, 64, 3, padding=1)
        return net
    extra = {"width_mult": width_mult} if arch in WIDTH_SCALABLE else {}
    if width_mult != 1.0 and not extra:
        raise UserError(f"width_mult applies to {', '.join(sorted(WIDTH_SCALABLE))} only, not {arch!r}")
    return build_model(arch, num_classes=num_classes, in_channels=in_channels, **extra)


@dataclass
class IGMRun:
    history: pd.DataFrame
    metrics: dict
    divisions: list[dict]          # per semi-supervised epoch and network: the GMM division's quality
    trainer: DivideMix
    generative: list[GenerativeModule]
    config: InstanceGMConfig
    completed: bool = True
    last_division: dict | None = None   # {"epoch", "prob": 2 x N clean probabilities} of the last GMM division


def vae_extra_loss(modules: list[GenerativeModule], batcher: DeviceBatcher, noisy: torch.Tensor,
                   cfg: InstanceGMConfig) -> ExtraLoss:
    """InstanceGM's addition to each DivideMix step: a fresh random batch of vae_batch_size training images (train
    augmentation, given labels) through network k and its generative module, and L_VAE."""
    cuda = batcher.device.type == "cuda"
    adams = [torch.optim.Adam(m.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.999), foreach=not cuda,
                              fused=cuda or None) for m in modules]
    n = batcher.num_samples
    size = min(cfg.vae_batch_size, n)

    def loss(k: int, net: torch.nn.Module, draws: Draws):
        idx = draws.extra_batch(n, size)
        x = draws.view(idx)
        with autocast_for(x.device, cfg.bf16):
            c = net(x)
        # the generative module runs in fp32: λ sits in (0.5, 0.73) and bf16 would quantise it to ~0.004.
        # Its draws in the module's order: the Gumbel sample's Exp(1) noise, then the reparameterisation noise
        exponentials = draws.exponentials((size, c.shape[1]))
        eps = draws.noise((size, modules[k].z_dim), cfg.eps_dist)
        out = modules[k](x.float(), c.float(), eps_dist=cfg.eps_dist, double_sigmoid=cfg.double_sigmoid,
                         t_decoder_input=cfg.t_decoder_input, tau=cfg.gumbel_tau, exponentials=exponentials,
                         eps=eps)
        return vae_loss(out, x, noisy.index_select(0, idx), recon_weight=cfg.recon_weight,
                        noisy_ce_weight=cfg.noisy_ce_weight, prior_weight=cfg.prior_weight,
                        kl_weight=cfg.kl_weight, kl_reduction=cfg.kl_reduction)

    return ExtraLoss(loss, adams, list(modules))


def train_instancegm(data: IGMData, cfg: InstanceGMConfig, seed: int, out_dir=None, device=None,
                     progress: bool = True) -> IGMRun:
    """Train one run; resumes from `out_dir/checkpoints/last.pt` when present."""
    cfg.check()
    torch.manual_seed(seed)   # initial weights; every later random draw comes from per-epoch generators
    dev = torch.device(device or default_device())
    c, channels, side = data.num_classes, data.train_images.shape[-1], data.train_images.shape[1]
    last = use_channels_last(cfg.channels_last, dev, cfg.bf16)
    nets = []
    for _ in range(cfg.num_nets):
        net = build_classifier(cfg.arch, c, channels, cfg.width_mult).to(dev)
        nets.append(net.to(memory_format=torch.channels_last) if last else net)
    # inputs are ToTensor() only (no normalisation): the generative module reconstructs raw [0, 1] pixels
    train_b = DeviceBatcher(data.train_images, batch_size=cfg.warmup_batch_size, shuffle=True,
                            crop_padding=cfg.crop_padding, flip=cfg.flip, seed=seed, device=dev, channels_last=last)
    eval_b = DeviceBatcher(data.train_images, batch_size=cfg.eval_batch_size, shuffle=False, device=dev,
                           channels_last=last)
    test_b = DeviceBatcher(data.test_images, batch_size=cfg.eval_batch_size, shuffle=False, device=dev,
                           channels_last=last)
    noisy = torch.as_tensor(data.noisy, device=dev)
    test_labels = torch.as_tensor(data.test_labels, device=dev)
    generative, extra = [], None
    if cfg.vae:
        generative = [GenerativeModule(channels, side, c, cfg.z_dim).to(dev) for _ in range(2)]
        if last:  # the batches it reads are channels_last; fp32 convolutions gain from it on CPU and GPU alike
            generative = [m.to(memory_format=torch.channels_last) for m in generative]
        extra = vae_extra_loss(generative, train_b, noisy, cfg)
    dm = DivideMix(nets, cfg, train_b, eval_b, noisy, c, seed, extra)
    clean_mask = data.clean_mask
    divisions: list[dict] = []
    last_division: dict = {}   # the per-sample clean probabilities of the last division (per_sample.csv)

    def epoch_fn(epoch: int) -> dict:
        e0 = epoch - 1
        row: dict = {"lr": dm.set_lr(e0)}
        if cfg.method == "ce" or e0 < cfg.warmup_epochs:
            row["phase"] = "ce" if cfg.method == "ce" else "warmup"
            for k in range(cfg.num_nets):
                row[f"loss_net{k + 1}"] = dm.warmup_epoch(k, e0)["loss"]
        else:
            row["phase"] = "ssl"
            probs, stats = dm.co_divide_epoch(e0)   # net k's division trains the *other* network
            for k, prob in enumerate(probs):
                q = division_quality(prob, clean_mask, cfg.p_threshold)
                divisions.append({"epoch": epoch, "net": k + 1, **q})
                row.update({f"{key}_net{k + 1}": q[key] for key in ("n_labelled", "auc", "precision", "recall")})
            last_division.update(epoch=epoch, prob=torch.as_tensor(np.stack(probs)))
            for k in range(2):
                row.update({f"{key}_net{k + 1}": value for key, value in stats[k].items()})
        row.update(dm.test(test_b, test_labels))
        return {key: float(v) if isinstance(v, torch.Tensor) else v for key, v in row.items()}  # one sync

    def get_state() -> dict:
        return {"trainer": dm.state_dict(), "divisions": divisions, "last_division": last_division}

    def set_state(state: dict) -> None:
        dm.load_state_dict(state["trainer"])
        divisions[:] = state["divisions"]
        last_division.update(state.get("last_division") or {})

    desc = {"ce": "CE", "dividemix": "DivideMix", "instancegm": "InstanceGM"}[cfg.method]
    loop = TrainLoop(out_dir, epochs=cfg.epochs, desc=desc, checkpoint_every_seconds=cfg.checkpoint_every_seconds,
                     time_budget_seconds=cfg.time_budget_seconds, progress=progress,
                     postfix=("test_acc", "auc_net1", "n_labelled_net1"),
                     identity=run_identity(cfg, seed, data.train_images, data.noisy, data.test_images))
    result = loop.run(epoch_fn, get_state, set_state, map_location=dev)
    history = pd.DataFrame(result.history)
    return IGMRun(history, summarise(history, divisions), divisions, dm, generative, cfg, result.completed,
                  last_division or None)


def summarise(history: pd.DataFrame, divisions: list[dict]) -> dict:
    """Last (the kit's primary number), best-test-epoch and last-10/last-5 means of the ensemble accuracy; each
    network's last accuracy; the division's quality at the first and last division; seconds per epoch by phase."""
    acc = history["test_acc"] * 100
    out = {"epochs": int(history["epoch"].max()), "acc_last": float(acc.iloc[-1]), "acc_best_test": float(acc.max()),
           "best_epoch": int(history["epoch"].iloc[int(acc.values.argmax())]),
           "acc_last10": float(acc.iloc[-10:].mean()), "acc_last5": float(acc.iloc[-5:].mean())}
    for k in (1, 2):
        col = history.get(f"test_acc_net{k}")
        if col is not None and col.notna().any():
            out[f"acc_last_net{k}"] = float(col.iloc[-1] * 100)
    for phase in ("warmup", "ssl", "ce"):
        part = history.loc[history["phase"] == phase, "seconds"]
        if len(part):
            out[f"seconds_per_{phase}_epoch"] = float(part.median())
    out["train_seconds"] = float(history["seconds"].sum())
    if divisions:
        epochs = [d["epoch"] for d in divisions]
        for which, epoch in (("first", min(epochs)), ("last", max(epochs))):
            rows = [d for d in divisions if d["epoch"] == epoch]
            for key in ("auc", "precision", "recall", "n_labelled"):
                values = [d[key] for d in rows if d[key] is not None]
                out[f"{key}_{which}"] = float(np.mean(values)) if values else None
    return out
