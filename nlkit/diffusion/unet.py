"""The DDPM++ UNet (Song et al. 2021, "SongUNet" in EDM's configuration), written from its description.

Structure (EDM's `ddpmpp` preset): a positional embedding of c_noise (endpoint = True, sin/cos halves swapped), plus
a linear map of the one-hot class label x sqrt(K) and of the 9 augment labels, then two Linear + SiLU layers give
the embedding (4 x base channels). The encoder has, per resolution, a 3x3 input conv (first level) or a
down-sampling residual block, then `num_blocks` residual blocks (self-attention at the listed resolutions); the
decoder mirrors it with one more block per level and skip concatenation, two blocks at the bottom (the first with
attention), and ends in GroupNorm + SiLU + 3x3 conv. Residual blocks: GroupNorm, SiLU, conv, + affine(emb), GroupNorm,
SiLU, dropout, zero-initialised conv, a 1x1 skip projection when the shape changes, all scaled by sqrt(0.5).
Resampling uses the [1, 1] filter (2x2 average pooling, nearest up-sampling). Weights are Xavier-uniform with zero
biases; as in EDM's `init_zero`, the last conv of every block, every attention projection and the output conv are
Xavier-uniform x 1e-5, so the network's output F starts near zero (D = c_skip x at initialisation).

Presets (docs/tdsm.md §8.2): `ddpmpp` (128 ch, [2, 2, 2], 4 blocks, 55.7M parameters for 10 classes), `ddpmpp_mnist`
(32 ch, 1 block, 1.56M), `ddpmpp_c10_reduced` (64 ch, 2 blocks), and `ddpmpp_tiny` for CPU runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError, check_choice


def xavier_init(module: nn.Module, scale: float = 1.0) -> nn.Module:
    """EDM's layer init with init_mode='xavier_uniform': Xavier-uniform weights x `scale`, zero bias."""
    nn.init.xavier_uniform_(module.weight)
    with torch.no_grad():
        module.weight.mul_(scale)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def group_norm(channels: int, eps: float = 1e-6) -> nn.GroupNorm:
    """32 groups, but at least 4 channels per group (EDM's rule)."""
    return nn.GroupNorm(min(32, channels // 4), channels, eps=eps)


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of a scalar per sample; `flip` puts the sin half first (DDPM++)."""

    def __init__(self, num_channels: int, max_positions: int = 10000, endpoint: bool = True, flip: bool = True):
        super().__init__()
        self.num_channels, self.max_positions, self.endpoint, self.flip = num_channels, max_positions, endpoint, flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = torch.arange(half, dtype=torch.float32, device=x.device) / (half - (1 if self.endpoint else 0))
        freqs = (1 / self.max_positions) ** freqs
        x = x.to(torch.float32)[:, None] * freqs[None]
        out = torch.cat([x.cos(), x.sin()], 1)
        if self.flip:
            out = torch.cat([out[:, half:], out[:, :half]], 1)
        return out


class UNetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, up: bool = False,
                 down: bool = False, attention: bool = False, dropout: float = 0.0, skip_scale: float = math.sqrt(0.5),
                 attn_init: float = math.sqrt(0.2)):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.up, self.down, self.skip_scale = up, down, skip_scale
        self.norm0 = group_norm(in_channels)
        self.conv0 = xavier_init(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.affine = xavier_init(nn.Linear(emb_channels, out_channels))
        self.norm1 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = xavier_init(nn.Conv2d(out_channels, out_channels, 3, padding=1), 1e-5)
        self.skip = None
        if out_channels != in_channels or up or down:
            self.skip = xavier_init(nn.Conv2d(in_channels, out_channels, 1))
        self.attention = attention
        if attention:
            self.norm2 = group_norm(out_channels)
            self.qkv = xavier_init(nn.Conv2d(out_channels, out_channels * 3, 1), attn_init)
            self.proj = xavier_init(nn.Conv2d(out_channels, out_channels, 1), 1e-5)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        orig = x
        x = self.conv0(self._resample(F.silu(self.norm0(x))))
        x = F.silu(self.norm1(x + self.affine(emb)[:, :, None, None]))
        x = self.conv1(self.dropout(x))
        skip = self.skip(self._resample(orig)) if self.skip is not None else orig
        x = (x + skip) * self.skip_scale
        if self.attention:
            b, c, h, w = x.shape
            q, k, v = self.qkv(self.norm2(x)).reshape(b, c, 3, h * w).unbind(2)
            weights = torch.softmax(torch.einsum("ncq,nck->nqk", q, k / math.sqrt(c)).float(), dim=2).to(v.dtype)
            a = torch.einsum("nqk,nck->ncq", weights, v).reshape(b, c, h, w)
            x = (self.proj(a) + x) * self.skip_scale
        return x


class SongUNet(nn.Module):
    """F(x, c_noise, class_labels, augment_labels) -> same shape as x (wrap it in EDMPrecond for D)."""

    def __init__(self, img_resolution: int, in_channels: int, out_channels: int, label_dim: int = 0,
                 augment_dim: int = 0, model_channels: int = 128, channel_mult=(2, 2, 2), channel_mult_emb: int = 4,
                 num_blocks: int = 4, attn_resolutions=(16,), dropout: float = 0.10):
        super().__init__()
        self.img_resolution, self.label_dim, self.augment_dim = img_resolution, label_dim, augment_dim
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels
        self.map_noise = PositionalEmbedding(noise_channels, endpoint=True, flip=True)
        self.map_label = xavier_init(nn.Linear(label_dim, noise_channels)) if label_dim else None
        self.map_augment = xavier_init(nn.Linear(augment_dim, noise_channels, bias=False)) if augment_dim else None
        self.map_layer0 = xavier_init(nn.Linear(noise_channels, emb_channels))
        self.map_layer1 = xavier_init(nn.Linear(emb_channels, emb_channels))
        block = dict(emb_channels=emb_channels, dropout=dropout)

        self.enc = nn.ModuleDict()
        cout = in_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                cin, cout = cout, model_channels
                self.enc[f"{res}x{res}_conv"] = xavier_init(nn.Conv2d(cin, cout, 3, padding=1))
            else:
                self.enc[f"{res}x{res}_down"] = UNetBlock(cout, cout, down=True, **block)
            for idx in range(num_blocks):
                cin, cout = cout, model_channels * mult
                self.enc[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=res in attn_resolutions, **block)
        skips = [m.out_channels if isinstance(m, UNetBlock) else m.out_channels for m in self.enc.values()]

        self.dec = nn.ModuleDict()
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self.dec[f"{res}x{res}_in0"] = UNetBlock(cout, cout, attention=True, **block)
                self.dec[f"{res}x{res}_in1"] = UNetBlock(cout, cout, **block)
            else:
                self.dec[f"{res}x{res}_up"] = UNetBlock(cout, cout, up=True, **block)
            for idx in range(num_blocks + 1):
                cin, cout = cout + skips.pop(), model_channels * mult
                attn = idx == num_blocks and res in attn_resolutions
                self.dec[f"{res}x{res}_block{idx}"] = UNetBlock(cin, cout, attention=attn, **block)
        self.out_norm = group_norm(cout)
        self.out_conv = xavier_init(nn.Conv2d(cout, out_channels, 3, padding=1), 1e-5)  # EDM's init_zero: F starts near 0

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None):
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        if self.map_label is not None:
            if class_labels is None:
                raise UserError("this network is class-conditional: give one-hot class labels")
            emb = emb + self.map_label(class_labels * math.sqrt(self.label_dim))
        emb = F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))
        skips = []
        for block in self.enc.values():
            x = block(x, emb) if isinstance(block, UNetBlock) else block(x)
            skips.append(x)
        for block in self.dec.values():
            if x.shape[1] != block.in_channels:
                x = torch.cat([x, skips.pop()], 1)
            x = block(x, emb)
        return self.out_conv(F.silu(self.out_norm(x)))


# name -> SongUNet settings (docs/tdsm.md §8.2); resolution, channels, labels and dropout come from the caller
UNET_PRESETS = {
    "ddpmpp": dict(model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,)),
    "ddpmpp_mnist": dict(model_channels=32, channel_mult=(2, 2, 2), num_blocks=1, attn_resolutions=(16,)),
    "ddpmpp_c10_reduced": dict(model_channels=64, channel_mult=(2, 2, 2), num_blocks=2, attn_resolutions=(16,)),
    "ddpmpp_tiny": dict(model_channels=16, channel_mult=(2, 2, 2), num_blocks=1, attn_resolutions=(16,)),
}


def build_unet(arch: str, *, img_resolution: int, in_channels: int, label_dim: int, augment_dim: int = 9,
               dropout: float = 0.13, **overrides) -> SongUNet:
    """A preset by name; `overrides` change any SongUNet setting (e.g. model_channels for a shrunk CPU net)."""
    check_choice(arch, UNET_PRESETS, "UNet preset")
    settings = {**UNET_PRESETS[arch], **{k: v for k, v in overrides.items() if v is not None}}
    for key in ("channel_mult", "attn_resolutions"):
        settings[key] = tuple(settings[key])
    if img_resolution % (1 << (len(settings["channel_mult"]) - 1)):
        raise UserError(f"image size {img_resolution} is not divisible by 2^{len(settings['channel_mult']) - 1}")
    return SongUNet(img_resolution, in_channels, in_channels, label_dim=label_dim, augment_dim=augment_dim,
                    dropout=dropout, **settings)


def unet_parameter_count(arch: str, **kwargs) -> int:
    """Parameters of a preset without allocating its weights (meta device)."""
    with torch.device("meta"):
        net = build_unet(arch, **kwargs)
    return int(np.sum([p.numel() for p in net.parameters()]))
