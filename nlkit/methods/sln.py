"""SLN (Chen et al., ICLR 2021): stochastic label noise, a momentum model (EMA) and label correction.

The faithful defaults follow the SLN spec; the original code's other behaviours are named switches:
`lc_start_inclusive` (re-sln's e >= start), `lc_augment` (LC predictions on train-augmented images),
`ema_buffers` (the EMA also averages BN statistics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import DeviceBatcher, load_dataset, stratified_subset, validation_split
from ..data.images import downsample, resize_images
from ..errors import UserError, check_choice
from ..io import project_path
from ..models import build_model
from ..noise import noise_report, openset
from ..noise.issues import loss_verdicts, write_per_sample
from ..noise.setting import apply_noise_model, restrict, setting_from_params
from ..hardware import Switch, use_bf16
from ..train import Trainer, TrainLoop, predict, run_identity
from .contract import (
    PROTOCOL_METRICS,
    Fraction,
    MethodSpec,
    NonNegativeFloat,
    NonNegativeInt,
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    Roots,
    RunOutput,
    config_from_cell,
)

# Normalisation constants of the SLN code (docs/sln.md §3.1); other datasets use their own training statistics.
NORMALISATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}


METHODS = ("ce", "sln", "slnmolc")  # CE is SLN with sigma = 0; SLN's EMA gives SLN-MO in the same run

# Top-level keys an SLN cell may set beyond the pipeline's own (checked by the params schema).
CELL_KEYS = {
    "method": str,                       # ce | sln | slnmolc (checked by Config.from_cell)
    "report_net": str,                   # live | ema
    "val_fraction": OpenFraction | None,  # sigma search: a noisy validation split (docs/sln.md §7.1)
    "image_size": PositiveInt | None,
    "downsample": PositiveInt | None,    # a reduced profile's cheaper pixels: average-pool by this factor
}

SPEC = MethodSpec("sln", metrics=PROTOCOL_METRICS + tuple(
    f"{m}_{net}" for m in ("acc_last", "acc_best_test", "acc_last10", "best_epoch") for net in ("live", "ema")
) + ("val_acc_last", "noise_rate", "epochs", "seconds_per_epoch", "images_per_second"))


# ---------------------------------------------------------------------------------------------- the method

def sln_targets(targets: torch.Tensor, sigma: float, generator: torch.Generator | None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
    """y + sigma * xi with fresh xi ~ N(0, I) per sample, class and step; no clipping or renormalisation.
    `noise` supplies xi instead of drawing it (a golden test passes the original's draw)."""
    if sigma == 0:
        return targets
    if noise is None:
        noise = torch.randn(targets.shape, generator=generator, device=targets.device, dtype=torch.float32)
    return targets + sigma * noise


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample -sum_c t_ic log softmax(z_i)_c with the log-softmax in fp32 (SLN targets reach about 3 sigma);
    the step minimises the batch mean. float64 targets (label correction's, with `lc_float64`) make the product
    and the sum float64, as in the original, whose corrected targets are numpy float64 arrays."""
    if targets.dtype != torch.float64:
        targets = targets.float()
    return -(targets * torch.log_softmax(logits.float(), dim=1)).sum(1)


def correct_labels(log_probs: torch.Tensor, current: torch.Tensor, noisy_onehot: torch.Tensor,
                   soft: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
    """SLN's label correction (docs/sln.md §1.4): w = min-max normalised loss of the current target;
    new target = w * (original noisy one-hot) + (1 - w) * (EMA prediction: one-hot argmax, or soft).

    `log_probs` are the EMA's log-softmax outputs (fp32): the loss uses them directly, as the original does, so a
    sample whose label has a probability below fp32's resolution keeps its true (large) loss. The loss is computed
    in the current target's precision and w's complement before the cast, as the original; `dtype` is that of the
    new targets (float64 with `lc_float64`, the original's numpy arrays; default: the current targets' dtype)."""
    log_probs = log_probs.float()
    losses = -(current * log_probs).sum(1)
    span = (losses.max() - losses.min()).clamp_min(torch.finfo(losses.dtype).tiny)
    w = ((losses - losses.min()) / span)[:, None]
    c = log_probs.shape[1]
    prediction = log_probs.exp() if soft else torch.nn.functional.one_hot(log_probs.argmax(1), c).float()
    dtype = dtype or current.dtype
    return w.to(dtype) * noisy_onehot.to(dtype) + (1 - w).to(dtype) * prediction.to(dtype)


def lc_active(epoch: int, lc_start: int | None, epochs: int, inclusive: bool = False) -> bool:
    """LC runs at the start of every epoch (1-based) after `lc_start` (official `>`; re-sln `>=`)."""
    if lc_start is None or not 0 < lc_start < epochs:
        return False
    return epoch >= lc_start if inclusive else epoch > lc_start


# ---------------------------------------------------------------------------------------------- data

@dataclass
class SLNData:
    train_images: np.ndarray
    noisy: np.ndarray           # the labels trained on
    clean: np.ndarray           # clean labels (for open-set: the untouched labels)
    noisy_mask: np.ndarray      # which samples carry noise (a wrong label, or a replaced image)
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    mean: tuple
    std: tuple
    pixels: str
    noise_meta: dict = field(default_factory=dict)
    val_images: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    train_index: np.ndarray | None = None   # each training sample's index in the full dataset (per_sample.csv)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _openset_source(cell: dict, data_root, n_needed: int, reference) -> np.ndarray:
    """Images that replace the open-set samples: CIFAR-100 train images (the paper), or, for the digits smoke
    stand-in, digits with their pixels shuffled (out of distribution, same intensity statistics)."""
    source = cell["noise"].get("source_dataset", "cifar100")
    if source == "pixel_shuffled":
        rng = np.random.default_rng(12345)
        flat = reference.reshape(len(reference), -1)
        shuffled = np.stack([row[rng.permutation(flat.shape[1])] for row in flat])
        return shuffled.reshape(reference.shape)
    return load_dataset(source, data_root=data_root).train_images


def prepare_data(cell: dict, seed: int, data_root=None, noise_root=None) -> SLNData:
    """Images, the noisy labels of the cell's noise setting and the normalisation, for one run."""
    # native pixels: an `image_size` resize comes after the normalisation statistics (below), as in re-sln
    ds = load_dataset(cell["dataset"], data_root=data_root)
    images, clean = ds.train_images, ds.train_labels
    noise = cell["noise"]
    if noise["model"] == "openset":
        source = _openset_source(cell, data_root, len(images), images)
        plan = openset(len(images), len(source), noise["rate"], noise.get("seed", 123))
        images = images.copy()
        replaced = source[plan["source_idx"]]
        if replaced.shape[1:] != images.shape[1:]:
            raise UserError(f"open-set source images {replaced.shape[1:]} differ from {images.shape[1:]}")
        images[plan["replaced_idx"]] = replaced
        mask = np.zeros(len(images), bool)
        mask[plan["replaced_idx"]] = True
        noisy, meta = clean.copy(), {"generator": "openset", "rate": plan["rate"], "seed": plan["seed"],
                                     "source": noise.get("source_dataset", "cifar100")}
    else:
        setting = setting_from_params(cell, data_root, noise_root)
        ds = restrict(ds, setting["label_range"])
        images, clean = ds.train_images, ds.train_labels
        result = apply_noise_model(ds, setting["noise"], setting["rate"], setting["noise_seed"],
                                   asym_map=setting["asym_map"], label_file=setting["label_file"])
        noisy, mask, meta = result.noisy, result.noisy != result.clean, result.meta
    # statistics of the native training pixels (re-sln: Animal-10N's 64x64 images, before its Resize(32))
    mean, std = NORMALISATION.get(ds.name) or _channel_stats(ds.train_images)
    # reduced budgets (the cpu profile): a stratified subset by clean label, drawn after the noise so a published
    # label file still indexes the full set; the same subset for every method and seed
    keep = stratified_subset(clean, cell.get("train_subset"))
    held = stratified_subset(ds.test_labels, cell.get("test_subset"))
    factor = int(cell.get("downsample") or 1)  # after the noise: the labels are those of the full pixels
    if factor > 1:
        meta = {**meta, "downsample": factor}
    size = cell.get("image_size")  # PIL bilinear, as torchvision's Resize on re-sln's PIL images
    data = SLNData(downsample(resize_images(images[keep], size), factor), noisy[keep], clean[keep], mask[keep],
                   downsample(resize_images(ds.test_images[held], size), factor), ds.test_labels[held], ds.classes,
                   mean, std, ds.pixels, meta, train_index=keep)
    images, noisy, clean, mask = data.train_images, data.noisy, data.clean, data.noisy_mask
    if cell.get("val_fraction"):
        # sigma search: a stratified split of the *noisy* training set, labels noisy (docs/sln.md §7.1)
        train_idx, val_idx = validation_split(noisy, val_fraction=cell["val_fraction"], seed=seed)
        data = replace(data, train_images=images[train_idx], noisy=noisy[train_idx], clean=clean[train_idx],
                       noisy_mask=mask[train_idx], val_images=images[val_idx], val_labels=noisy[val_idx],
                       train_index=keep[train_idx])
    return data


def _channel_stats(images: np.ndarray) -> tuple[tuple, tuple]:
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(float(v) for v in x.mean(0).round(4)), tuple(float(v) for v in np.maximum(x.std(0), 1e-3).round(4))


# ---------------------------------------------------------------------------------------------- training

@dataclass
class SLNConfig:
    epochs: PositiveInt = 300
    batch_size: PositiveInt = 128
    lr: PositiveFloat = 0.001
    lr_schedule: str = "constant"   # SLN's constant lr; 'cosine': half-cosine per epoch from lr to ~0 over the run
                                    # (a reduced profile's short schedule, docs/bench.md §3)
    momentum: Fraction = 0.9
    weight_decay: NonNegativeFloat = 5e-4
    sigma: NonNegativeFloat = 1.0
    ema_decay: Fraction = 0.999
    lc_start: NonNegativeInt | None = None
    lc_start_inclusive: bool = False
    lc_augment: bool = True
    lc_soft: bool = False
    ema_buffers: bool = True
    arch: str = "wrn28_2"
    width_mult: PositiveFloat | None = None  # a narrower net for reduced profiles (PreAct ResNets)
    crop_padding: NonNegativeInt = 4
    flip: bool = True
    bf16: Switch = False        # bf16 autocast (and TF32 on CUDA) for training, testing and LC; False: fp32;
                                # 'auto': where the device has native bf16 (nlkit.hardware)
    lc_float64: bool = False    # LC's targets and the loss on them in float64, as the original's numpy targets
    channels_last: Switch = "auto"  # 'auto': on CUDA, on the CPU with bf16 (nlkit.hardware)
    compile: bool = False
    checkpoint_every_seconds: PositiveFloat = 300.0
    time_budget_seconds: PositiveFloat | None = None
    # what the cell reports (from its top-level `method` and `report_net`, not the train block)
    method: str = "sln"
    report_net: str = "live"

    @classmethod
    def from_cell(cls, cell: dict) -> "SLNConfig":
        cfg = config_from_cell(cls, cell, "SLN")
        cfg = replace(cfg, method=cell.get("method", cfg.method), report_net=cell.get("report_net", cfg.report_net))
        check_choice(cfg.method, METHODS, "SLN method")
        check_choice(cfg.report_net, ("live", "ema"), "reported net")
        check_choice(cfg.lr_schedule, LR_SCHEDULES, "SLN lr schedule")
        return cfg

    @property
    def analysis_net(self) -> str:
        """The net whose training-set behaviour the figures show: the reported one, or the EMA for SLN (its EMA
        is SLN-MO, the better net of the same run)."""
        return "ema" if self.report_net == "ema" or self.method == "sln" else "live"


Config = SLNConfig
LR_SCHEDULES = ("constant", "cosine")


def epoch_lr(cfg: SLNConfig, epoch: int) -> float:
    """The learning rate of 1-based `epoch`: constant (the paper), or a half-cosine from `lr` at epoch 1 towards 0
    after the last, set once an epoch so a resumed run continues on the same curve."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / cfg.epochs))


@dataclass
class SLNRun:
    history: pd.DataFrame
    metrics: dict
    trainer: Trainer
    targets: torch.Tensor
    config: SLNConfig
    completed: bool = True


def train_sln(data: SLNData, cfg: SLNConfig, seed: int, out_dir=None, device=None, progress: bool = True) -> SLNRun:
    """Train one SLN run (CE when sigma = 0). Resumes from `out_dir/checkpoints/last.pt` when present."""
    torch.manual_seed(seed)
    c = data.num_classes
    in_ch = data.train_images.shape[-1]
    width = {"width_mult": cfg.width_mult} if cfg.width_mult else {}
    model = build_model(cfg.arch, num_classes=c, in_channels=in_ch, **width)
    trainer = Trainer(model, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                      ema_decay=cfg.ema_decay, ema_buffers=cfg.ema_buffers, device=device, bf16=cfg.bf16,
                      channels_last=cfg.channels_last, compile=cfg.compile)
    dev = trainer.device
    if dev.type == "cuda":  # fp32 means fp32 (the original predates TF32); the bf16 switch allows TF32 too
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = use_bf16(cfg.bf16, dev)
    common = dict(device=dev, mean=data.mean, std=data.std, channels_last=trainer.channels_last)
    train = DeviceBatcher(data.train_images, batch_size=cfg.batch_size, shuffle=True, crop_padding=cfg.crop_padding,
                          flip=cfg.flip, seed=seed, **common)
    lc_batcher = DeviceBatcher(data.train_images, batch_size=512, shuffle=False,
                               crop_padding=cfg.crop_padding if cfg.lc_augment else 0,
                               flip=cfg.flip and cfg.lc_augment, seed=seed + 7, **common)
    test = DeviceBatcher(data.test_images, batch_size=512, shuffle=False, **common)
    val = DeviceBatcher(data.val_images, batch_size=512, shuffle=False, **common) if data.val_images is not None \
        else None
    noisy = torch.as_tensor(data.noisy, device=dev)
    clean = torch.as_tensor(data.clean, device=dev)
    test_labels = torch.as_tensor(data.test_labels, device=dev)
    val_labels = torch.as_tensor(data.val_labels, device=dev) if val is not None else None
    noisy_onehot = torch.nn.functional.one_hot(noisy, c).float()
    targets = noisy_onehot.clone()
    noise_gen = torch.Generator(device=dev)
    noise_gen.manual_seed(seed + 1)
    sigma = cfg.sigma

    def loss_fn(logits, batch):
        return soft_cross_entropy(logits, sln_targets(targets.index_select(0, batch.idx), sigma, noise_gen))

    def epoch_fn(epoch: int) -> dict:
        nonlocal targets, sigma
        lc = lc_active(epoch, cfg.lc_start, cfg.epochs, cfg.lc_start_inclusive)
        if lc:
            sigma = 0.0
            log_probs = _predict_epoch(trainer, lc_batcher, epoch, c)
            targets = correct_labels(log_probs, targets, noisy_onehot, soft=cfg.lc_soft,
                                     dtype=torch.float64 if cfg.lc_float64 else torch.float32)
        train.next_epoch = epoch - 1
        for group in trainer.optimizer.param_groups:
            group["lr"] = epoch_lr(cfg, epoch)
        stats = trainer.train_epoch(train, loss_fn, {"noisy": targets.argmax(1), "clean": clean})
        row = {"sigma": sigma, "lc": lc, "lr": epoch_lr(cfg, epoch), **stats,
               "test_acc_live": trainer.accuracy(test, test_labels),
               "test_acc_ema": trainer.accuracy(test, test_labels, use_ema=True) if trainer.ema else None}
        if val is not None:
            row["val_acc_live"] = trainer.accuracy(val, val_labels)
        return row

    def get_state() -> dict:
        return {"trainer": trainer.state_dict(), "targets": targets, "sigma": sigma,
                "noise_generator": noise_gen.get_state()}

    def set_state(state: dict) -> None:
        nonlocal targets, sigma
        trainer.load_state_dict(state["trainer"])
        targets = state["targets"].to(dev)
        sigma = state["sigma"]
        noise_gen.set_state(state["noise_generator"])

    loop = TrainLoop(out_dir, epochs=cfg.epochs, desc="SLN" if cfg.sigma else "CE",
                     checkpoint_every_seconds=cfg.checkpoint_every_seconds,
                     time_budget_seconds=cfg.time_budget_seconds, progress=progress,
                     postfix=("loss", "test_acc_live", "test_acc_ema"),
                     identity=run_identity(cfg, seed, data.train_images, data.noisy, data.test_images))
    result = loop.run(epoch_fn, get_state, set_state, map_location=dev)
    hist = pd.DataFrame(result.history)
    return SLNRun(hist, summarise(hist, len(data.train_images)), trainer, targets, cfg, result.completed)


def _predict_epoch(trainer: Trainer, batcher: DeviceBatcher, epoch: int, num_classes: int) -> torch.Tensor:
    """EMA log-probabilities for every train sample, with this epoch's augmentation draw (SLN's LC pass)."""
    model = trainer.ema.model if trainer.ema else trainer.model
    return predict(model, batcher, batcher.num_samples, num_classes, bf16=trainer.bf16, epoch=epoch, log=True)


def summarise(history: pd.DataFrame, n_train: int) -> dict:
    """Last-epoch (the protocol), best-test-epoch and mean-of-last-10 accuracies of the live and EMA nets."""
    out = {"epochs": int(history["epoch"].max()), "seconds_per_epoch": float(history["seconds"].median()),
           "images_per_second": float(n_train / history["seconds"].median())}
    for net in ("live", "ema"):
        col = history.get(f"test_acc_{net}")
        if col is None or col.isna().all():
            continue
        out[f"acc_last_{net}"] = float(col.iloc[-1] * 100)
        out[f"acc_best_test_{net}"] = float(col.max() * 100)
        out[f"best_epoch_{net}"] = int(history["epoch"].iloc[int(col.values.argmax())])
        out[f"acc_last10_{net}"] = float(col.iloc[-10:].mean() * 100)
    if "val_acc_live" in history:
        out["val_acc_last"] = float(history["val_acc_live"].iloc[-1] * 100)
    return out


def prepare(cell: dict, seed: int, roots: Roots | None = None) -> SLNData:
    """The contract's data step: images and the cell's noisy labels (see `prepare_data`)."""
    roots = roots or Roots()
    return prepare_data(cell, seed, roots.data_root, roots.noise_root)


def run(data: SLNData, config: SLNConfig, seed: int, workdir=None, *, device=None, progress: bool = True
        ) -> RunOutput:
    """The contract's run: train, then the protocol metrics of the reported net beside every net's numbers and
    what the noise did. `state` holds the SLNRun (trainer, targets) for the notebook's figures."""
    result = train_sln(data, config, seed, out_dir=workdir, device=device, progress=progress)
    metrics = {**protocol_metrics(result.metrics, config.report_net), **result.metrics,
               "noise_rate": float(data.noisy_mask.mean()), "noise_meta": data.noise_meta, "pixels": data.pixels}
    if data.noisy_mask.any() and data.noise_meta.get("generator") != "openset":
        metrics["noise_report"] = noise_report(data.clean, data.noisy, data.num_classes)["per_class_noise_rate"]
    write_per_sample(workdir, per_sample_verdicts(result, data))
    return RunOutput(result.history, metrics, state=result, completed=result.completed)


def ce_companion(params_file) -> Path | None:
    """The CE cell of the same setting as an SLN cell (`...-sln.yaml` -> `...-ce.yaml` beside it), which the
    notebook's CE-vs-SLN comparison trains too; None when the cell is CE itself or has no such sibling."""
    path = project_path(params_file)
    stem, _, method = path.stem.rpartition("-")
    if not stem or method == "ce":
        return None
    sibling = path.with_name(f"{stem}-ce.yaml")
    return sibling if sibling.is_file() else None


def protocol_metrics(summary: dict, report_net: str) -> dict:
    """The kit's standard metric names for the net the paper reports (live for CE/SLN, EMA for MO/LC).
    The protocol reports the last epoch and selects no model on validation data."""
    return {"acc_last": summary.get(f"acc_last_{report_net}"),
            "acc_best_test": summary.get(f"acc_best_test_{report_net}"),
            "acc_val_selected": None}


# ---------------------------------------------------------------------------------------------- analysis

@torch.no_grad()
def classifier_verdicts(trainer: Trainer, data: SLNData, use_ema: bool = False) -> pd.DataFrame:
    """per_sample.csv of one trained classifier: one pass over the training set without augmentation, its loss
    on the given labels as the score and its prediction as the corrected label (nlkit.noise.issues)."""
    batcher = DeviceBatcher(data.train_images, batch_size=512, shuffle=False, device=trainer.device, mean=data.mean,
                            std=data.std)
    probs = trainer.probabilities(batcher, data.num_classes, use_ema=use_ema and trainer.ema is not None)
    # open-set noise replaces images, not labels: given == clean, the clean label says nothing about the image
    clean = None if data.noise_meta.get("generator") == "openset" else data.clean
    return loss_verdicts(probs.cpu().numpy(), data.noisy, clean=clean, index=data.train_index)


def per_sample_verdicts(run: SLNRun, data: SLNData) -> pd.DataFrame:
    """CE's and SLN's verdicts from the reported net. After label correction (the LC variants) the corrected label
    is LC's target (its argmax, `corrected_confidence` its weight) and the verdict is corrected != given; without
    LC they are the net's prediction (`predicted`, probability `pred_prob`)."""
    frame = classifier_verdicts(run.trainer, data, use_ema=run.config.report_net == "ema")
    if "lc" in run.history and run.history["lc"].astype(bool).any():
        targets = run.targets.float().cpu().numpy()
        frame["corrected_label"] = targets.argmax(1)
        frame["corrected_confidence"] = targets.max(1)
        frame["suspected_issue"] = frame["corrected_label"].to_numpy() != frame["given"].to_numpy()
    return frame


@torch.no_grad()
def train_set_analysis(run: SLNRun, data: SLNData, use_ema: bool) -> pd.DataFrame:
    """Per training sample (no augmentation): loss w.r.t. the given label, max probability, prediction."""
    t = run.trainer
    batcher = DeviceBatcher(data.train_images, batch_size=512, shuffle=False, device=t.device, mean=data.mean,
                            std=data.std)
    probs = t.probabilities(batcher, data.num_classes, use_ema=use_ema and t.ema is not None).cpu().numpy()
    given = data.noisy
    return pd.DataFrame({
        "loss": -np.log(np.clip(probs[np.arange(len(given)), given], 1e-12, 1)),
        "max_prob": probs.max(1), "pred": probs.argmax(1), "given": given, "clean": data.clean,
        "noisy": data.noisy_mask,
    })


def sample_dissection(analysis: pd.DataFrame, bins: int = 50) -> pd.DataFrame:
    """Samples sorted by loss w.r.t. the given label, cut into `bins` equal bins; in each bin the share of the
    four types: label correct/wrong x prediction correct/wrong (w.r.t. the clean label)."""
    a = analysis.sort_values("loss", kind="stable").reset_index(drop=True)
    a["bin"] = np.minimum(np.arange(len(a)) * bins // max(len(a), 1), bins - 1)
    label_ok = ~a["noisy"]
    pred_ok = a["pred"] == a["clean"]
    a["type"] = np.select([label_ok & pred_ok, label_ok & ~pred_ok, ~label_ok & pred_ok],
                          ["label ✓ pred ✓", "label ✓ pred ✗", "label ✗ pred ✓"], "label ✗ pred ✗")
    table = pd.crosstab(a["bin"], a["type"], normalize="index")
    return table.reindex(columns=["label ✓ pred ✓", "label ✓ pred ✗", "label ✗ pred ✓", "label ✗ pred ✗"],
                         fill_value=0.0)

