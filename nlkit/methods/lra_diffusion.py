"""LRA-Diffusion (Chen et al., NeurIPS 2023): a conditional diffusion model over one-hot labels, trained on labels
retrieved from the image's nearest neighbours in a frozen feature space (lra-diffusion spec §1-§2).

Faithful default = the paper's intent: a CIFAR ResNet-34 image encoder trained with the denoiser, cosine beta
schedule, 200 epochs. Named switches reproduce the public code's other behaviours: `head_compat` (untrained encoder,
BN in train mode at test), `beta_schedule: linear`, `include_self`, `weight_norm`, `decode: argmax`.
`image_encoder: none` is the labelled "LRA-MLP (cached features)" variant: x_embed = BN(Linear(f_p)).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import UserError, check_choice
from ..pipeline.params import config_from_cell
from ..train import autocast_for, default_device

T_STEPS = 1000


# ---------------------------------------------------------------------------------------------- diffusion maths

def beta_schedule(kind: str = "cosine", steps: int = T_STEPS, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Betas (float64): cosine (Nichol & Dhariwal, s = 0.008, beta clipped at 0.999) or linear start..end."""
    check_choice(kind, ("cosine", "linear"), "beta schedule")
    if kind == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float64)
    s = 0.008
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


def alphas_cumprod(kind: str = "cosine") -> torch.Tensor:
    return torch.cumprod(1 - beta_schedule(kind), dim=0)


def antithetic_timesteps(batch: int, generator=None, device="cpu") -> torch.Tensor:
    """floor(B/2)+1 draws t ~ U{0..999}, concatenated with 999 - t, truncated to B (lower-variance loss)."""
    t = torch.randint(0, T_STEPS, (batch // 2 + 1,), generator=generator, device=device)
    return torch.cat([t, T_STEPS - 1 - t])[:batch]


DDIM_TIMESTEPS = (901, 801, 701, 601, 501, 401, 301, 201, 101, 1)


@torch.no_grad()
def ddim_sample(eps_fn, shape, alphas_bar: torch.Tensor, timesteps=DDIM_TIMESTEPS, y_T=None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from the prior mean y_T = 0: y0_hat = (y_t - sqrt(1-a_t) eps)/sqrt(a_t);
    y_prev = sqrt(a_prev) y0_hat + sqrt(1-a_prev) eps. The last step goes to a_0 (t = 0)."""
    a = alphas_bar.to(torch.float32)
    y = torch.zeros(shape, device=a.device) if y_T is None else y_T
    ts = list(timesteps)
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else 0
        eps = eps_fn(y, torch.full((shape[0],), t, device=a.device, dtype=torch.long)).float()
        y0 = (y - (1 - a[t]).sqrt() * eps) / a[t].sqrt()
        y = a[prev].sqrt() * y0 + (1 - a[prev]).sqrt() * eps
    return y


def decode(y: torch.Tensor, rule: str = "closest_to_one") -> torch.Tensor:
    """The class of a generated label vector: the component closest to 1 (the code's rule), or the argmax."""
    check_choice(rule, ("closest_to_one", "argmax"), "decode rule")
    return (y - 1).pow(2).argmin(1) if rule == "closest_to_one" else y.argmax(1)


def learning_rate(epoch: float, peak: float = 1e-3, warmup: float = 5, horizon: float = 1000) -> float:
    """Linear warm-up to `peak`, then half-cosine over a fixed horizon (the code's 1000 epochs, whatever the run
    length): 0.998e-3 at epoch 30, 0.908e-3 at epoch 200."""
    if epoch < warmup:
        return peak * epoch / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (horizon - warmup)))


# ---------------------------------------------------------------------------------------------- networks

class GatedLinear(nn.Module):
    """Linear layer whose output is gated by a learned per-timestep vector (CARD's conditional layer)."""

    def __init__(self, n_in: int, n_out: int, steps: int = T_STEPS + 1):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.gamma = nn.Embedding(steps, n_out)
        nn.init.uniform_(self.gamma.weight, 0, 1)

    def forward(self, x, t):
        return self.gamma(t) * self.lin(x)


class ConditionalDenoiser(nn.Module):
    """eps_theta(x_embed, y_t, f_p, t): x_n = BN(x_embed); h = softplus(BN(g1(t)*L([y_t; f_p]))) * x_n;
    two more gated layers; a linear output (spec §2.4)."""

    def __init__(self, num_classes: int, feature_dim: int, hidden: int = 512, embed_dim: int | None = None):
        super().__init__()
        self.norm_x = nn.BatchNorm1d(embed_dim or hidden)
        self.l1, self.l2, self.l3 = (GatedLinear(num_classes + feature_dim, hidden), GatedLinear(hidden, hidden),
                                     GatedLinear(hidden, hidden))
        self.b1, self.b2, self.b3 = nn.BatchNorm1d(hidden), nn.BatchNorm1d(hidden), nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x_embed, y_t, fp, t):
        h = nn.functional.softplus(self.b1(self.l1(torch.cat([y_t, fp], 1), t))) * self.norm_x(x_embed)
        h = nn.functional.softplus(self.b2(self.l2(h, t)))
        h = nn.functional.softplus(self.b3(self.l3(h, t)))
        return self.out(h)


class _BasicBlock(nn.Module):
    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet34(nn.Module):
    """BasicBlock [3,4,6,3], 3x3 stride-1 stem, no max-pool, global average pool, Linear 512 -> out_dim."""

    def __init__(self, out_dim: int = 512, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, in_ch = [], 64
        for out_ch, stride, n in ((64, 1, 3), (128, 2, 4), (256, 2, 6), (512, 2, 3)):
            for i in range(n):
                layers.append(_BasicBlock(in_ch, out_ch, stride if i == 0 else 1))
                in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, out_dim)

    def forward(self, x):
        h = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))


class FeatureEmbedding(nn.Module):
    """The cached-features variant's image embedding: Linear(f_p) (normalised by the denoiser's BN)."""

    def __init__(self, feature_dim: int, out_dim: int):
        super().__init__()
        self.lin = nn.Linear(feature_dim, out_dim)

    def forward(self, fp):
        return self.lin(fp)


class LRAModel(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int, hidden: int = 512, image_encoder: str = "resnet34",
                 in_channels: int = 3):
        super().__init__()
        check_choice(image_encoder, ("resnet34", "none"), "image encoder")
        self.image_encoder = image_encoder
        self.encoder = (CifarResNet34(hidden, in_channels) if image_encoder == "resnet34"
                        else FeatureEmbedding(feature_dim, hidden))
        self.denoiser = ConditionalDenoiser(num_classes, feature_dim, hidden)

    def embed(self, x, fp):
        return self.encoder(x) if self.image_encoder == "resnet34" else self.encoder(fp)


# ---------------------------------------------------------------------------------------------- training

@dataclass
class LRAConfig:
    epochs: int = 200
    warmup_epochs: float = 5
    lr_horizon: float = 1000
    peak_lr: float = 1e-3
    batch_size: int = 200
    k: int = 10
    include_self: str = "code"
    weight_norm: str = "batch"
    dynamic_knn: bool = False
    hidden: int = 512
    image_encoder: str = "resnet34"
    head_compat: bool = False
    real_fp: bool = False
    beta_schedule: str = "cosine"
    decode: str = "closest_to_one"
    grad_clip: float = 1.0
    eval_every: int = 5
    crop_padding: int = 4
    flip: bool = True
    bf16: bool = True
    channels_last: bool = True
    checkpoint_every_seconds: float = 300.0

    @classmethod
    def from_cell(cls, cell: dict) -> "LRAConfig":
        return config_from_cell(cls, cell, "LRA-Diffusion")



# ---------------------------------------------------------------------------------------------- data and features

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # used for CIFAR-100 too (spec §7 #12)


@dataclass
class LRAData:
    train_images: np.ndarray
    noisy: np.ndarray
    clean: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray      # clean: the protocol's model selection
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list
    mean: tuple
    std: tuple
    pixels: str
    noise_meta: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def prepare_data(cell: dict, data_root=None, noise_root=None) -> LRAData:
    """Train = the first images with the noisy labels of the cell, val = the held-out tail with clean labels
    (CIFAR: 0..44999 and 45000..49999, PLC's protocol), test = the test set."""
    from ..data import holdout_tail, load_dataset
    from ..explorer import apply_noise_model, restrict, setting_from_params

    ds = load_dataset(cell["dataset"], data_root=data_root)
    n_val = int(cell.get("val_size", 5000))
    if n_val >= len(ds.train_labels):
        raise UserError(f"val_size {n_val} leaves no training images in {cell['dataset']}")
    train_idx, val_idx = holdout_tail(len(ds.train_labels), n_val)
    setting = setting_from_params(cell, data_root, noise_root)
    train = restrict(ds, (0, int(train_idx[-1]) + 1))
    result = apply_noise_model(train, setting["noise"], setting["rate"], setting["noise_seed"],
                               asym_map=setting["asym_map"], label_file=setting["label_file"])
    mean, std = (CIFAR_MEAN, CIFAR_STD) if ds.train_images.shape[-1] == 3 else ((0.5,), (0.5,))
    return LRAData(train.train_images, result.noisy, result.clean, ds.train_images[val_idx],
                   ds.train_labels[val_idx], ds.test_images, ds.test_labels, ds.classes, mean, std, ds.pixels,
                   result.meta)


def encoder_features(data: LRAData, encoder: dict, *, train_feat: str = "augmented", seed: int = 0,
                     device=None, cache: bool = True) -> dict[str, np.ndarray]:
    """f_p features of train, val and test, computed once and cached on disk (keyed by encoder, data, split and
    augmentation) so every noise setting and seed reuses them. Train features come from one augmented pass
    (the code's behaviour) unless train_feat='clean'."""
    from ..features import cached, clip_features, pca_features

    name = encoder["name"]
    check_choice(name, ("clip", "simclr", "pca"), "f_p encoder")
    check_choice(train_feat, ("augmented", "clean"), "train features")
    ident = {"encoder": encoder, "n": [len(data.train_images), len(data.val_images), len(data.test_images)],
             "pixels": data.pixels, "digest": _digest(data.train_images)}
    feats = {}
    if name == "pca":  # smoke substitute: deterministic PCA of the pixels (needs no weights)
        all_images = np.concatenate([data.train_images, data.val_images, data.test_images])
        compute = lambda: pca_features(all_images, encoder.get("dim", 64), seed=0)  # noqa: E731
        z = cached({**ident, "split": "all"}, compute) if cache else compute()
        a, b = len(data.train_images), len(data.train_images) + len(data.val_images)
        return {"train": z[:a], "val": z[a:b], "test": z[b:]}
    if name == "clip":
        from ..features import load_clip

        model = None

        def compute(images, augment_seed=None):
            nonlocal model
            model = model or load_clip(encoder.get("model", "ViT-L-14"), encoder.get("pretrained", "openai"),
                                       str(device or default_device()))
            if augment_seed is not None:
                images = _augmented_copy(images, augment_seed)
            # the LRA code feeds CLIP's raw encode_image output (fp32, not L2-normalised)
            return clip_features(images, model=model, device=str(device or default_device()), normalize=False)
    else:
        from ..simclr import load_simclr, simclr_features

        model = load_simclr(encoder["weights"], encoder.get("arch", "resnet50"))

        def compute(images, augment_seed=None):
            return simclr_features(model, images, device=device, mean=data.mean, std=data.std,
                                   augment_seed=augment_seed)

    aug_seed = seed + 11 if train_feat == "augmented" else None
    for split, images, aug in (("train", data.train_images, aug_seed), ("val", data.val_images, None),
                               ("test", data.test_images, None)):
        key = {**ident, "split": split, "augment_seed": aug}
        feats[split] = cached(key, lambda: compute(images, aug)) if cache else compute(images, aug)
    return feats


def resolve_encoder(encoder: dict, profile: str) -> dict:
    """An encoder entry with `weights_from: simclr/<cell>` points at the SimCLR weights the kit trained in that
    cell under the same profile (params/simclr/, run before the LRA cells)."""
    from ..pipeline.runner import outputs_root

    encoder = dict(encoder)
    if encoder.get("name") == "simclr" and encoder.get("weights_from"):
        encoder["weights"] = str(outputs_root() / profile / encoder.pop("weights_from") / "seed0" / "simclr.pt")
    return encoder


def _digest(images: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(images[:: max(1, len(images) // 256)]).tobytes()).hexdigest()[:16]


def _augmented_copy(images: np.ndarray, seed: int) -> np.ndarray:
    """One random crop (zero padding 4) and flip per image, as uint8 (the code cached such a pass)."""
    from ..data import DeviceBatcher

    b = DeviceBatcher(images, batch_size=4096, shuffle=False, crop_padding=4, flip=True, seed=seed)
    out = np.empty_like(images)
    for batch in b.epoch(0):
        out[batch.idx.numpy()] = (batch.x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


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


def train_lra(data: LRAData, feats: dict, cfg: LRAConfig, seed: int, *, out_dir=None, device=None,
              progress: bool = True, baselines: bool = True, fp_model=None) -> LRARun:
    """Train the label-diffusion model on retrieved labels; evaluate on the clean val split every `eval_every`
    epochs (from the warm-up on) and report the test accuracy at the best val epoch (plus last and best test).

    With `real_fp` (the code's SimCLR path) f_p is recomputed by `fp_model` on every augmented batch and the
    labels are retrieved per batch against the cached train features."""
    from ..data import DeviceBatcher
    from ..retrieval import LabelSampler, candidate_labels, knn, knn_majority_vote, neighbour_table, retrieval_purity
    from ..train import Checkpointer

    torch.manual_seed(seed)
    dev = torch.device(device or default_device())
    c = data.num_classes
    train_f = torch.as_tensor(feats["train"], dtype=torch.float32, device=dev)
    val_f = torch.as_tensor(feats["val"], dtype=torch.float32, device=dev)
    test_f = torch.as_tensor(feats["test"], dtype=torch.float32, device=dev)

    # retrieval: a neighbour table over the cached train features, candidates and their count weights
    t0 = time.perf_counter()
    if cfg.dynamic_knn:
        dist, nbrs = knn(feats["train"], feats["train"], cfg.k)
        if cfg.include_self != "code":
            raise UserError("dynamic kNN weighting follows the code's retrieval (include_self: code)")
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
    channels_last = cfg.channels_last and dev.type == "cuda" and cfg.image_encoder == "resnet34"
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
    val_b = DeviceBatcher(data.val_images, batch_size=1000, shuffle=False, **common)
    test_b = DeviceBatcher(data.test_images, batch_size=1000, shuffle=False, **common)
    gen = torch.Generator(device=dev).manual_seed(seed + 5)
    steps_per_epoch = len(train_b)

    history, best = [], {"val": -1.0}
    ckpt = Checkpointer(out_dir, cfg.checkpoint_every_seconds) if out_dir else None
    state = ckpt.load(map_location=dev) if ckpt else None
    start = 0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        sampler.generator.set_state(state["sampler_generator"])
        history, best, start = state["history"], state["best"], state["epoch"]
    train_b.next_epoch = start

    def predict(batcher, features):
        return ddim_predict(model, batcher, features, alphas, cfg, c)

    bar = tqdm(range(start + 1, cfg.epochs + 1), desc="LRA", disable=not progress, initial=start,
               total=cfg.epochs, unit="epoch")
    for epoch in bar:
        t_ep = time.perf_counter()
        model.train()
        if cfg.head_compat and cfg.image_encoder == "resnet34":
            model.encoder.train()  # untrained, BN in train mode, as the code left it
        loss_sum = torch.zeros((), device=dev)
        for step, batch in enumerate(train_b):
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
            t = antithetic_timesteps(len(labels), gen, dev)
            eps = torch.randn(y0.shape, generator=gen, device=dev)
            a = alphas.index_select(0, t)[:, None]
            y_t = a.sqrt() * y0 + (1 - a).sqrt() * eps
            with autocast_for(dev, cfg.bf16):
                x_embed = model.embed(batch.x, fp)
                eps_hat = model.denoiser(x_embed.float(), y_t, fp, t)
            loss = (weights * (eps_hat.float() - eps).pow(2).mean(1)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            opt.step()
            loss_sum += loss.detach()
        row = {"epoch": epoch, "loss": float(loss_sum / steps_per_epoch), "seconds": time.perf_counter() - t_ep}
        if epoch >= cfg.warmup_epochs and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            val_pred = predict(val_b, val_f)
            test_pred = predict(test_b, test_f)
            row["val_acc"] = float(np.mean(val_pred == data.val_labels) * 100)
            row["test_acc"] = float(np.mean(test_pred == data.test_labels) * 100)
            if row["val_acc"] > best["val"]:
                best = {"val": row["val_acc"], "test": row["test_acc"], "epoch": epoch,
                        "per_class": _per_class(test_pred, data.test_labels, c)}
            bar.set_postfix(val=f"{row['val_acc']:.2f}", test=f"{row['test_acc']:.2f}")
        history.append(row)
        if ckpt and (ckpt.due() or epoch == cfg.epochs):
            ckpt.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                       "sampler_generator": sampler.generator.get_state(), "history": history, "best": best,
                       "epoch": epoch})
    hist = pd.DataFrame(history)
    final_test = predict(test_b, test_f)
    evaluated = hist.dropna(subset=["test_acc"]) if "test_acc" in hist else hist.iloc[0:0]
    metrics = {
        "acc_val_selected": best.get("test"), "best_val_acc": best.get("val") if best["val"] >= 0 else None,
        "best_val_epoch": best.get("epoch"),
        "acc_last": float(np.mean(final_test == data.test_labels) * 100),
        "acc_best_test": float(evaluated["test_acc"].max()) if len(evaluated) else None,
        "per_class_acc_at_best_val": best.get("per_class"),
        "seconds_per_epoch": float(hist["seconds"].median()), "epochs": int(hist["epoch"].max()), **extra,
    }
    return LRARun(hist, metrics, model, final_test, cfg)


@torch.no_grad()
def batch_retrieval(fp: torch.Tensor, database: torch.Tensor, noisy: torch.Tensor, idx: torch.Tensor, k: int,
                    sampler) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-batch retrieval of the code's SimCLR path: the k nearest cached train features of each freshly
    augmented query (Euclidean), their noisy labels plus the own label, one drawn uniformly, count weights."""
    nbrs = torch.cdist(fp, database).topk(k, largest=False).indices
    cands = torch.cat([noisy[nbrs], noisy.index_select(0, idx)[:, None]], 1)
    return sampler.draw(cands)


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
