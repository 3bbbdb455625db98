"""Class-folder trees `train/<class>/<index>.<ext>`, `test/<class>/<k>.<ext>` (e.g. a JPEG copy of CIFAR).

Published noisy-label files index the training images in torchvision's order, so a tree is only
usable when every train file is named by its torchvision index: 0..N-1, each exactly once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .cache import decode_cached
from .dataset import ImageDataset
from .images import any_jpeg, is_image_file


def class_folders(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def tree_mismatch(tree: Path, classes: list[str]) -> str | None:
    """None when `tree/train` holds class folders (a subset of `classes`), else why it is not usable."""
    train_dir = tree / "train"
    if not train_dir.is_dir():
        return f"no {train_dir}"
    folders = class_folders(train_dir)
    foreign = [f for f in folders if f not in classes]
    if not folders:
        return f"{train_dir} has no class folders"
    if foreign:
        return f"{train_dir} has folders that are not class names ({', '.join(foreign[:3])})"
    return None


def _image_files(split_dir: Path, classes: list[str]) -> list[tuple[int, Path]]:
    """(class index, path relative to the split's parent) of every image under split_dir/<class>/."""
    files = []
    for folder in class_folders(split_dir):
        if folder not in classes:
            raise UserError(f"{split_dir / folder}: {folder!r} is not a class name; expected one of {classes}")
        label = classes.index(folder)
        files += [(label, p) for p in (split_dir / folder).iterdir() if p.is_file() and is_image_file(p)]
    return files


def _index_of(path: Path) -> int | None:
    stem = path.stem
    return int(stem) if stem.isascii() and stem.isdigit() else None


def _train_order(name: str, train_dir: Path, files: list[tuple[int, Path]]) -> list[tuple[int, Path]]:
    why = (
        f"{name}: cannot establish the train order of {train_dir}: train files must be named by their "
        f"torchvision index 0..N-1 (published noise label files index that order)"
    )
    indices = []
    for _, path in files:
        index = _index_of(path)
        if index is None:
            raise UserError(f"{why}, but {path} is not named by an integer")
        indices.append(index)
    if not files:
        raise UserError(f"{why}, but it holds no images")
    found = np.sort(np.asarray(indices))
    if not np.array_equal(found, np.arange(len(files))):
        duplicated = np.unique(found[1:][found[1:] == found[:-1]])
        missing = np.setdiff1d(np.arange(len(files)), found)
        detail = []
        if duplicated.size:
            detail.append(f"index {duplicated[0]} appears more than once")
        if missing.size:
            detail.append(f"index {missing[0]} is missing")
        raise UserError(
            f"{why}, but the {len(files)} files' indices are not exactly 0..{len(files) - 1} ({'; '.join(detail)})"
        )
    return [files[i] for i in np.argsort(indices, kind="stable")]


def _test_sort_key(file: tuple[int, Path]):
    # label files never index the test set; (class, integer name) just makes the order stable
    label, path = file
    index = _index_of(path)
    return (label, 0, index, "") if index is not None else (label, 1, 0, path.name)


def _check_label_file(name: str, tree: Path, labels: np.ndarray) -> None:
    label_file = tree / "train_labels.npy"
    if not label_file.is_file():
        return
    stored = np.load(label_file, allow_pickle=False)
    if stored.shape != labels.shape:
        raise UserError(
            f"{name}: {label_file} holds {stored.shape} labels but the tree has {labels.shape[0]} train images"
        )
    wrong = np.flatnonzero(stored != labels)
    if wrong.size:
        i = wrong[0]
        raise UserError(
            f"{name}: {label_file} disagrees with the class folders at {wrong.size} of {labels.size} train images "
            f"(first at index {i}: the file says {stored[i]}, the folder says {labels[i]})"
        )


def load_index_tree(
    name: str,
    tree: Path,
    classes: list[str],
    *,
    channels: int = 3,
    image_size=None,
    extra: dict | None = None,
) -> ImageDataset:
    """Read a class-folder tree whose train files are named by torchvision index (see the module doc)."""
    train = _train_order(name, tree / "train", _image_files(tree / "train", classes))
    train_labels = np.array([label for label, _ in train], dtype=np.int64)
    _check_label_file(name, tree, train_labels)

    test_dir = tree / "test"
    if not test_dir.is_dir():
        raise UserError(f"{name}: {tree} has train/ but no test/ folder")
    test = sorted(_image_files(test_dir, classes), key=_test_sort_key)
    test_labels = np.array([label for label, _ in test], dtype=np.int64)

    train_paths = [p.relative_to(tree).as_posix() for _, p in train]
    test_paths = [p.relative_to(tree).as_posix() for _, p in test]
    arrays = decode_cached(
        name, tree, {"train": train_paths, "test": test_paths}, channels=channels, image_size=image_size
    )
    return ImageDataset(
        name=name,
        classes=list(classes),
        train_images=arrays["train"],
        train_labels=train_labels,
        test_images=arrays["test"],
        test_labels=test_labels,
        labels_are_clean=True,
        pixels="jpeg" if any_jpeg(train_paths + test_paths) else "original",
        train_paths=train_paths,
        extra=dict(extra or {}),
        source=f"image folder tree {tree}",
    )
