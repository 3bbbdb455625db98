"""Training the noise-level-conditioned classifier and the diffusion models (DSM, S-DSM, TDSM), and sampling.

Both trainings count progress in images, as EDM does: the loop's "epoch" is a tick of `kimg_per_tick` thousand
images drawn from a stream of shuffled passes over the data (resumable: the stream position is part of the state).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field

from ...data import DeviceBatcher
from ...diffusion import (
    AUGMENT_DIM,
    AugmentPipe,
    EDMPrecond,
    build_classifier,
    build_unet,
    ema_beta,
    heun_sample,
    learning_rate,
    sample_sigma,
    sanitize_gradients,
)
from ...errors import UserError
from ...io import atomic_write
from ...train import EMA, TrainLoop, autocast_for, default_device, run_identity
from ..contract import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt

# the sample metrics are a mean and a minimum over these seeds: at least one
SamplingSeeds = Annotated[list[Annotated[int, Field(ge=0, lt=2**32)]], Field(min_length=1)]
from .objective import forward_corrected_ce, tdsm_loss, volmin_loss
from .weights import reverse_matrix, tdsm_weights, volmin_transition, weight_entropy

CLASSIFIER_FORMAT = "nlkit-tdsm-classifier-1"
DIFFUSION_FORMAT = "nlkit-tdsm-diffusion-1"


# ---------------------------------------------------------------------------------------------- data stream

class BatchStream:
    """Endless mini-batches from shuffled passes over a DeviceBatcher; (pass, batch) is the resumable position."""

    def __init__(self, batcher: DeviceBatcher):
        self.batcher = batcher
        self.pass_index, self.position = 0, 0
        self._it = None

    def __next__(self):
        if self._it is None:
            self._it = itertools.islice(self.batcher.epoch(self.pass_index), self.position, None)
        for batch in self._it:
            self.position += 1
            return batch
        self.pass_index, self.position, self._it = self.pass_index + 1, 0, None
        return next(self)

    def state(self) -> dict:
        return {"pass_index": self.pass_index, "position": self.position}

    def load(self, state: dict) -> None:
        self.pass_index, self.position, self._it = int(state["pass_index"]), int(state["position"]), None


def image_batcher(images: np.ndarray, batch_size: int, device, seed: int, shuffle: bool = True) -> DeviceBatcher:
    """uint8 images as floats in [-1, 1] (x / 127.5 - 1), on the device; last partial batch dropped when training."""
    return DeviceBatcher(images, batch_size=batch_size, device=device, shuffle=shuffle, drop_last=shuffle,
                         mean=0.5, std=0.5, seed=seed)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Generated images in [-1, 1] (B, C, H, W) to uint8 (B, H, W, C), rounded as when saved to PNG."""
    return (x * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


# ---------------------------------------------------------------------------------------------- config

@dataclass
class TDSMConfig:
    # diffusion network (docs/tdsm.md §8)
    arch: str = "ddpmpp"
    model_channels: PositiveInt | None = None
    channel_mult: list | None = None
    num_blocks: PositiveInt | None = None
    attn_resolutions: list | None = None
    dropout: Fraction = 0.13
    batch_size: PositiveInt = 512
    lr: PositiveFloat = 1e-3
    warmup_kimg: NonNegativeFloat = 10000
    duration_kimg: PositiveFloat = 200000
    ema_halflife_kimg: PositiveFloat = 500
    ema_rampup: PositiveFloat | None = 0.05
    augment_p: Fraction = 0.12
    precision: str = "fp32"          # the UNet's autocast: fp32 (the original), bf16, or auto (bf16 where the
                                     # device has native bf16: nlkit.hardware)
    tf32: bool | None = None         # TF32 matmuls/convolutions in the classifier and the UNet; None: on only with bf16
    # TDSM (docs/tdsm.md §5, §12)
    tau: NonNegativeFloat = 0.01
    temp: PositiveFloat = 1.0
    weights_form: str = "rinv"
    renorm_after_skip: bool = False
    full_grad: bool = False
    cls_aug_labels: bool = False
    label_dropout: Fraction = 0.0
    extra_chunk: PositiveInt | None = None
    # classifier (docs/tdsm.md §6)
    cls_arch: str = "cnn_mnist"
    cls_batch_size: PositiveInt = 1024
    cls_lr: PositiveFloat = 1e-3
    cls_warmup_kimg: NonNegativeFloat = 10000
    cls_duration_kimg: PositiveFloat = 200000
    volmin_lambda: NonNegativeFloat = 1e-4
    volmin_milestones_kimg: list = field(default_factory=lambda: [1500, 3000, 7500, 7600])
    # sampling and metrics (docs/tdsm.md §9, §10)
    num_steps: PositiveInt = 18
    affine_weight: float = 0.0
    samples_per_class: PositiveInt = 1000
    sampling_seeds: SamplingSeeds = field(default_factory=lambda: [0, 1])
    sample_batch: PositiveInt = 500
    eval_arch: str = "small_cnn"     # the clean-trained evaluator (label consistency, feature-FID): a kit diagnostic
    cas_arch: str | None = None      # the CAS classifier; None: the original's for the dataset (metrics.CAS_ARCHS)
    eval_epochs: PositiveInt = 10
    cas_epochs: PositiveInt = 20
    fid_real_max: PositiveInt = 10000
    diag_samples: PositiveInt = 2000
    inception_weights: str | None = None
    # the loop
    kimg_per_tick: PositiveFloat = 50
    checkpoint_every_seconds: NonNegativeFloat = 300.0  # 0: after every epoch
    time_budget_seconds: PositiveFloat | None = None
    # what the cell runs (its top-level `method` and `transition`, not the train block)
    method: str = "tdsm"
    transition: str = "true"

    @classmethod
    def from_cell(cls, cell: dict) -> "TDSMConfig":
        from ..contract import config_from_cell

        cfg = config_from_cell(cls, cell, "TDSM")
        cfg.method = cell.get("method", cfg.method)
        cfg.transition = str((cell.get("transition") or {}).get("kind", "true"))
        if cfg.method not in METHODS:
            raise UserError(f"unknown TDSM method {cfg.method!r}; choose one of: {', '.join(METHODS)}")
        if cfg.label_dropout > 0:
            raise UserError("label dropout > 0 is incompatible with TDSM (dropped labels become all-zero one-hots)")
        if cfg.precision not in ("fp32", "bf16", "auto"):
            raise UserError(f"precision must be fp32, bf16 or auto, got {cfg.precision!r}")
        cfg.tf32 = cfg.allow_tf32  # resolved: the original disables TF32 in both loops; the bf16 setting allows it
        return cfg

    @property
    def allow_tf32(self) -> bool:
        """TF32 as set (`tf32`), else on only with bf16: the original runs fp32 with TF32 off."""
        return self.precision != "fp32" if self.tf32 is None else bool(self.tf32)

    @property
    def bf16(self):
        """`precision` as the kit's bf16 switch (False, True or 'auto'; nlkit.hardware)."""
        return {"fp32": False, "bf16": True, "auto": "auto"}[self.precision]

    def ticks(self, duration_kimg: float) -> int:
        return max(1, math.ceil(duration_kimg / self.kimg_per_tick))


METHODS = ("classifier", "dsm", "sdsm", "tdsm", "toy")


def unet_overrides(cfg: TDSMConfig) -> dict:
    return {"model_channels": cfg.model_channels, "channel_mult": cfg.channel_mult, "num_blocks": cfg.num_blocks,
            "attn_resolutions": cfg.attn_resolutions}


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions, process-wide, as the original's training loops set it (off)."""
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def _steps_per_tick(kimg_per_tick: float, batch: int) -> int:
    return max(1, round(kimg_per_tick * 1000 / batch))


# ---------------------------------------------------------------------------------------------- classifier

def classifier_lr(base_lr: float, nimg: int, warmup_img: float, volmin_milestones_img=None) -> float:
    """The classifier's learning rate after `nimg` images (training/classifier_loop.py): EDM's linear warm-up for
    forward-corrected CE; for VolMinNet (milestones given) the step schedule alone, without the warm-up: x1 until
    the first milestone (1.5 Mimg), x0.1 until the second (3 Mimg), x0.01 until the third (7.5 Mimg), then x1."""
    if volmin_milestones_img is None:
        return learning_rate(base_lr, nimg, warmup_img)
    first, second, third = volmin_milestones_img[:3]
    if nimg < first:
        return base_lr
    if nimg < second:
        return base_lr * 0.1
    if nimg < third:
        return base_lr * 0.01
    return base_lr


@dataclass
class ClassifierRun:
    history: pd.DataFrame
    model: torch.nn.Module
    transition: np.ndarray       # S used by the loss, or VolMinNet's learned T
    completed: bool


def train_classifier(images: np.ndarray, noisy: np.ndarray, S: np.ndarray, cfg: TDSMConfig, seed: int, *,
                     learn_transition: bool = False, out_dir=None, device=None, progress: bool = True) -> ClassifierRun:
    """The sigma-conditioned noisy-label classifier: forward-corrected CE through S (or VolMinNet's learned T),
    Adam with a linear warm-up and no decay, no EMA, the same sigma distribution and augmentation as the diffusion
    model (the classifier sees the augment labels in training, docs/tdsm.md §6.2)."""
    dev = torch.device(device or default_device())
    set_tf32(cfg.allow_tf32)  # training/classifier_loop.py turns TF32 off
    torch.manual_seed(seed)
    k = int(S.shape[0])
    _, h, w, ch = images.shape
    model = build_classifier(cfg.cls_arch, num_classes=k, in_channels=ch, img_resolution=h,
                             augment_dim=AUGMENT_DIM).to(dev)
    params = list(model.parameters())
    A = None
    if learn_transition:
        A = torch.full((k, k), -2.0, device=dev, requires_grad=True)
        params.append(A)
    opt = torch.optim.Adam(params, lr=cfg.cls_lr, betas=(0.9, 0.999), eps=1e-8)
    S_t = torch.as_tensor(S, dtype=torch.float32, device=dev)
    noisy_t = torch.as_tensor(noisy, device=dev)
    batch = min(cfg.cls_batch_size, len(images))
    stream = BatchStream(image_batcher(images, batch, dev, seed))
    pipe = AugmentPipe(cfg.augment_p) if cfg.augment_p > 0 else None
    gen = torch.Generator(device=dev).manual_seed(seed + 11)
    steps = _steps_per_tick(cfg.kimg_per_tick, batch)
    nimg = 0
    milestones = [m * 1000 for m in cfg.volmin_milestones_kimg]

    def epoch_fn(tick: int) -> dict:
        nonlocal nimg
        model.train()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), device=dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            b = next(stream)
            x0, y = b.x, noisy_t.index_select(0, b.idx)
            aug = None
            if pipe is not None:
                x0, aug = pipe(x0, gen)
            sigma = sample_sigma(x0.shape[0], gen, dev)
            x = x0 + sigma * torch.randn(x0.shape, generator=gen, device=dev)
            logits = model(x, sigma.flatten(), aug)
            if A is not None:
                if milestones[2] < nimg < milestones[3]:
                    A.requires_grad_(False)  # the code freezes T once, inside this window, for good
                loss = volmin_loss(logits, y, volmin_transition(A), cfg.volmin_lambda).mean()
            else:
                loss = forward_corrected_ce(logits, y, S_t).mean()
            for g in opt.param_groups:
                g["lr"] = classifier_lr(cfg.cls_lr, nimg, cfg.cls_warmup_kimg * 1000,
                                        milestones if A is not None else None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sanitize_gradients(params)
            opt.step()
            nimg += x0.shape[0]
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(1) == y).float().mean()
        seconds = time.perf_counter() - t0
        return {"kimg": nimg / 1000, "loss": float(loss_sum / steps), "train_acc_noisy": float(correct / steps),
                "img_per_s": steps * batch / seconds, "seconds": seconds}

    def get_state():
        return {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(), "nimg": nimg,
                "stream": stream.state(), "A": A.detach().clone() if A is not None else None,
                "A_frozen": bool(A is not None and not A.requires_grad)}

    def set_state(state):
        nonlocal nimg
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        nimg = int(state["nimg"])
        stream.load(state["stream"])
        if A is not None and state.get("A") is not None:
            with torch.no_grad():
                A.copy_(state["A"])
            A.requires_grad_(not state.get("A_frozen", False))

    loop = TrainLoop(out_dir, epochs=cfg.ticks(cfg.cls_duration_kimg), desc="classifier",
                     checkpoint_every_seconds=cfg.checkpoint_every_seconds,
                     time_budget_seconds=cfg.time_budget_seconds, progress=progress,
                     postfix=("kimg", "loss", "train_acc_noisy"),
                     identity=run_identity(cfg, seed, images, noisy, S, stage="classifier",
                                           learn_transition=learn_transition))
    result = loop.run(epoch_fn, get_state, set_state, map_location=dev)
    model.eval()
    T = volmin_transition(A.detach()).cpu().numpy().astype(np.float64) if A is not None else np.asarray(S)
    return ClassifierRun(pd.DataFrame(result.history), model, T, result.completed)


def save_classifier(run: ClassifierRun, path, arch: str, kwargs: dict, transition_kind: str) -> Path:
    payload = {"format": CLASSIFIER_FORMAT, "arch": arch, "kwargs": kwargs, "transition_kind": transition_kind,
               "transition": torch.as_tensor(run.transition, dtype=torch.float64),
               "state_dict": {k: v.detach().cpu() for k, v in run.model.state_dict().items()}}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return Path(path)


def load_classifier(path, device="cpu"):
    """(model in eval mode, transition matrix used or learned by it, its kind) from a classifier artefact."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"classifier artefact not found: {path}; run the classifier cell first")
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CLASSIFIER_FORMAT:
        raise UserError(f"{path} is not a TDSM classifier artefact (written by the classifier cell)")
    model = build_classifier(payload["arch"], **payload["kwargs"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload["transition"].numpy(), payload["transition_kind"]


@torch.no_grad()
def classifier_diagnostic(model, images: np.ndarray, clean: np.ndarray, noisy: np.ndarray | None, S: np.ndarray,
                          sigmas=None, device=None, seed: int = 0, batch: int = 1000) -> pd.DataFrame:
    """Per noise level: clean accuracy of argmax q, agreement with the noisy labels, and (with noisy labels) the mean
    entropy of the TDSM weights and the mean weight on the observed label (docs/tdsm.md §12 #12)."""
    dev = torch.device(device or default_device())
    sigmas = np.geomspace(0.002, 80, 13) if sigmas is None else np.asarray(sigmas)
    model = model.to(dev).eval()
    gen = torch.Generator(device=dev).manual_seed(seed)
    S_t = torch.as_tensor(S, dtype=torch.float64, device=dev)
    x_all = image_batcher(images, batch, dev, seed, shuffle=False)
    clean_t = torch.as_tensor(clean, device=dev)
    noisy_t = torch.as_tensor(noisy, device=dev) if noisy is not None else None
    rows = []
    for s in sigmas:
        acc = agree = ent = w_obs = torch.zeros((), device=dev, dtype=torch.float64)
        for b in x_all.epoch(0):
            x = b.x + float(s) * torch.randn(b.x.shape, generator=gen, device=dev)
            q = torch.softmax(model(x, torch.full((x.shape[0],), float(s), device=dev)).double(), 1)
            acc = acc + (q.argmax(1) == clean_t.index_select(0, b.idx)).sum()
            if noisy_t is not None:
                y = noisy_t.index_select(0, b.idx)
                agree = agree + (q.argmax(1) == y).sum()
                w = tdsm_weights(q, y, S_t, "closed")
                ent = ent + weight_entropy(w).sum()
                w_obs = w_obs + w.gather(1, y[:, None]).sum()
        n = len(images)
        row = {"sigma": float(s), "clean_acc": float(acc) / n}
        if noisy_t is not None:
            row.update(noisy_agreement=float(agree) / n, weight_entropy=float(ent) / n,
                       weight_on_observed=float(w_obs) / n)
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- diffusion

def draw_step_noise(x0: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One diffusion step's draws: sigma (B, 1, 1, 1), then the noise (the goldens replace this function to give
    the original's stored draws)."""
    sigma = sample_sigma(x0.shape[0], generator, x0.device)
    return sigma, torch.randn(x0.shape, generator=generator, device=x0.device)


@dataclass
class DiffusionRun:
    history: pd.DataFrame
    net: EDMPrecond
    ema: EDMPrecond
    completed: bool
    nimg: int


def train_diffusion(images: np.ndarray, noisy: np.ndarray, S: np.ndarray, cfg: TDSMConfig, seed: int, *,
                    method: str, classifier=None, out_dir=None, device=None, progress: bool = True) -> DiffusionRun:
    """DSM (the observed noisy label only), S-DSM (constant weights R[y~, :]) or TDSM (classifier weights) on one
    loop. The classifier is frozen in eval mode and queried at the same (x_sigma, sigma) as the loss."""
    if method not in ("dsm", "sdsm", "tdsm"):
        raise UserError(f"train_diffusion: method must be dsm, sdsm or tdsm, got {method!r}")
    if method == "tdsm" and classifier is None:
        raise UserError("TDSM needs the noise-level-conditioned classifier (the classifier cell's artefact)")
    dev = torch.device(device or default_device())
    set_tf32(cfg.allow_tf32)  # EDM trains in fp32 with TF32 off; the quick profile allows both bf16 and TF32
    torch.manual_seed(seed)
    k = int(S.shape[0])
    _, h, w, ch = images.shape
    if h != w:
        raise UserError(f"the UNet needs square images, got {h}x{w}")
    net = EDMPrecond(build_unet(cfg.arch, img_resolution=h, in_channels=ch, label_dim=k, augment_dim=AUGMENT_DIM,
                                dropout=cfg.dropout, **unet_overrides(cfg))).to(dev)
    ema = EMA(net, decay=0.0, buffers=True)
    cuda = dev.type == "cuda"
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, fused=cuda or None,
                           foreach=None if cuda else True)
    S64 = torch.as_tensor(S, dtype=torch.float64, device=dev)
    R32 = reverse_matrix(S64).float()
    noisy_t = torch.as_tensor(noisy, device=dev)
    batch = min(cfg.batch_size, len(images))
    stream = BatchStream(image_batcher(images, batch, dev, seed))
    pipe = AugmentPipe(cfg.augment_p) if cfg.augment_p > 0 else None
    gen = torch.Generator(device=dev).manual_seed(seed + 17)
    steps = _steps_per_tick(cfg.kimg_per_tick, batch)
    bf16 = cfg.bf16
    if classifier is not None:
        classifier = classifier.to(dev).eval()
    nimg = 0

    def denoiser(x, sigma, labels, aug):
        with autocast_for(dev, bf16):
            return net(x, sigma, labels, aug)

    def weights_for(x, sigma, y, aug):
        if method == "dsm":
            return None
        if method == "sdsm":
            return R32.index_select(0, y)
        with torch.no_grad(), autocast_for(dev, bf16):
            logits = classifier(x, sigma.flatten(), aug if cfg.cls_aug_labels else None)
        q = torch.softmax(logits.double() / cfg.temp, 1)  # float64: a confident q must not underflow to 0
        return tdsm_weights(q, y, S64, cfg.weights_form).float()

    def epoch_fn(tick: int) -> dict:
        nonlocal nimg
        net.train()
        loss_sum = torch.zeros((), device=dev)
        extra_sum = torch.zeros((), device=dev, dtype=torch.long)
        t0 = time.perf_counter()
        for _ in range(steps):
            b = next(stream)
            x0, y = b.x, noisy_t.index_select(0, b.idx)
            aug = None
            if pipe is not None:
                x0, aug = pipe(x0, gen)
            sigma, noise = draw_step_noise(x0, gen)
            wts = weights_for(x0 + sigma * noise, sigma, y, aug)
            per_sample, extra = tdsm_loss(denoiser, x0, y, wts, k, sigma=sigma, noise=noise, augment_labels=aug,
                                          tau=cfg.tau, full_grad=cfg.full_grad,
                                          renorm_after_skip=cfg.renorm_after_skip, chunk=cfg.extra_chunk)
            loss = per_sample.mean()
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg.lr, nimg, cfg.warmup_kimg * 1000)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sanitize_gradients(net.parameters())
            opt.step()
            # EDM's beta: from the image count before this step's batch (its ramp-up reads cur_nimg before the
            # increment, so the first update copies the network)
            ema.decay = ema_beta(x0.shape[0], nimg, cfg.ema_halflife_kimg * 1000, cfg.ema_rampup)
            ema.update()
            nimg += x0.shape[0]
            loss_sum += loss.detach()
            extra_sum += extra
        seconds = time.perf_counter() - t0
        images_done = steps * batch
        return {"kimg": nimg / 1000, "loss": float(loss_sum / steps),
                "extra_passes_per_sample": float(extra_sum) / images_done,
                "kimg_per_s": images_done / 1000 / seconds, "seconds": seconds}

    def get_state():
        return {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                "nimg": nimg, "stream": stream.state()}

    def set_state(state):
        nonlocal nimg
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        nimg = int(state["nimg"])
        stream.load(state["stream"])

    loop = TrainLoop(out_dir, epochs=cfg.ticks(cfg.duration_kimg), desc=method.upper(),
                     checkpoint_every_seconds=cfg.checkpoint_every_seconds,
                     time_budget_seconds=cfg.time_budget_seconds, progress=progress,
                     postfix=("kimg", "loss", "extra_passes_per_sample"),
                     identity=run_identity(cfg, seed, images, noisy, S, stage=method))
    result = loop.run(epoch_fn, get_state, set_state, map_location=dev)
    net.eval()
    return DiffusionRun(pd.DataFrame(result.history), net, ema.model.eval(), result.completed, nimg)


def save_diffusion(model: EDMPrecond, path, arch: str, kwargs: dict) -> Path:
    payload = {"format": DIFFUSION_FORMAT, "arch": arch, "kwargs": kwargs,
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return Path(path)


def load_diffusion(path, device="cpu") -> EDMPrecond:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"diffusion artefact not found: {path}")
    payload = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != DIFFUSION_FORMAT:
        raise UserError(f"{path} is not a TDSM diffusion artefact")
    net = EDMPrecond(build_unet(payload["arch"], **payload["kwargs"]))
    net.load_state_dict(payload["state_dict"])
    return net.to(device).eval()


# ---------------------------------------------------------------------------------------------- sampling

def affine_denoiser(denoiser, other=None, weight: float = 0.0):
    """The affine score of TDSM's sampler, D = (1 + a) D - a D_other (float64), used at both Heun evaluations on the
    same label; the plain denoiser (in float64) when `other` is None or a = 0."""
    def d(x, sigma, y):
        out = denoiser(x, sigma, y).to(torch.float64)
        if other is not None and weight:
            out = (1 + weight) * out - weight * other(x, sigma, y).to(torch.float64)
        return out
    return d


@torch.no_grad()
def generate(denoiser, num_classes: int, per_class: int, shape: tuple, seed: int, *, device=None,
             num_steps: int = 18, batch: int = 500, other=None, affine_weight: float = 0.0, bf16: bool = False):
    """`per_class` images for every class (labels in blocks), Heun-18 from latents seeded by `seed`; returns uint8
    images (N, H, W, C) and labels. With `other` and `affine_weight` a, D = (1 + a) D - a D_other (the affine
    score that pushes samples away from a noisy-label model)."""
    dev = torch.device(device or default_device())
    labels = torch.arange(num_classes, device=dev).repeat_interleave(per_class)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    latents = torch.randn((len(labels),) + tuple(shape), generator=gen, device=dev)

    mixed = affine_denoiser(denoiser, other, affine_weight)

    def d(x, sigma, y):
        with autocast_for(dev, bf16):
            return mixed(x, sigma, y)

    out = []
    for start in range(0, len(labels), batch):
        y = F.one_hot(labels[start:start + batch], num_classes).float()
        out.append(to_uint8(heun_sample(d, latents[start:start + batch], y, num_steps=num_steps).float()))
    return np.concatenate(out), labels.cpu().numpy()
