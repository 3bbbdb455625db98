"""Training and evaluating LRA-Diffusion: retrieval, the diffusion loss over retrieved labels, DDIM
predictions, model selection on the clean validation split, and the feature baselines beside it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ...errors import UserError
from ...hardware import Switch, use_channels_last
from ...train import TrainLoop, autocast_for, default_device, run_identity
from ..contract import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, config_from_cell
from .data import LRAData
from .diffusion import (
    alphas_cumprod,
    ddim_sample,
    decode,
    learning_rate,
    q_sample,
    training_draws,
    weighted_eps_loss,
)
from .model import LRAModel
from .retrieval import neighbour_probs

# ---------------------------------------------------------------------------------------------- training

@dataclass
class LRAConfig:
    epochs: PositiveInt = 200
    warmup_epochs: NonNegativeFloat = 5
    lr_horizon: PositiveFloat = 1000
    peak_lr: PositiveFloat = 1e-3
    batch_size: PositiveInt = 200
    k: PositiveInt = 10
    include_self: str = "code"
    weight_norm: str = "batch"
    dynamic_knn: bool = False
    hidden: PositiveInt = 512
    image_encoder: str = "resnet34"
    head_compat: bool = False
    real_fp: bool = False
    beta_schedule: str = "cosine"
    decode: str = "closest_to_one"
    grad_clip: PositiveFloat = 1.0
    eval_every: PositiveInt = 5
    crop_padding: NonNegativeInt = 4
    flip: bool = True
    bf16: Switch = False   # the code trains in fp32; bf16 autocast is a speed switch (quick: true; cpu: 'auto')
    channels_last: Switch = "auto"  # the ResNet-34 encoder's layout; 'auto': CUDA, or the CPU with bf16
    checkpoint_every_seconds: PositiveFloat = 300.0
    time_budget_seconds: PositiveFloat | None = None

    @classmethod
    def from_cell(cls, cell: dict) -> "LRAConfig":
        return config_from_cell(cls, cell, "LRA-Diffusion")



def validation_epochs(epochs: int, warmup_epochs: float, every: int) -> list[int]:
    """The 1-based epochs after which the clean validation split is evaluated. The code counts epochs from 0 and
    validates after epoch e when `e % every == 0 and e >= warmup` (train_CIFAR.py): with warm-up 5 and every 5 that
    is after the 6th, 11th, 16th, ... epoch. A run too short for any gets the last epoch, so it still selects one."""
    chosen = [e + 1 for e in range(epochs) if e % every == 0 and e >= warmup_epochs]
    return chosen or [epochs]


# ---------------------------------------------------------------------------------------------- baselines

def linear_probe(train_x, train_y, test_x, num_classes: int, epochs: int = 100, lr: float = 1e-2, seed: int = 0,
                 device=None) -> np.ndarray:
    """A multinomial logistic regression on standardised features, trained on the noisy labels (full-batch
    Adam on the device): a reference for what the features alone give."""
    device = torch.device(device or default_device())
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.as_tensor(train_x, dtype=torch.float32, device=device)
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-6)
    x = (x - mu) / sd
    y = torch.as_tensor(train_y, device=device)
    w = (torch.randn(x.shape[1], num_classes, generator=g) * 0.01).to(device).requires_grad_()
    b = torch.zeros(num_classes, device=device, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(x @ w + b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        t = (torch.as_tensor(test_x, dtype=torch.float32, device=device) - mu) / sd
        return (t @ w + b).argmax(1).cpu().numpy()


# ---------------------------------------------------------------------------------------------- the run

@dataclass
class LRARun:
    history: pd.DataFrame
    metrics: dict
    model: LRAModel
    test_pred: np.ndarray
    config: LRAConfig
    completed: bool = True
    train_pred: np.ndarray | None = None    # the final model's classes of the training set (per_sample.csv)
    candidates: np.ndarray | None = None    # N x (k or k+1) retrieved candidate labels of each training sample


def train_lra(data: LRAData, feats: dict, cfg: LRAConfig, seed: int, *, out_dir=None, device=None,
              progress: bool = True, baselines: bool = True, fp_model=None) -> LRARun:
    """Train the label-diffusion model on retrieved labels; evaluate on the clean val split after the epochs of
    `validation_epochs` and report the test accuracy at the best val epoch (plus last and best test over every evaluated epoch,
    the last included).

    With `real_fp` (the code's SimCLR path) f_p is recomputed by `fp_model` on every augmented batch and the
    labels are retrieved per batch against the cached train features."""
    from ...data import DeviceBatcher
    from .retrieval import (
        LabelSampler,
        candidate_labels,
        knn,
        knn_majority_vote,
        neighbour_table,
        retrieval_purity,
    )

    torch.manual_seed(seed)
    dev = torch.device(device or default_device())
    c = data.num_classes
    train_f = torch.as_tensor(feats["train"], dtype=torch.float32, device=dev)
    val_f = torch.as_tensor(feats["val"], dtype=torch.float32, device=dev)
    test_f = torch.as_tensor(feats["test"], dtype=torch.float32, device=dev)

    # retrieval: a neighbour table over the cached train features, candidates and their count weights
    t0 = time.perf_counter()
    if cfg.dynamic_knn:
        if cfg.include_self != "code":
            raise UserError("dynamic kNN weighting follows the code's retrieval (include_self: code)")
        squared, nbrs = knn(feats["train"], feats["train"], cfg.k)
        dist = np.sqrt(squared)  # the search returns squared distances; the weighting uses plain ones (cdist)
    else:
        dist, nbrs = None, neighbour_table(feats["train"], cfg.k, cfg.include_self)
    cands = candidate_labels(nbrs, data.noisy, cfg.include_self)
    sampler = LabelSampler(cands, device=dev, distances=dist, dynamic=cfg.dynamic_knn, weight_norm=cfg.weight_norm,
                           seed=seed + 3)
    retrieval_seconds = time.perf_counter() - t0
    extra = {"retrieval_purity": retrieval_purity(cands, data.clean) * 100,
             "noisy_label_accuracy": float(np.mean(data.noisy == data.clean) * 100),
             "retrieval_seconds": retrieval_seconds,
             "per_class_retrieval_purity": [float((cands[data.clean == k] == k).mean() * 100) if (data.clean == k).any()
                                            else None for k in range(c)]}
    if baselines:
        _, test_nbrs = knn(feats["train"], feats["test"], cfg.k)
        extra["knn_majority_acc"] = float(np.mean(knn_majority_vote(test_nbrs, data.noisy, c) == data.test_labels) * 100)
        extra["linear_probe_acc"] = float(np.mean(linear_probe(feats["train"], data.noisy, feats["test"], c, seed=seed,
                                                               device=dev) == data.test_labels) * 100)

    if cfg.real_fp and fp_model is None:
        raise UserError("real_fp needs the f_p encoder network (the SimCLR model)")
    if cfg.real_fp:
        fp_model = fp_model.to(dev).eval()
    noisy_dev = torch.as_tensor(data.noisy, device=dev)
    in_ch = data.train_images.shape[-1]
    model = LRAModel(c, train_f.shape[1], cfg.hidden, cfg.image_encoder, in_ch).to(dev)
    channels_last = use_channels_last(cfg.channels_last, dev, cfg.bf16) and cfg.image_encoder == "resnet34"
    if channels_last:
        model.encoder = model.encoder.to(memory_format=torch.channels_last)
    trainable = list(model.denoiser.parameters())
    if not cfg.head_compat or cfg.image_encoder == "none":
        trainable += list(model.encoder.parameters())
    else:  # the public code never gives the encoder to the optimizer
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    opt = torch.optim.Adam(trainable, lr=cfg.peak_lr, foreach=dev.type != "cuda", fused=dev.type == "cuda" or None)
    alphas = alphas_cumprod(cfg.beta_schedule).to(dev, torch.float32)
    common = dict(device=dev, mean=data.mean, std=data.std, channels_last=channels_last)
    images_used = cfg.image_encoder == "resnet34" or cfg.real_fp  # the cached-features variant never looks at x
    train_b = DeviceBatcher(data.train_images, batch_size=cfg.batch_size, shuffle=True,
                            crop_padding=cfg.crop_padding if images_used else 0, flip=cfg.flip and images_used,
                            seed=seed, **common)
    # the code's val and test loaders use the training batch size; with head_compat the untrained encoder's BN
    # normalises by the statistics of each evaluation batch, so its size changes the predictions
    val_b = DeviceBatcher(data.val_images, batch_size=cfg.batch_size, shuffle=False, **common) \
        if len(data.val_images) else None
    test_b = DeviceBatcher(data.test_images, batch_size=cfg.batch_size, shuffle=False, **common)
    gen = torch.Generator(device=dev).manual_seed(seed + 5)
    steps_per_epoch = len(train_b)

    best = {"val": -1.0}
    eval_epochs = set(validation_epochs(cfg.epochs, cfg.warmup_epochs, cfg.eval_every))

    def predict(batcher, features):
        return ddim_predict(model, batcher, features, alphas, cfg, c)

    def epoch_fn(epoch: int) -> dict:
        nonlocal best
        model.train()
        if cfg.head_compat and cfg.image_encoder == "resnet34":
            model.encoder.train()  # untrained, BN in train mode, as the code left it
        loss_sum = torch.zeros((), device=dev)
        for step, batch in enumerate(train_b.epoch(epoch - 1)):
            for group in opt.param_groups:  # fractional-epoch schedule, a Python float: no sync
                group["lr"] = learning_rate(epoch - 1 + step / steps_per_epoch, cfg.peak_lr, cfg.warmup_epochs,
                                            cfg.lr_horizon)
            if cfg.real_fp:
                with torch.no_grad(), autocast_for(dev, cfg.bf16):
                    fp = fp_model.features(batch.x).float()
                labels, weights = batch_retrieval(fp, train_f, noisy_dev, batch.idx, cfg.k, sampler)
            else:
                fp = train_f.index_select(0, batch.idx)
                labels, weights = sampler.sample(batch.idx)
            y0 = nn.functional.one_hot(labels, c).float()
            t, eps = training_draws(len(labels), c, gen, dev)
            y_t = q_sample(y0, alphas, t, eps)
            with autocast_for(dev, cfg.bf16):
                x_embed = model.embed(batch.x, fp)
                eps_hat = model.denoiser(x_embed.float(), y_t, fp, t)
            loss = weighted_eps_loss(eps_hat, eps, weights)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            opt.step()
            loss_sum += loss.detach()
        row = {"loss": float(loss_sum / steps_per_epoch)}
        if epoch in eval_epochs:
            test_pred = predict(test_b, test_f)
            row["test_acc"] = float(np.mean(test_pred == data.test_labels) * 100)
            if not len(data.val_labels):  # no held-out split (the benchmark's protocol): nothing to select by
                return row
            val_pred = predict(val_b, val_f)
            row["val_acc"] = float(np.mean(val_pred == data.val_labels) * 100)
            if row["val_acc"] > best["val"]:
                best = {"val": row["val_acc"], "test": row["test_acc"], "epoch": epoch,
                        "per_class": _per_class(test_pred, data.test_labels, c)}
        return row

    def get_state() -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                "sampler_generator": sampler.generator.get_state(), "best": best}

    def set_state(state: dict) -> None:
        nonlocal best
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        sampler.generator.set_state(state["sampler_generator"])
        best = state["best"]

    loop = TrainLoop(out_dir, epochs=cfg.epochs, desc="LRA", checkpoint_every_seconds=cfg.checkpoint_every_seconds,
                     time_budget_seconds=cfg.time_budget_seconds, progress=progress,
                     postfix=("loss", "val_acc", "test_acc"),
                     identity=run_identity(cfg, seed, data.train_images, data.noisy, *(feats[k] for k in sorted(feats))))
    result = loop.run(epoch_fn, get_state, set_state, map_location=dev)
    history = result.history
    hist = pd.DataFrame(history)
    final_test = predict(test_b, test_f)
    acc_last = float(np.mean(final_test == data.test_labels) * 100)
    if len(hist) and ("test_acc" not in hist or pd.isna(hist["test_acc"].iloc[-1])):
        # the code's validation schedule can skip the last epoch (200 is not validated): the test curve and the
        # best test still end there; validation selection keeps the code's epochs
        hist.loc[hist.index[-1], "test_acc"] = acc_last
    # the training set without augmentation, for the per-sample verdicts
    train_pred = predict(DeviceBatcher(data.train_images, batch_size=cfg.batch_size, shuffle=False, **common), train_f)
    evaluated = hist.dropna(subset=["test_acc"]) if "test_acc" in hist else hist.iloc[0:0]
    metrics = {
        "acc_val_selected": best.get("test"), "best_val_acc": best.get("val") if best["val"] >= 0 else None,
        "best_val_epoch": best.get("epoch"),
        "acc_last": acc_last,
        "acc_best_test": float(evaluated["test_acc"].max()) if len(evaluated) else None,
        "per_class_acc_at_best_val": best.get("per_class"),
        "seconds_per_epoch": float(hist["seconds"].median()), "epochs": int(hist["epoch"].max()), **extra,
    }
    return LRARun(hist, metrics, model, final_test, cfg, result.completed, train_pred, cands)


@torch.no_grad()
def batch_retrieval(fp: torch.Tensor, database: torch.Tensor, noisy: torch.Tensor, idx: torch.Tensor, k: int,
                    sampler) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-batch retrieval of the code's SimCLR path: the k nearest cached train features of each freshly
    augmented query (Euclidean, torch.cdist), their noisy labels plus the own label, one drawn (uniformly, or by
    the dynamic kNN weighting of these distances when the sampler is dynamic), count weights."""
    dist, nbrs = torch.cdist(fp, database).topk(k, largest=False)
    cands = torch.cat([noisy[nbrs], noisy.index_select(0, idx)[:, None]], 1)
    return sampler.draw(cands, neighbour_probs(dist) if sampler.dynamic else None)


@torch.no_grad()
def ddim_predict(model: LRAModel, batcher, features: torch.Tensor, alphas: torch.Tensor, cfg: LRAConfig,
                 num_classes: int) -> np.ndarray:
    """Classes of a split: image embedding once, 10 DDIM steps from y = 0, then the decode rule. With
    head_compat the image encoder keeps BN in train mode, as the public code did."""
    model.eval()
    if cfg.head_compat and cfg.image_encoder == "resnet34":
        model.encoder.train()
    preds = torch.empty(batcher.num_samples, dtype=torch.long, device=batcher.device)
    for batch in batcher.epoch(0):
        fp = features.index_select(0, batch.idx)
        with autocast_for(batcher.device, cfg.bf16):
            x_embed = model.embed(batch.x, fp).float()
        y = ddim_sample(lambda y_t, t: model.denoiser(x_embed, y_t, fp, t), (len(batch.idx), num_classes), alphas)
        preds[batch.idx] = decode(y, cfg.decode)
    return preds.cpu().numpy()


def _per_class(pred: np.ndarray, labels: np.ndarray, c: int) -> list:
    return [float(np.mean(pred[labels == k] == k) * 100) if (labels == k).any() else None for k in range(c)]
