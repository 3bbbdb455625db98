"""Loaders of the clean benchmark datasets: digits, CIFAR-10, CIFAR-100 and MNIST.

Every loader takes (root, *, download, image_size) and returns an ImageDataset whose train order is
torchvision's, the order that published noisy-label files index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataMissingError, UserError
from ..safeload import load_data_pickle
from .cache import extracted_archive
from .dataset import ImageDataset
from .download import downloads_allowed, run_download, why_no_download
from .imagefolder import load_index_tree, tree_mismatch
from .images import resize_images

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# torchvision's (alphabetical) order of the CIFAR-100 fine classes
CIFAR100_CLASSES = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm"
).split()
DIGIT_CLASSES = [str(d) for d in range(10)]


def _not_found(name: str, root: Path, looked_for: list[str], notes: list[str], holding: str, download) -> str:
    seen = f"; {'; '.join(notes)}" if notes else ""
    how = (
        f"Downloads are off ({why_no_download(download)}): run once online to let torchvision download it, "
        if not downloads_allowed(download)
        else "Check the network, "
    )
    return (
        f"{name}: not found under {root} (looked for {', '.join(looked_for)}{seen}). "
        f"{how}or pass --data-root (data_root=) to a folder holding {holding}."
    )


def _find_tree(root: Path, tree_names: list[str], classes: list[str], notes: list[str]) -> Path | None:
    for tree in [root / t for t in tree_names] + [root]:
        why_not = tree_mismatch(tree, classes)
        if why_not is None:
            return tree
        if (tree / "train").is_dir():  # say why a tree that exists was passed over
            notes.append(why_not)
    return None


# ---------------------------------------------------------------- digits


def load_digits_dataset(root: Path, *, download=None, image_size=None) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (1797 images): no files, no network."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # values are 0..16 counts of set pixels in 4x4 blocks
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return ImageDataset(
        name="digits",
        classes=list(DIGIT_CLASSES),
        train_images=resize_images(images[train_idx], image_size),
        train_labels=labels[train_idx],
        test_images=resize_images(images[test_idx], image_size),
        test_labels=labels[test_idx],
        labels_are_clean=True,
        extra={"train_source_index": train_idx, "test_source_index": test_idx},
        source="sklearn.datasets.load_digits (stratified 80/20 split, random_state=0)",
    )


# ---------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarLayout:
    folder: str  # torchvision's extracted folder
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    tree_name: str  # a class-folder copy, e.g. a JPEG export
    classes: tuple[str, ...]
    torchvision_class: str


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
        "labels", "label_names", "cifar10-jpeg", tuple(CIFAR10_CLASSES), "CIFAR10",
    ),
    "cifar100": _CifarLayout(
        "cifar-100-python", ("train",), "test", "meta",
        "fine_labels", "fine_label_names", "cifar100-jpeg", tuple(CIFAR100_CLASSES), "CIFAR100",
    ),
}


def _unpickle(path: Path) -> dict:
    # The release's pickles were written by Python 2; latin1 maps their byte strings 1:1. Only builtins, bytes and
    # numpy arrays are rebuilt: a pickle asking for anything else is refused before it runs.
    batch = load_data_pickle(path, "a CIFAR pickle", encoding="latin1")
    if not isinstance(batch, dict):
        raise UserError(f"cannot read {path} as a CIFAR pickle: it holds a {type(batch).__name__}, not a dict")
    return batch


def _cifar_images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: 'data' should be N x 3072, got {data.shape}")
    # rows are channel-major (all red, all green, all blue): CHW -> HWC
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _read_cifar_pickles(name: str, folder: Path, layout: _CifarLayout, image_size) -> ImageDataset:
    train = [_unpickle(folder / f) for f in layout.train_files]
    test = _unpickle(folder / layout.test_file)
    meta = _unpickle(folder / layout.meta_file)
    try:
        train_images = np.concatenate([_cifar_images(b, folder / f) for b, f in zip(train, layout.train_files)])
        train_labels = np.concatenate([np.asarray(b[layout.label_key], dtype=np.int64) for b in train])
        test_images = _cifar_images(test, folder / layout.test_file)
        test_labels = np.asarray(test[layout.label_key], dtype=np.int64)
        classes = list(meta[layout.names_key])
        extra = {}
        if name == "cifar100":
            extra = {
                "train_coarse_labels": np.concatenate([np.asarray(b["coarse_labels"], dtype=np.int64) for b in train]),
                "test_coarse_labels": np.asarray(test["coarse_labels"], dtype=np.int64),
                "coarse_classes": list(meta["coarse_label_names"]),
            }
    except KeyError as err:
        raise UserError(
            f"{name}: a pickle in {folder} lacks the key {err}; is it the python version of the release?"
        ) from None
    if len(train_images) != len(train_labels) or len(test_images) != len(test_labels):
        raise UserError(f"{name}: image and label counts differ in {folder}")
    return ImageDataset(
        name=name,
        classes=classes,
        train_images=resize_images(train_images, image_size),
        train_labels=train_labels,
        test_images=resize_images(test_images, image_size),
        test_labels=test_labels,
        labels_are_clean=True,
        extra=extra,
        source=f"torchvision pickles {folder}",
    )


def _load_cifar(name: str, root: Path, download, image_size) -> ImageDataset:
    layout = _CIFAR[name]
    folder = root / layout.folder
    needed = [*layout.train_files, layout.test_file, layout.meta_file]

    def missing_files() -> list[str]:
        return [f for f in needed if not (folder / f).is_file()]

    notes = []
    if missing_files():
        if folder.is_dir():
            notes.append(f"{folder} lacks {', '.join(missing_files())}")
        tree = _find_tree(root, [layout.tree_name], list(layout.classes), notes)
        archive = root / f"{layout.tree_name}.tar.gz"
        if tree is None and archive.is_file():  # e.g. the JPEG copy shipped as one archive
            tree = _find_tree(extracted_archive(archive), [layout.tree_name], list(layout.classes), notes)
        if tree is not None:
            return load_index_tree(name, tree, list(layout.classes), image_size=image_size)
        not_found = _not_found(
            name,
            root,
            [
                f"{folder}/ (torchvision's pickle layout)",
                f"an image folder tree {root / layout.tree_name}/train/<class>/<index>.jpg (or its .tar.gz)",
                f"or {root}/train/<class>/<index>.jpg",
            ],
            notes,
            f"{layout.folder}/ or such a tree",
            download,
        )
        if not downloads_allowed(download):
            raise DataMissingError(not_found)
        import torchvision.datasets

        dataset_class = getattr(torchvision.datasets, layout.torchvision_class)
        run_download(lambda: dataset_class(str(root), train=True, download=True), not_found)
        if missing_files():
            raise DataMissingError(f"{not_found}\nThe download left {folder} without {', '.join(missing_files())}.")
    return _read_cifar_pickles(name, folder, layout, image_size)


def load_cifar10(root: Path, *, download=None, image_size=None) -> ImageDataset:
    """CIFAR-10 from torchvision's pickle folder, or from a class-folder tree named by index."""
    return _load_cifar("cifar10", root, download, image_size)


def load_cifar100(root: Path, *, download=None, image_size=None) -> ImageDataset:
    """CIFAR-100 (fine labels; coarse ones in extra when read from the pickles)."""
    return _load_cifar("cifar100", root, download, image_size)


# ---------------------------------------------------------------- MNIST

_MNIST_RAW = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist_idx_file(raw: Path, name: str) -> Path | None:
    """The idx file `name` in MNIST/raw, plain or as published (`.gz`); None when neither is there."""
    for path in (raw / name, raw / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format: zero bytes, a type byte 0x08 = uint8, the number of dimensions, big-endian
    sizes, then the data), plain or gzipped. Read directly, so the published .gz files are used where they lie,
    never unpacked into the data folder (which may be read-only or shared by parallel runs)."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise UserError(f"mnist: cannot read {path}: {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08 or not 1 <= data[3] <= 3:
        raise UserError(f"mnist: {path} is not an idx file of unsigned bytes")
    nd = data[3]
    if len(data) < 4 + 4 * nd:
        raise UserError(f"mnist: {path} is truncated")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(nd))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * nd)
    if body.size != int(np.prod(shape)):
        raise UserError(f"mnist: {path} holds {body.size} values where its header says {shape}")
    return body.reshape(shape)


def _read_mnist_raw(root: Path, image_size) -> ImageDataset:
    raw = root / "MNIST" / "raw"
    splits = {}
    for train, prefix in ((True, "train"), (False, "t10k")):
        images = read_idx(mnist_idx_file(raw, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(mnist_idx_file(raw, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"mnist: the {prefix} images {images.shape} and labels {labels.shape} in {raw} "
                            "do not match")
        splits[train] = (images[..., None].copy(), labels.astype(np.int64))
    return ImageDataset(
        name="mnist",
        classes=list(DIGIT_CLASSES),
        train_images=resize_images(splits[True][0], image_size),
        train_labels=splits[True][1],
        test_images=resize_images(splits[False][0], image_size),
        test_labels=splits[False][1],
        labels_are_clean=True,
        source=f"MNIST idx files {raw}",
    )


def load_mnist(root: Path, *, download=None, image_size=None) -> ImageDataset:
    """MNIST from torchvision's `MNIST/raw/*-ubyte` files (or the published `*-ubyte.gz`, read as they are), or a
    tree train/<digit>/<index>.png."""
    raw = root / "MNIST" / "raw"

    def have_raw() -> bool:
        return all(mnist_idx_file(raw, f) is not None for f in _MNIST_RAW)

    if not have_raw():
        notes = []
        tree = _find_tree(root, ["mnist-png"], DIGIT_CLASSES, notes)
        if tree is not None:
            return load_index_tree("mnist", tree, DIGIT_CLASSES, channels=1, image_size=image_size)
        not_found = _not_found(
            "mnist",
            root,
            [f"{raw}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] (torchvision's layout)",
             f"an image folder tree {root / 'mnist-png'}/train/<digit>/<index>.png",
             f"or {root}/train/<digit>/<index>.png"],
            notes,
            "MNIST/raw/ or such a tree",
            download,
        )
        if not downloads_allowed(download):
            raise DataMissingError(not_found)
        import torchvision.datasets

        run_download(lambda: torchvision.datasets.MNIST(str(root), train=True, download=True), not_found)
        if not have_raw():
            raise DataMissingError(f"{not_found}\nThe download did not leave the idx files in {raw}.")
    return _read_mnist_raw(root, image_size)
