"""CIFAR-10N / CIFAR-100N: the human label sets of the official release (UCSC-REAL/cifar-10-100n, Wei et al.,
ICLR 2022), by dataset and label-set name (docs/noise.md §7.1).

The release's `.pt` files are dicts of numpy arrays in torchvision's train order, read by the kit's safe loader.
They live under `<noise root>/cifar-n/`, are checked against the sha256 pinned in `labelfiles.PUBLISHED_SHA256`
and, when missing and online, fetched from the official repository (`labelfiles.PUBLISHED_URLS`). Each file also
holds `clean_label`, which the kit compares with the dataset's own train labels before using a label set."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError, check_choice
from .labelfiles import PUBLISHED_SHA256, resolve_noise_file

FOLDER = "cifar-n"
FILES = {"cifar10": "CIFAR-10_human.pt", "cifar100": "CIFAR-100_human.pt"}

# label-set name -> key in the release file (`worse` is the release's spelling of the leaderboard's "worst")
LABEL_SETS = {
    "cifar10": {"aggre": "aggre_label", "random1": "random_label1", "random2": "random_label2",
                "random3": "random_label3", "worse": "worse_label"},
    "cifar100": {"noisy": "noisy_label"},
}


def relative_file(dataset: str) -> str:
    """`cifar-n/CIFAR-10_human.pt`: the release file of a dataset, relative to a noise root."""
    check_choice(dataset, tuple(FILES), "CIFAR-N dataset")
    return f"{FOLDER}/{FILES[dataset]}"


def label_key(dataset: str, label_set: str) -> str:
    check_choice(dataset, tuple(FILES), "CIFAR-N dataset")
    sets = LABEL_SETS[dataset]
    if label_set not in sets:
        raise UserError(f"{dataset} has no CIFAR-N label set {label_set!r}; choose one of {sorted(sets)}")
    return sets[label_set]


def find_file(dataset: str, noise_root=None, data_root=None, download: bool | None = None) -> Path:
    """The checked release file (downloaded when missing, online and allowed); DataMissingError otherwise."""
    relative = relative_file(dataset)
    return resolve_noise_file(relative, noise_root, data_root, PUBLISHED_SHA256[relative], download=download)


def label_spec(dataset: str, label_set: str, noise_root=None, data_root=None, download: bool | None = None) -> str:
    """`PATH:KEY` of one label set, for the `file` noise model."""
    key = label_key(dataset, label_set)
    return f"{find_file(dataset, noise_root, data_root, download)}:{key}"


def available(dataset: str, noise_root=None, data_root=None) -> bool:
    """Whether the release file of `dataset` is present (and intact) without downloading it."""
    if dataset not in FILES:
        return False
    from ..errors import DataMissingError

    try:
        find_file(dataset, noise_root, data_root, download=False)
    except (DataMissingError, UserError):
        return False
    return True
