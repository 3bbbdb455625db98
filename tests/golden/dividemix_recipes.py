"""Pure-torch helpers shared by the golden generators and the golden tests (no code of the original repositories).

- `TinyNet`: a small conv net written once here, used as DivideMix's two networks on both sides of a golden, so
  that the step's weights fit in a few KiB.
- `recipe_state(names, shapes)`: deterministic weights for a large network, one tensor at a time from a
  torch.Generator seeded by the tensor's position in the *original's* state-dict order, so a golden need only store
  the names, shapes and outputs (not 45 MB of weights). The generator fills the original model with them; the test
  fills the kit's model through the kit's mapping function.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class TinyNet(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 (stride 2) -> BN -> ReLU -> global average -> Linear."""

    def __init__(self, num_classes: int = 5, width: int = 6):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.linear = nn.Linear(width, num_classes)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return self.linear(h.mean(dim=(2, 3)))


def recipe_tensor(index: int, name: str, shape) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    g = torch.Generator().manual_seed(1000 + index)
    if name.endswith("num_batches_tracked"):
        return torch.tensor(3, dtype=torch.long)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:
        if name.endswith("weight"):   # BN scale
            return 1.0 + 0.1 * torch.randn(shape, generator=g)
        return 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)


def recipe_state(names, shapes) -> dict:
    return {str(n): recipe_tensor(i, str(n), s) for i, (n, s) in enumerate(zip(names, shapes))}


def state_to_arrays(state: dict, prefix: str) -> dict:
    """A state dict as npz entries `prefix/name` (float32 or int64)."""
    return {f"{prefix}/{k}": v.detach().cpu().numpy() for k, v in state.items()}


def arrays_to_state(npz, prefix: str) -> dict:
    return {k[len(prefix) + 1:]: torch.from_numpy(np.array(npz[k])) for k in npz.files if k.startswith(prefix + "/")}
