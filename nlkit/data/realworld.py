"""Loaders of the real-world noisy datasets: Animal-10N, Clothing1M and Red Mini-ImageNet.

Their train labels are the noisy ones (the clean labels are unknown), so `labels_are_clean` is False.
None can be downloaded automatically: each needs the authors' release on disk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataMissingError, UserError, check_rate
from .cache import decode_cached
from .dataset import ImageDataset
from .images import is_image_file

ANIMAL10N_CLASSES = [
    "cat", "lynx", "wolf", "coyote", "cheetah", "jaguar", "chimpanzee", "orangutan", "hamster", "guinea pig",
]
CLOTHING1M_CLASSES = [
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
    "Jacket", "Downcoat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
]
RED_MINI_IMAGENET_NUM_CLASSES = 100


def _missing(name: str, root: Path, looked_for: list[str], get_it: str) -> DataMissingError:
    return DataMissingError(
        f"{name}: not found under {root} (looked for {', '.join(looked_for)}). "
        f"It cannot be downloaded automatically: {get_it}, then pass --data-root (data_root=) to the folder holding it."
    )


def _check_labels(labels: np.ndarray, num_classes: int, where) -> np.ndarray:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise UserError(f"{where}: label {labels[bad[0]]} is outside 0..{num_classes - 1}")
    return labels


def _read_pairs(path: Path) -> list[tuple[str, int]]:
    """Lines `<relative path> <integer label>` (blank lines skipped)."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            fields = line.rsplit(None, 1)
            if not fields:
                continue
            try:
                pairs.append((fields[0], int(fields[1])))
            except (IndexError, ValueError):
                raise UserError(
                    f"{path}:{line_no}: expected '<image path> <integer label>', got {line.strip()!r}"
                ) from None
    return pairs


def _labels_of(pairs: list[tuple[str, int]], num_classes: int, where) -> np.ndarray:
    return _check_labels(np.array([y for _, y in pairs], dtype=np.int64), num_classes, where)


def _read_list(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


# ---------------------------------------------------------------- Animal-10N


def _animal_label(path: Path) -> int:
    prefix = path.name.split("_", 1)[0]
    if "_" not in path.name or not (prefix.isascii() and prefix.isdigit()):
        raise UserError(f"animal10n: {path} is not named '<label>_<name>.jpg', so its label is unknown")
    return int(prefix)


def load_animal10n(root: Path, *, download=None, image_size=None) -> ImageDataset:
    """Animal-10N: `training/` and `testing/` folders of 64x64 JPEGs named `<label>_<anything>.jpg`."""
    candidates = [root, root / "animal10n"]
    base = next((c for c in candidates if (c / "training").is_dir() and (c / "testing").is_dir()), None)
    if base is None:
        raise _missing(
            "animal10n", root, [f"{c}/training/ and {c}/testing/" for c in candidates],
            "request it from the authors (https://dm.kaist.ac.kr/datasets/animal-10n/)",
        )
    groups, labels = {}, {}
    for group, folder in (("train", "training"), ("test", "testing")):
        # sorted by file name: a deterministic order that does not depend on the file system
        files = sorted((p for p in (base / folder).iterdir() if p.is_file() and is_image_file(p)), key=lambda p: p.name)
        labels[group] = _check_labels(
            np.array([_animal_label(p) for p in files], dtype=np.int64), len(ANIMAL10N_CLASSES), base / folder
        )
        groups[group] = [p.relative_to(base).as_posix() for p in files]
    arrays = decode_cached("animal10n", base, groups, image_size=image_size)
    return ImageDataset(
        name="animal10n",
        classes=list(ANIMAL10N_CLASSES),
        train_images=arrays["train"],
        train_labels=labels["train"],
        test_images=arrays["test"],
        test_labels=labels["test"],
        labels_are_clean=False,
        train_paths=groups["train"],
        source=f"Animal-10N folders {base}",
    )


# ---------------------------------------------------------------- Clothing1M


def _clothing_lists(base: Path) -> dict[str, list[tuple[str, int]]] | None:
    """{train, test[, val]} -> [(image path relative to base, label)], from either annotation layout."""
    for ann in (base, base / "annotations"):
        if (ann / "noisy_train.txt").is_file() and (ann / "clean_test.txt").is_file():
            lists = {"train": _read_pairs(ann / "noisy_train.txt"), "test": _read_pairs(ann / "clean_test.txt")}
            if (ann / "clean_val.txt").is_file():
                lists["val"] = _read_pairs(ann / "clean_val.txt")
            return lists
        # the original release: label key-value files plus key lists naming each split's images
        original = ["noisy_label_kv.txt", "noisy_train_key_list.txt", "clean_label_kv.txt", "clean_test_key_list.txt"]
        if all((ann / f).is_file() for f in original):
            noisy = dict(_read_pairs(ann / "noisy_label_kv.txt"))
            clean = dict(_read_pairs(ann / "clean_label_kv.txt"))
            splits = {"train": ("noisy_train_key_list.txt", noisy, "noisy_label_kv.txt"),
                      "test": ("clean_test_key_list.txt", clean, "clean_label_kv.txt")}
            if (ann / "clean_val_key_list.txt").is_file():
                splits["val"] = ("clean_val_key_list.txt", clean, "clean_label_kv.txt")
            lists = {}
            for split, (key_file, kv, kv_file) in splits.items():
                keys = _read_list(ann / key_file)
                unlabelled = [k for k in keys if k not in kv]
                if unlabelled:
                    raise UserError(f"clothing1m: {unlabelled[0]} in {ann / key_file} has no label in {ann / kv_file}")
                lists[split] = [(k, kv[k]) for k in keys]
            return lists
    return None


def load_clothing1m(root: Path, *, download=None, image_size=64, max_train: int | None = None) -> ImageDataset:
    """Clothing1M from its annotation lists (image paths relative to the dataset folder).

    Either `noisy_train.txt`, `clean_val.txt`, `clean_test.txt` (lines `<path> <label>`) or the original
    release's `noisy_label_kv.txt` + `noisy_train_key_list.txt`, `clean_label_kv.txt` +
    `clean_val_key_list.txt` / `clean_test_key_list.txt`, in the folder or its `annotations/`.
    Images are resized to `image_size` (default 64: a million full-size images do not fit in memory);
    `max_train` loads only the first images of the train list. The clean val split goes to
    extra["val_images"], extra["val_labels"].
    """
    if image_size is None:
        image_size = 64
    if max_train is not None and (int(max_train) != max_train or max_train < 1):
        raise UserError(f"clothing1m: max_train must be a positive integer, got {max_train!r}")
    candidates = [root, root / "clothing1m", root / "Clothing1M"]
    for base in candidates:
        lists = _clothing_lists(base)
        if lists is not None:
            break
    else:
        folders = ", ".join(str(a) for c in candidates for a in (c, c / "annotations"))
        raise _missing(
            "clothing1m", root,
            [f"noisy_train.txt + clean_test.txt, or the release's noisy_label_kv.txt + noisy_train_key_list.txt + "
             f"clean_label_kv.txt + clean_test_key_list.txt, in any of {folders}"],
            "request it from the authors (https://github.com/Cysu/noisy_label)",
        )
    if max_train is not None:
        lists["train"] = lists["train"][: int(max_train)]
    groups = {split: [path for path, _ in pairs] for split, pairs in lists.items()}
    labels = {s: _labels_of(pairs, len(CLOTHING1M_CLASSES), f"clothing1m {s} list") for s, pairs in lists.items()}
    arrays = decode_cached("clothing1m", base, groups, image_size=image_size)
    extra = {"val_images": arrays["val"], "val_labels": labels["val"]} if "val" in arrays else {}
    return ImageDataset(
        name="clothing1m",
        classes=list(CLOTHING1M_CLASSES),
        train_images=arrays["train"],
        train_labels=labels["train"],
        test_images=arrays["test"],
        test_labels=labels["test"],
        labels_are_clean=False,
        train_paths=groups["train"],
        extra=extra,
        source=f"Clothing1M {base}" + (f" (first {max_train} train images)" if max_train is not None else ""),
    )


# ---------------------------------------------------------------- Red Mini-ImageNet


def _rate_names(rate: float) -> list[str]:
    # the published files are named red_noise_nl_0.0, 0.2, ..., with two decimals only where needed (0.05)
    if abs(rate - round(rate, 1)) < 1e-9:
        return [f"red_noise_nl_{rate:.1f}"]
    return list(dict.fromkeys([f"red_noise_nl_{rate:.2f}", f"red_noise_nl_{rate:g}"]))


def load_red_mini_imagenet(root: Path, *, download=None, image_size=32, noise_rate: float = 0.2) -> ImageDataset:
    """Red Mini-ImageNet (Controlled Noisy Web Labels), laid out as the published split files.

    `<root>/split/red_noise_nl_<rate>` lists the train images (`<file name> <label>`, web images
    with noisy labels mixed in at that rate), `<root>/split/clean_validation` the test images, all
    under `<root>/all_images/`. Images are resized to `image_size` (default 32, as InstanceGM trains).
    Class names come from `<root>/split/class_names.txt` (one a line) when present.
    """
    if image_size is None:
        image_size = 32
    rate = check_rate(noise_rate, "noise_rate")
    candidates = [root, root / "red_mini_imagenet", root / "mini-imagenet"]
    base = next((c for c in candidates if (c / "split" / "clean_validation").is_file()), None)
    if base is None:
        raise _missing(
            "red_mini_imagenet", root, [f"{c}/split/clean_validation" for c in candidates],
            "get the split files from https://google.github.io/controlled-noisy-web-labels/ and the images they list "
            "into all_images/",
        )
    split = base / "split"
    train_file = next((split / n for n in _rate_names(rate) if (split / n).is_file()), None)
    if train_file is None:
        have = sorted(p.name for p in split.glob("red_noise_nl_*"))
        raise DataMissingError(
            f"red_mini_imagenet: no train list for noise_rate={rate:g} in {split} "
            f"(looked for {', '.join(_rate_names(rate))}); found: {', '.join(have) or 'none'}"
        )
    names_file = split / "class_names.txt"
    if names_file.is_file():
        classes = _read_list(names_file)
    else:
        classes = [f"class_{k}" for k in range(RED_MINI_IMAGENET_NUM_CLASSES)]
    if len(classes) != RED_MINI_IMAGENET_NUM_CLASSES:
        raise UserError(f"{names_file} names {len(classes)} classes, expected {RED_MINI_IMAGENET_NUM_CLASSES}")
    list_files = {"train": train_file, "test": split / "clean_validation"}
    lists = {g: _read_pairs(f) for g, f in list_files.items()}
    groups = {g: [f"all_images/{f}" for f, _ in pairs] for g, pairs in lists.items()}
    labels = {g: _labels_of(pairs, len(classes), list_files[g]) for g, pairs in lists.items()}
    arrays = decode_cached("red_mini_imagenet", base, groups, image_size=image_size)
    return ImageDataset(
        name="red_mini_imagenet",
        classes=classes,
        train_images=arrays["train"],
        train_labels=labels["train"],
        test_images=arrays["test"],
        test_labels=labels["test"],
        labels_are_clean=False,
        train_paths=groups["train"],
        extra={"noise_rate": rate},
        source=f"Red Mini-ImageNet {train_file} + clean_validation",
    )
