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


def recipe_tensor(index: int, name: str, shape, base: int = 1000) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    g = torch.Generator().manual_seed(base + index)
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


def recipe_state(names, shapes, base: int = 1000) -> dict:
    """`base` picks another set of weights for the same layout (e.g. the second of two VAEs)."""
    return {str(n): recipe_tensor(i, str(n), s, base) for i, (n, s) in enumerate(zip(names, shapes))}


def augment(images: np.ndarray, flips: np.ndarray, offsets: np.ndarray, pad: int) -> np.ndarray:
    """A stored augmentation draw applied to uint8 (N, H, W, C) images: zero-pad by `pad`, crop the H x W window at
    offsets[i] = (row, col) in [0, 2 pad], mirror where flips[i] (RandomCrop(padding) + RandomHorizontalFlip)."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.stack([padded[i, r:r + h, c:c + w] for i, (r, c) in enumerate(offsets)])
    out[flips] = out[flips][:, :, ::-1]
    return out


def assert_close_scaled(actual, expected, rtol: float, atol_rel: float, scale: float | None = None, msg: str = ""):
    """|actual - expected| <= rtol |expected| + atol_rel * scale elementwise, scale = max |expected| by default
    (pass a layer's scale for a tensor that is zero in exact arithmetic, e.g. the gradient of a bias feeding a
    train-mode BatchNorm): a tolerance that follows the tensor's magnitude, not a fixed absolute one."""
    actual = torch.as_tensor(actual).detach().double()
    expected = torch.as_tensor(expected).detach().double()
    assert actual.shape == expected.shape, f"{msg}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if scale is None:
        scale = float(expected.abs().max()) if expected.numel() else 0.0
    excess = (actual - expected).abs() - (rtol * expected.abs() + atol_rel * scale)
    if expected.numel() and float(excess.max()) > 0:
        worst = int(excess.argmax())
        raise AssertionError(f"{msg}: |diff| exceeds rtol {rtol} |x| + {atol_rel} x {scale:.3g} at flat index {worst}: "
                             f"{float(actual.reshape(-1)[worst]):.9g} vs {float(expected.reshape(-1)[worst]):.9g}")


def state_to_arrays(state: dict, prefix: str) -> dict:
    """A state dict as npz entries `prefix/name` (float32 or int64)."""
    return {f"{prefix}/{k}": v.detach().cpu().numpy() for k, v in state.items()}


def arrays_to_state(npz, prefix: str) -> dict:
    return {k[len(prefix) + 1:]: torch.from_numpy(np.array(npz[k])) for k in npz.files if k.startswith(prefix + "/")}
