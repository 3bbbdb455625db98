"""Datasets in memory (`load_dataset`), validation splits and a device-resident mini-batcher."""

from .batcher import Batch, DeviceBatcher, epoch_seed
from .cache import cache_dir
from .dataset import ImageDataset
from .realworld import ANIMAL10N_CLASSES, CLOTHING1M_CLASSES
from .registry import DATASETS, default_data_root, load_dataset
from .sources import CIFAR10_CLASSES, CIFAR100_CLASSES
from .splits import holdout_tail, stratified_subset, validation_split

__all__ = [
    "ANIMAL10N_CLASSES",
    "Batch",
    "CIFAR100_CLASSES",
    "CIFAR10_CLASSES",
    "CLOTHING1M_CLASSES",
    "DATASETS",
    "DeviceBatcher",
    "ImageDataset",
    "cache_dir",
    "default_data_root",
    "epoch_seed",
    "holdout_tail",
    "load_dataset",
    "stratified_subset",
    "validation_split",
]
