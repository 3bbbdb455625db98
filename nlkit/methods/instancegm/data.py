"""The images and noisy labels of one InstanceGM cell: a dataset, its noise (PTD instance-dependent noise for
CIFAR, the published web noise of Red Mini-ImageNet, Animal-10N's own labels), and optional subsets for reduced
profiles. The noise is always generated on the full training set first and subset afterwards, so a subset carries
exactly the labels the full run would see; likewise a reduced profile may average-pool the images (`downsample`)
after the noise was drawn from the full-resolution pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...data import load_dataset
from ...data.images import downsample
from ...errors import UserError
from ...noise import idn_ptd
from ...noise.setting import apply_noise_model, restrict, setting_from_params


@dataclass
class IGMData:
    train_images: np.ndarray       # uint8 N x H x W x C
    noisy: np.ndarray              # the labels trained on
    clean: np.ndarray | None       # None where the true labels are unknown (real-world noise)
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]
    pixels: str
    noise_meta: dict = field(default_factory=dict)
    train_index: np.ndarray | None = None   # positions in the full training set (None: all of it)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def clean_mask(self) -> np.ndarray | None:
        """Which training labels are correct (None when unknown)."""
        return None if self.clean is None else self.noisy == self.clean

    @property
    def noise_rate(self) -> float | None:
        return None if self.clean is None else float((self.noisy != self.clean).mean())


def subset_indices(n: int, k: int | None, how: str) -> np.ndarray:
    """`head`: the first k (the training subset of the reduced profiles: torchvision order is class-mixed);
    `spread`: k indices drawn with a fixed seed and sorted (test sets stored class by class)."""
    if k is None or k >= n:
        return np.arange(n)
    if k < 1:
        raise UserError(f"a subset needs at least one sample, got {k}")
    if how == "head":
        return np.arange(k)
    return np.sort(np.random.default_rng(0).choice(n, size=k, replace=False))


def prepare_data(cell: dict, data_root=None, noise_root=None) -> IGMData:
    options = dict(cell.get("dataset_options") or {})
    if cell.get("image_size"):
        options["image_size"] = cell["image_size"]
    ds = load_dataset(cell["dataset"], data_root=data_root, **options)
    noise = cell["noise"]
    if noise["model"] == "idn":   # PTD noise with InstanceGM's generator settings (flatten order is a switch)
        result = idn_ptd(ds.train_images, ds.train_labels, noise["rate"], ds.num_classes,
                         seed=int(noise.get("seed", 123)), norm_std=float(noise.get("norm_std", 0.1)),
                         flatten=noise.get("flatten", "hwc"), pixels=ds.pixels)
    else:
        setting = setting_from_params(cell, data_root, noise_root)
        ds = restrict(ds, setting["label_range"])
        result = apply_noise_model(ds, setting["noise"], setting["rate"], setting["noise_seed"],
                                   asym_map=setting["asym_map"], label_file=setting["label_file"])
    noisy = np.asarray(result.noisy, dtype=np.int64)
    clean = np.asarray(ds.train_labels, dtype=np.int64) if ds.labels_are_clean else None
    train_idx = subset_indices(len(noisy), cell.get("train_subset"), "head")
    test_idx = subset_indices(len(ds.test_labels), cell.get("test_subset"), "spread")
    full = len(train_idx) == len(noisy)
    meta = dict(result.meta)
    if not full:
        meta["subset"] = {"train": int(len(train_idx)), "of": int(len(noisy)), "test": int(len(test_idx))}
    factor = int(cell.get("downsample") or 1)   # after the noise: the labels stay those of the full pixels
    if factor > 1:
        meta["downsample"] = factor
    return IGMData(
        train_images=downsample(ds.train_images[train_idx], factor), noisy=noisy[train_idx],
        clean=None if clean is None else clean[train_idx],
        test_images=downsample(ds.test_images[test_idx], factor),
        test_labels=np.asarray(ds.test_labels, np.int64)[test_idx],
        classes=list(ds.classes), pixels=ds.pixels, noise_meta=meta, train_index=None if full else train_idx)
