"""Tiny on-disk copies of each dataset layout that nlkit.data reads, written into a test's tmp_path.

Each writer returns the arrays it wrote so that tests can compare what the loader reads back.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from nlkit.data import CIFAR10_CLASSES, CIFAR100_CLASSES
from pickle_fixtures import python2_pickle


def random_images(rng: np.random.Generator, n: int, height: int, width: int, channels: int = 3) -> np.ndarray:
    return rng.integers(0, 256, size=(n, height, width, channels), dtype=np.uint8)


def save_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(path)


def _pickle(path: Path, obj: dict, python2: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        if python2:
            f.write(python2_pickle(obj))
        else:
            pickle.dump(obj, f, protocol=2)  # the release's protocol (written by Python 2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    # the release stores each image as one row: 1024 red, 1024 green, 1024 blue values
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_cifar10_pickles(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0,
                          python2: bool = False) -> dict:
    """The release's cifar-10-batches-py; `python2`: byte for byte in the opcodes Python 2's cPickle wrote."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    train_images = random_images(rng, 5 * per_batch, 32, 32)
    train_labels = rng.integers(0, 10, size=5 * per_batch)
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        _pickle(folder / f"data_batch_{b + 1}", {
            "batch_label": f"training batch {b + 1} of 5",
            "labels": train_labels[part].tolist(),
            "data": _cifar_rows(train_images[part]),
            "filenames": [f"img_{i}.png" for i in range(part.start, part.stop)],
        }, python2)
    test_images = random_images(rng, n_test, 32, 32)
    test_labels = rng.integers(0, 10, size=n_test)
    _pickle(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(),
        "data": _cifar_rows(test_images), "filenames": [f"t_{i}.png" for i in range(n_test)],
    }, python2)
    meta = {"label_names": list(CIFAR10_CLASSES), "num_cases_per_batch": per_batch, "num_vis": 3072}
    _pickle(folder / "batches.meta", meta, python2)
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images, test_labels=test_labels)


COARSE_NAMES = [f"superclass_{k}" for k in range(20)]


def write_cifar100_pickles(root: Path, n_train: int = 12, n_test: int = 5, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = random_images(rng, n, 32, 32)
        fine = rng.integers(0, 100, size=n)
        coarse = rng.integers(0, 20, size=n)
        _pickle(folder / split, {
            "filenames": [f"{split}_{i}.png" for i in range(n)], "batch_label": f"{split} batch",
            "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist(), "data": _cifar_rows(images),
        })
        out.update({f"{split}_images": images, f"{split}_labels": fine, f"{split}_coarse": coarse})
    _pickle(folder / "meta", {"fine_label_names": list(CIFAR100_CLASSES), "coarse_label_names": COARSE_NAMES})
    return out


def write_index_tree(
    tree: Path, classes: list[str], n_train: int = 12, n_test: int = 5, ext: str = ".png",
    size: int = 32, channels: int = 3, seed: int = 2,
) -> dict:
    """train/<class>/<torchvision index><ext> and test/<class>/<k><ext>, with random labels."""
    rng = np.random.default_rng(seed)
    train_images = random_images(rng, n_train, size, size, channels)
    train_labels = rng.integers(0, len(classes), size=n_train)
    for i, (image, label) in enumerate(zip(train_images, train_labels)):
        save_image(tree / "train" / classes[label] / f"{i}{ext}", image)
    test_images = random_images(rng, n_test, size, size, channels)
    test_labels = rng.integers(0, len(classes), size=n_test)
    for k, (image, label) in enumerate(zip(test_images, test_labels)):
        save_image(tree / "test" / classes[label] / f"{k}{ext}", image)
    return dict(train_images=train_images, train_labels=train_labels, test_images=test_images, test_labels=test_labels)


def write_mnist_idx(root: Path, n_train: int = 10, n_test: int = 4, seed: int = 3, gz: bool = False) -> dict:
    """torchvision's MNIST/raw files in the idx format: big-endian magic 2051 (images) / 2049 (labels); with `gz`,
    only the gzipped files as published."""
    import gzip

    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix, split, n in (("train", "train", n_train), ("t10k", "test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        for name, blob in ((f"{prefix}-images-idx3-ubyte", struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()),
                           (f"{prefix}-labels-idx1-ubyte", struct.pack(">II", 2049, n) + labels.tobytes())):
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (raw / name).write_bytes(blob)
        out.update({f"{split}_images": images, f"{split}_labels": labels})
    return out


def write_animal10n(base: Path, seed: int = 4) -> dict:
    """training/ and testing/ of `<label>_<name>.jpg` files (written out of name order)."""
    rng = np.random.default_rng(seed)
    names = {
        "training": ["7_img_30.jpg", "3_img_1553496947496.jpg", "0_img_2.jpg", "9_img_1.jpg", "3_img_0.jpg"],
        "testing": ["5_t_1.jpg", "1_t_0.jpg"],
    }
    for folder, files in names.items():
        for name in files:
            save_image(base / folder / name, random_images(rng, 1, 64, 64)[0])
    return {folder: sorted(files) for folder, files in names.items()}


def _lines(pairs) -> str:
    return "".join(f"{path} {label}\n" for path, label in pairs)


def write_clothing1m(base: Path, original_layout: bool = False, seed: int = 5) -> dict:
    """Images of mixed sizes under images/, plus either the simple or the original annotation files."""
    rng = np.random.default_rng(seed)
    splits = {
        "train": [(f"images/0/{i:02d}/{i}.jpg", int(rng.integers(0, 14))) for i in range(6)],
        "val": [(f"images/1/{i:02d}/{i}.jpg", int(rng.integers(0, 14))) for i in range(3)],
        "test": [(f"images/2/{i:02d}/{i}.jpg", int(rng.integers(0, 14))) for i in range(4)],
    }
    for pairs in splits.values():
        for path, _ in pairs:
            save_image(base / path, random_images(rng, 1, int(rng.integers(40, 90)), int(rng.integers(40, 90)))[0])
    ann = base / "annotations"
    ann.mkdir()
    if original_layout:
        (ann / "noisy_label_kv.txt").write_text(_lines(splits["train"][::-1]))  # kv order differs from the key list
        (ann / "clean_label_kv.txt").write_text(_lines(splits["test"] + splits["val"]))
        key_lists = {"train": "noisy_train", "val": "clean_val", "test": "clean_test"}
        for split, stem in key_lists.items():
            (ann / f"{stem}_key_list.txt").write_text("".join(f"{p}\n" for p, _ in splits[split]))
    else:
        for split, file in (("train", "noisy_train.txt"), ("val", "clean_val.txt"), ("test", "clean_test.txt")):
            (ann / file).write_text(_lines(splits[split]))
    return splits


def write_red_mini_imagenet(base: Path, rates=(0.2, 0.4), seed: int = 6) -> dict:
    """split/red_noise_nl_<rate>, split/clean_validation and the 84x84 images under all_images/."""
    rng = np.random.default_rng(seed)
    split = base / "split"
    split.mkdir(parents=True)
    lists = {}
    for rate in rates:
        pairs = [(f"{rate}_{i}.jpg", int(rng.integers(0, 100))) for i in range(5)]
        (split / f"red_noise_nl_{rate:.1f}").write_text("".join(f"{f} {y}\n" for f, y in pairs))
        lists[rate] = pairs
    lists["test"] = [(f"n0153282900000{i}.JPEG", int(rng.integers(0, 100))) for i in range(3)]
    (split / "clean_validation").write_text("".join(f"{f} {y}\n" for f, y in lists["test"]))
    for pairs in lists.values():
        for name, _ in pairs:
            save_image(base / "all_images" / name, random_images(rng, 1, 84, 84)[0])
    return lists
