"""Deterministic weights for networks too large to store in a golden file (pure torch, no original code).

Tensor number i of the original's ordered state dict (its name and shape are stored in the golden file) is drawn
from `torch.Generator().manual_seed(i)`, by a rule chosen from its name and shape so that the activations stay
in a sane range. The golden generator loads these weights into the original network; the test builds the same
dictionary, maps it onto the kit's layout with the kit's mapping function and loads it into the kit's network.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def recipe_tensor(index: int, name: str, shape) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(index))
    shape = tuple(int(s) for s in shape)
    if name.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.long)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if "embed" in name:  # the timestep gates: U(0, 1), as initialised in the original
        return torch.rand(shape, generator=g)
    if len(shape) == 1:  # BN scales around 0.6 (deep ResNets in eval mode stay in range); biases around 0
        return (0.6 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)


def recipe_state_dict(names, shapes) -> dict:
    """{name: tensor} in the stored order; `shapes` is the (n, 4) array padded with -1."""
    return {str(n): recipe_tensor(i, str(n), [s for s in shape if s >= 0])
            for i, (n, shape) in enumerate(zip(names, shapes))}


def layout_arrays(state: dict, prefix: str) -> dict:
    """The names (unicode array) and shapes ((n, 4), padded with -1) of a state dict, for an npz."""
    names = list(state)
    shapes = np.full((len(names), 4), -1, dtype=np.int64)
    for i, n in enumerate(names):
        shapes[i, : state[n].dim()] = tuple(state[n].shape)
    return {f"{prefix}_names": np.array(names), f"{prefix}_shapes": shapes}


class GridFeatures(nn.Module):
    """The f_p encoder of the training-loop golden (standing in for SimCLR): a strided conv, ReLU, 2x2 average
    pooling and a linear map to 16 features with seeded weights, rounded to a grid of step 1/64 in [-4, 4), so
    every squared distance between features is exact in float32 (kNN order independent of summation order).
    `features` is what the kit calls, `forward` what the original calls."""

    def __init__(self, dim: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.linear = nn.Linear(16, dim)
        g = torch.Generator().manual_seed(77)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() > 1 else 0.1))

    def forward(self, x):
        z = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv(x)), 2).flatten(1)
        return (self.linear(z) * 64).round().clamp(-256, 255) / 64

    features = forward
