"""The in-memory form every loader returns: uint8 images plus integer labels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageDataset:
    """A whole image dataset held in memory.

    Images are uint8 (N, H, W, C) with C = 1 or 3; labels are int64. `train_labels` are the labels
    shipped with the data: clean for digits/mnist/cifar, the noisy ones for the real-world noisy
    datasets (animal10n, clothing1m, red_mini_imagenet), where `labels_are_clean` is False.
    """

    name: str
    classes: list[str]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    labels_are_clean: bool
    pixels: str = "original"  # "jpeg" when decoded from lossy JPEG files rather than the release's pixels
    train_paths: list[str] | None = None  # file of each train image, when read from files
    extra: dict = field(default_factory=dict)
    source: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        # the default dataclass repr would print whole image arrays
        return (
            f"ImageDataset({self.name!r}, {self.num_classes} classes, train {self.train_images.shape}, "
            f"test {self.test_images.shape}, labels_are_clean={self.labels_are_clean}, pixels={self.pixels!r}, "
            f"extra={sorted(self.extra)}, source={self.source!r})"
        )
