"""Network architectures by name, and the kit's checkpoint format for a trained model.

Every model exposes `features(x)` (the penultimate representation, used for t-SNE and
retrieval) and `forward(x)` (class logits).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import UserError, check_choice


class SmallCNN(nn.Module):
    """A compact CNN for small images (digits 8x8, MNIST 28x28): the CPU smoke-profile model."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.feature_dim = 2 * w
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


ARCHITECTURES: dict[str, type[nn.Module]] = {"small_cnn": SmallCNN}


def build_model(arch: str, **kwargs) -> nn.Module:
    check_choice(arch, ARCHITECTURES, "architecture")
    return ARCHITECTURES[arch](**kwargs)


def save_model(model: nn.Module, path, arch: str, **kwargs) -> Path:
    """Save weights with what is needed to rebuild the network (`load_model`)."""
    from .noise.labelfiles import atomic_write

    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": "nlkit-model-1", "arch": arch, "kwargs": kwargs, "state_dict": state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    return path


def load_model(path, map_location="cpu") -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model checkpoint not found: {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != "nlkit-model-1":
        raise UserError(f"{path} is not an nlkit model checkpoint (saved with nlkit.models.save_model)")
    model = build_model(payload["arch"], **payload["kwargs"])
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.eval()
