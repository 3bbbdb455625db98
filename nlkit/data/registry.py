"""Datasets by name: `load_dataset("cifar10", data_root=...)`."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from ..errors import UserError
from ..io import project_path
from .cache import cache_dir
from .dataset import ImageDataset
from .realworld import load_animal10n, load_clothing1m, load_red_mini_imagenet
from .sources import load_cifar10, load_cifar100, load_digits_dataset, load_mnist

__all__ = ["DATASETS", "cache_dir", "default_data_root", "load_dataset"]

DATASETS = {
    "digits": load_digits_dataset,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "mnist": load_mnist,
    "animal10n": load_animal10n,
    "clothing1m": load_clothing1m,
    "red_mini_imagenet": load_red_mini_imagenet,
}

# arguments every loader takes; anything else is a dataset's own option (e.g. noise_rate)
_COMMON = {"root", "download", "image_size"}


def default_data_root() -> Path:
    """`$NLKIT_DATA_ROOT` if set, else the project's data/ (a relative one taken from the project folder)."""
    return project_path(os.environ.get("NLKIT_DATA_ROOT") or "data")


def load_dataset(name: str, data_root=None, download: bool | None = None, image_size=None, **options) -> ImageDataset:
    """Load a dataset into memory.

    download: True/False, or None to download (cifar10, cifar100, mnist) unless NLKIT_OFFLINE=1.
    image_size: an int or (height, width) to resize to on load (bilinear); None keeps the native size
    (clothing1m and red_mini_imagenet default to 64 and 32). `options` go to the dataset's loader,
    e.g. noise_rate=0.4 for red_mini_imagenet or max_train=10000 for clothing1m.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    loader = DATASETS[name]
    allowed = set(inspect.signature(loader).parameters) - _COMMON
    unknown = sorted(set(options) - allowed)
    if unknown:
        takes = f"its options: {', '.join(sorted(allowed))}" if allowed else "it takes no options"
        raise UserError(f"dataset {name!r} has no option {unknown[0]!r}; {takes}")
    root = project_path(data_root) if data_root is not None else default_data_root()
    kwargs = dict(options)
    if image_size is not None:  # leave a loader's own default size in place
        kwargs["image_size"] = image_size
    return loader(root, download=download, **kwargs)
