"""Small deterministic denoisers used on both sides of the TDSM/EDM goldens (the generator runs them through the
original code, the test through the kit). Their parameters are stored in the golden files.

- `ToyDenoiser`: an EDM-preconditioned class-conditional denoiser, D = c_skip x + c_out F with
  F = conv3x3(c_in x) + (onehot E) (1 + c_noise a) + tanh(aug A). It has parameters (so the TDSM gradient can be
  compared) and depends on the label, sigma and the augment labels (so a wrong label, sigma or augment row shows).
- `MixtureDenoiser`: the exact denoiser of a class-conditional two-component Gaussian mixture, in float64, for the
  sampler golden. It has the attributes EDM's sampler reads from its network (sigma_min, sigma_max, round_sigma).
- `recipe_tensor`: deterministic weights for networks too large to store (the classifiers).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SIGMA_DATA = 0.5


class ToyDenoiser(nn.Module):
    def __init__(self, num_classes: int, channels: int, augment_dim: int = 9):
        super().__init__()
        self.conv_weight = nn.Parameter(torch.zeros(channels, channels, 3, 3))
        self.conv_bias = nn.Parameter(torch.zeros(channels))
        self.label_embed = nn.Parameter(torch.zeros(num_classes, channels))
        self.noise_gain = nn.Parameter(torch.zeros(channels))
        self.augment_map = nn.Parameter(torch.zeros(augment_dim, channels))

    def load_arrays(self, arrays: dict) -> "ToyDenoiser":
        with torch.no_grad():
            for name, p in self.named_parameters():
                p.copy_(torch.as_tensor(np.asarray(arrays[name]), dtype=torch.float32))
        return self

    def forward(self, x, sigma, class_labels, augment_labels=None):
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1)
        s2, d2 = sigma ** 2, SIGMA_DATA ** 2
        c_skip, c_out, c_in, c_noise = d2 / (s2 + d2), sigma * SIGMA_DATA / (s2 + d2).sqrt(), 1 / (s2 + d2).sqrt(), \
            sigma.log() / 4
        labels = class_labels.to(torch.float32)
        f = F.conv2d(c_in * x, self.conv_weight, self.conv_bias, padding=1)
        f = f + (labels @ self.label_embed)[:, :, None, None] * (1 + c_noise * self.noise_gain[None, :, None, None])
        if augment_labels is not None:
            f = f + torch.tanh(augment_labels.to(torch.float32) @ self.augment_map)[:, :, None, None]
        return c_skip * x + c_out * f


class MixtureDenoiser(nn.Module):
    """E[x0 | x_sigma, y] for x0 | y ~ 0.5 N(mu_y0, v I) + 0.5 N(mu_y1, v I), computed in float64."""

    sigma_min, sigma_max = 0.0, float("inf")

    def __init__(self, means: np.ndarray, variance: float):
        super().__init__()
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float64))   # (K, 2, C, H, W)
        self.variance = float(variance)

    def round_sigma(self, sigma):
        return torch.as_tensor(sigma)

    def forward(self, x, sigma, class_labels=None, **_):
        x = x.to(torch.float64)
        s2 = torch.as_tensor(sigma, dtype=torch.float64) ** 2
        y = class_labels.to(torch.float64).argmax(1)
        mu = self.means[y]                                                   # (B, 2, C, H, W)
        diff = x[:, None] - mu
        logp = -(diff ** 2).flatten(2).sum(2) / (2 * (self.variance + s2))
        post = torch.softmax(logp, 1)                                        # (B, 2)
        comp = mu + self.variance / (self.variance + s2) * diff
        return (post[:, :, None, None, None] * comp).sum(1)


# ---------------------------------------------------------------------------------------------- weight recipe

def recipe_tensor(name: str, shape, seed: int = 0) -> np.ndarray:
    """A deterministic float32 tensor for the parameter or buffer `name` (reference-code name), from a
    splitmix64 hash of (name, seed, index): integer arithmetic only, so it is the same on every platform and numpy
    version. Lets a golden carry a large network's weights as a recipe instead of values (the classifiers).
    Weights ~ U(-1, 1) sqrt(3 / fan_in); norm weights 1 + 0.2 U; biases 0.1 U; BatchNorm running mean 0.1 U and
    running variance in [0.5, 1.5)."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if shape else 1
    mask = (1 << 64) - 1
    start = (zlib.crc32(name.encode()) * 0x9E3779B97F4A7C15 + seed * 0xD1B54A32D192ED03) & mask
    with np.errstate(over="ignore"):
        z = np.uint64(start) + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)              # [0, 1)
    s = 2 * u - 1                                                              # [-1, 1)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        v = 0.5 + u
    elif leaf == "running_mean":
        v = 0.1 * s
    elif len(shape) == 1 and leaf == "weight":                                 # BatchNorm / GroupNorm scale
        v = 1 + 0.2 * s
    elif len(shape) == 1:
        v = 0.1 * s
    else:
        v = s * np.sqrt(3.0 / (n // shape[0]))
    return v.astype(np.float32).reshape(shape)
