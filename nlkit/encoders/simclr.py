"""SimCLR encoders for label retrieval: the published checkpoint layout (a CIFAR ResNet `f` and a projection
head `g`, as the LRA-Diffusion SimCLR files), loading with every key checked, and the kit's own SimCLR trainer
with per-sample augmentations drawn on the device.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from ..errors import DataMissingError, UserError, check_choice
from ..models import ResNet9, SmallCNN
from ..hardware import Switch, use_channels_last
from ..train import autocast_for, default_device


class SimCLRModel(nn.Module):
    """`f`: a ResNet whose stem is a 3x3 stride-1 conv with no max-pool and no fc, ending in global pooling;
    `g`: Linear(d, 512, no bias) -> BN -> ReLU -> Linear(512, 128). The features used for retrieval are the
    L2-normalised outputs of `f` (2048-d for ResNet-50). `width_mult` scales the ResNet-9 backbone only (the cpu
    profile's CIFAR-10 network, docs/bench.md §3)."""

    def __init__(self, arch: str = "resnet50", projection_dim: int = 128, in_channels: int = 3,
                 width_mult: float = 1.0):
        super().__init__()
        check_choice(arch, ("resnet18", "resnet50", "resnet9", "small_cnn"), "SimCLR backbone")
        if width_mult != 1.0 and arch != "resnet9":
            raise UserError(f"width_mult scales the SimCLR backbone resnet9 only, not {arch}")
        if arch in ("small_cnn", "resnet9"):
            net = SmallCNN(in_channels=in_channels) if arch == "small_cnn" else \
                ResNet9(in_channels=in_channels, width_mult=width_mult)
            self.f, dim = net.body, net.feature_dim
        else:
            resnet = getattr(torchvision.models, arch)(weights=None)
            layers = []
            for name, module in resnet.named_children():
                if name == "conv1":
                    module = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
                if isinstance(module, (nn.Linear, nn.MaxPool2d)):
                    continue
                layers.append(module)
            self.f, dim = nn.Sequential(*layers), resnet.fc.in_features
        self.arch, self.width_mult, self.feature_dim = arch, width_mult, dim
        self.g = nn.Sequential(nn.Linear(dim, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                               nn.Linear(512, projection_dim, bias=True))

    def features(self, x):
        return nn.functional.normalize(torch.flatten(self.f(x), 1), dim=-1)

    def forward(self, x):
        h = torch.flatten(self.f(x), 1)
        return nn.functional.normalize(h, dim=-1), nn.functional.normalize(self.g(h), dim=-1)


def load_simclr(path, arch: str = "resnet50", map_location="cpu") -> SimCLRModel:
    """Load a SimCLR checkpoint, refusing a partial load: every key must match (a `module.` prefix from
    DataParallel is accepted). The public LRA code loaded with strict=False, which silently left a random
    encoder when the keys did not match.

    Two layouts are read: the kit's (`save_simclr`: {"arch", "state_dict"}) and the authors' published files
    (`SimCLR_128_<dataset>.pt`: a bare state dict of a ResNet-50 `f.*` and the projection head `g.*`, the module
    layout of utils/model_SimCLR.py). `model.checkpoint_layout` says which ("nlkit" or "published")."""
    path = Path(path)
    if not path.is_file():
        raise DataMissingError(f"SimCLR weights not found: {path}. Supply the published file or train one with "
                               "params/simclr/ (notebooks/simclr.ipynb)")
    from ..safeload import torch_load

    state = torch_load(path, "SimCLR weights", map_location=map_location)
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not SimCLR weights (a state dict)")
    layout, width_mult = "published", 1.0
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        arch, width_mult = state.get("arch", arch), float(state.get("width_mult", 1.0))
        state = state["state_dict"]
        layout = "nlkit"
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = SimCLRModel(arch, width_mult=width_mult)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise UserError(f"{path} is not a SimCLR checkpoint of the expected layout (keys 'f.*' and 'g.*' of a "
                        f"{arch}): {len(missing)} keys missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                        f"(e.g. {unexpected[:3]})")
    model.load_state_dict(state, strict=True)
    model.checkpoint_layout = layout
    return model.eval()


def save_simclr(model: SimCLRModel, path) -> Path:
    from ..io import atomic_write

    path = Path(path)
    payload = {"arch": model.arch, "width_mult": model.width_mult, "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


# ---------------------------------------------------------------------------------------------- augmentation

def simclr_augment(x: torch.Tensor, generator: torch.Generator, scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.4, 0.1),
                   p_jitter: float = 0.8, p_gray: float = 0.2) -> torch.Tensor:
    """SimCLR's view generation for a batch of float images in [0, 1] (N, C, H, W), each sample with its own
    random resized crop, flip, colour jitter and grayscale, all on the device."""
    n, c, h, w = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=dev)

    area = scale[0] + (scale[1] - scale[0]) * rand(n)
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * rand(n)
    ratio = torch.exp(log_ratio)
    sw = torch.sqrt(area * ratio).clamp(max=1.0)
    sh = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - sw) * (2 * rand(n) - 1)
    cy = (1 - sh) * (2 * rand(n) - 1)
    flip = torch.where(rand(n) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = sh, cy
    grid = nn.functional.affine_grid(theta, (n, c, h, w), align_corners=False)
    out = nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if c == 3:
        b, ct, s, hue = jitter
        apply = (rand(n) < p_jitter).float()[:, None, None, None]
        jittered = out * (1 + b * (2 * rand(n, 1, 1, 1) - 1))
        gray = _gray(jittered)
        jittered = (jittered - gray.mean((2, 3), keepdim=True)) * (1 + ct * (2 * rand(n, 1, 1, 1) - 1)) \
            + gray.mean((2, 3), keepdim=True)
        jittered = (jittered - _gray(jittered)) * (1 + s * (2 * rand(n, 1, 1, 1) - 1)) + _gray(jittered)
        jittered = _rotate_hue(jittered, hue * (2 * rand(n) - 1))
        out = apply * jittered.clamp(0, 1) + (1 - apply) * out
        to_gray = (rand(n) < p_gray).float()[:, None, None, None]
        out = to_gray * _gray(out).expand_as(out) + (1 - to_gray) * out
    return out


def _gray(x):
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _rotate_hue(x, shift):
    """Rotate the hue by `shift` of a full turn, in YIQ space (per sample)."""
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device)
    rgb = torch.linalg.inv(yiq)
    angle = 2 * math.pi * shift
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(x), 3, 3, device=x.device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = rgb @ rot @ yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", m, x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy over the 2N views of a batch."""
    z = nn.functional.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return nn.functional.cross_entropy(sim, targets)


def train_simclr(images: np.ndarray, *, arch: str = "resnet18", epochs: int = 100, batch_size: int = 512,
                 lr: float = 1e-3, weight_decay: float = 1e-6, temperature: float = 0.5, seed: int = 0,
                 device=None, mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010),
                 checkpoint_dir=None, checkpoint_every_seconds: float = 300.0, time_budget_seconds=None,
                 progress: bool = True, width_mult: float = 1.0, bf16: Switch = True,
                 channels_last: Switch = False):
    """Train SimCLR (Adam, NT-Xent) on uint8 NHWC images held on the device; returns (model, LoopResult).
    Resumes from `checkpoint_dir/checkpoints/last.pt` when present. `bf16` and `channels_last` are the speed
    switches of nlkit.hardware (the loss is computed in fp32 either way)."""
    from ..data import DeviceBatcher
    from ..train import TrainLoop, run_identity

    torch.manual_seed(seed)
    device = torch.device(device or default_device())
    in_ch = images.shape[-1]
    model = SimCLRModel(arch, in_channels=in_ch, width_mult=width_mult).to(device)
    last = use_channels_last(channels_last, device, bf16)
    if last:
        model = model.to(memory_format=torch.channels_last)
    layout = torch.channels_last if last else torch.contiguous_format
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    batcher = DeviceBatcher(images, batch_size=batch_size, device=device, shuffle=True, drop_last=True, seed=seed)
    mean_t = torch.tensor(mean[:in_ch], device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std[:in_ch], device=device).view(1, -1, 1, 1)
    gen = torch.Generator(device=device).manual_seed(seed + 1)

    def epoch_fn(epoch: int) -> dict:
        model.train()
        total = torch.zeros((), device=device)
        for batch in batcher.epoch(epoch - 1):
            x = batch.x  # in [0, 1]: the batcher normalises nothing here
            v1 = ((simclr_augment(x, gen) - mean_t) / std_t).contiguous(memory_format=layout)
            v2 = ((simclr_augment(x, gen) - mean_t) / std_t).contiguous(memory_format=layout)
            with autocast_for(device, bf16):
                _, z1 = model(v1)
                _, z2 = model(v2)
            loss = nt_xent(z1, z2, temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        return {"loss": float(total / max(len(batcher), 1))}

    def get_state() -> dict:
        return {"model": model.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state()}

    def set_state(state: dict) -> None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])

    loop = TrainLoop(checkpoint_dir, epochs=epochs, desc="SimCLR", checkpoint_every_seconds=checkpoint_every_seconds,
                     time_budget_seconds=time_budget_seconds, progress=progress, postfix=("loss",),
                     identity=run_identity({"arch": arch, "width_mult": width_mult, "bf16": bf16,
                                            "channels_last": channels_last, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                                            "weight_decay": weight_decay, "temperature": temperature,
                                            "mean": mean, "std": std}, seed, images))
    result = loop.run(epoch_fn, get_state, set_state, map_location=device)
    return model.eval(), result


@torch.no_grad()
def simclr_features(model: SimCLRModel, images: np.ndarray, device=None, mean=(0.4914, 0.4822, 0.4465),
                    std=(0.2023, 0.1994, 0.2010), batch_size: int = 512, augment_seed: int | None = None,
                    bf16: bool = False) -> np.ndarray:
    """L2-normalised backbone features; `augment_seed` draws one random crop (pad 4) and flip per image, as the
    LRA code's cached training features. fp32 as the LRA code; `bf16` (False, True or 'auto': nlkit.hardware)
    autocasts, in channels_last where it resolves to on (a speed switch)."""
    from ..data import DeviceBatcher

    device = torch.device(device or default_device())
    model = model.to(device).eval()
    last = use_channels_last("auto", device, bf16)
    if last:
        model = model.to(memory_format=torch.channels_last)
    in_ch = images.shape[-1]
    batcher = DeviceBatcher(images, batch_size=batch_size, device=device, shuffle=False,
                            crop_padding=4 if augment_seed is not None else 0, flip=augment_seed is not None,
                            seed=augment_seed or 0, mean=mean[:in_ch], std=std[:in_ch], channels_last=last)
    out = torch.empty(len(images), model.feature_dim, device=device)
    for batch in batcher.epoch(0):
        with autocast_for(device, bf16):
            out[batch.idx] = model.features(batch.x).float()
    return out.cpu().numpy()
