"""Where a dataset's files are under a data root, found by looking at file names only (nothing is decoded).

`locate_dataset(name, root)` mirrors the places each loader in `sources.py` and `realworld.py` reads, so a
report (`nlkit doctor`) can say which datasets a root provides without loading them.
"""

from __future__ import annotations

from pathlib import Path

from ..io import expand_home
from .imagefolder import tree_mismatch
from .sources import _CIFAR, _MNIST_RAW, DIGIT_CLASSES, mnist_idx_file

__all__ = ["locate_dataset", "LOCATABLE"]


def _cifar(name: str, root: Path) -> str | None:
    layout = _CIFAR[name]
    folder = root / layout.folder
    if all((folder / f).is_file() for f in (*layout.train_files, layout.test_file, layout.meta_file)):
        return f"{folder} (pickles)"
    for tree in (root / layout.tree_name, root):
        if tree_mismatch(tree, list(layout.classes)) is None:
            return f"{tree} (image folders)"
    archive = root / f"{layout.tree_name}.tar.gz"
    if archive.is_file():
        return f"{archive} (archive, unpacked on first use)"
    return None


def _mnist(root: Path) -> str | None:
    raw = root / "MNIST" / "raw"
    if all(mnist_idx_file(raw, f) is not None for f in _MNIST_RAW):
        return f"{raw} (idx files)"
    for tree in (root / "mnist-png", root):
        if tree_mismatch(tree, DIGIT_CLASSES) is None:
            return f"{tree} (image folders)"
    return None


def _animal10n(root: Path) -> str | None:
    return next((f"{c}" for c in (root, root / "animal10n") if (c / "training").is_dir() and (c / "testing").is_dir()),
                None)


_CLOTHING_LISTS = (("noisy_train.txt", "clean_test.txt"),
                   ("noisy_label_kv.txt", "noisy_train_key_list.txt", "clean_label_kv.txt", "clean_test_key_list.txt"))


def _clothing1m(root: Path) -> str | None:
    # the two annotation layouts `load_clothing1m` reads, in the base folder or its annotations/
    for base in (root, root / "clothing1m", root / "Clothing1M"):
        for ann in (base, base / "annotations"):
            if any(all((ann / f).is_file() for f in names) for names in _CLOTHING_LISTS):
                return f"{base}"
    return None


def _red_mini_imagenet(root: Path) -> str | None:
    return next((f"{c}" for c in (root, root / "red_mini_imagenet", root / "mini-imagenet")
                 if (c / "split" / "clean_validation").is_file()), None)


_LOCATORS = {
    "digits": lambda root: "bundled with scikit-learn",
    "cifar10": lambda root: _cifar("cifar10", root),
    "cifar100": lambda root: _cifar("cifar100", root),
    "mnist": _mnist,
    "animal10n": _animal10n,
    "clothing1m": _clothing1m,
    "red_mini_imagenet": _red_mini_imagenet,
}
LOCATABLE = tuple(_LOCATORS)


def locate_dataset(name: str, root) -> str | None:
    """What provides dataset `name` under `root` (a short description), or None when nothing does."""
    from ..errors import UserError

    if name not in _LOCATORS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(_LOCATORS)}")
    root = expand_home(root)
    if name != "digits" and not root.is_dir():
        return None
    return _LOCATORS[name](root)
