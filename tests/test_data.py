"""nlkit.data: dataset loaders on tiny generated copies of each layout, splits and the device batcher."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.error import URLError

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.datasets

from nlkit.data import (
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    CLOTHING1M_CLASSES,
    DATASETS,
    Batch,
    DeviceBatcher,
    ImageDataset,
    cache_dir,
    default_data_root,
    holdout_tail,
    load_dataset,
    validation_split,
)
from nlkit.errors import DataMissingError, UserError

try:  # tests/ may or may not be a package
    from . import data_fixtures as fx
except ImportError:
    import data_fixtures as fx


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Cache in tmp_path, no data root from the user, and never a download unless a test asks."""
    monkeypatch.setenv("NLKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NLKIT_OFFLINE", "1")
    monkeypatch.delenv("NLKIT_DATA_ROOT", raising=False)


@pytest.fixture
def no_image_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("PIL.Image.open was called: the cache was not used")

    return lambda: monkeypatch.setattr(PIL.Image, "open", refuse)


def assert_dataset_types(ds: ImageDataset, channels: int = 3):
    for images in (ds.train_images, ds.test_images):
        assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == channels
    for labels in (ds.train_labels, ds.test_labels):
        assert labels.dtype == np.int64 and labels.ndim == 1
    assert len(ds.train_images) == len(ds.train_labels) and len(ds.test_images) == len(ds.test_labels)
    assert ds.num_classes == len(ds.classes)


# ---------------------------------------------------------------- registry


def test_registry_names_and_unknown_dataset():
    assert set(DATASETS) == {"digits", "cifar10", "cifar100", "mnist", "animal10n", "clothing1m", "red_mini_imagenet"}
    with pytest.raises(UserError, match=r"unknown dataset 'x'; choose one of: digits, cifar10"):
        load_dataset("x")
    with pytest.raises(UserError, match="has no option 'noise_rate'"):
        load_dataset("digits", noise_rate=0.2)


def test_default_data_root_and_cache_dir(monkeypatch, tmp_path):
    assert str(cache_dir()) == str(tmp_path / "cache")
    from nlkit.io import project_root

    assert default_data_root() == project_root() / "data"   # the project's data/, whatever the working directory
    monkeypatch.setenv("NLKIT_DATA_ROOT", str(tmp_path / "elsewhere"))
    assert default_data_root() == tmp_path / "elsewhere"


def test_digits():
    ds = load_dataset("digits")
    assert_dataset_types(ds, channels=1)
    assert len(ds.train_images) + len(ds.test_images) == 1797
    assert ds.train_images.shape[1:] == (8, 8, 1) and ds.train_images.max() == 255
    assert ds.classes == [str(d) for d in range(10)] and ds.labels_are_clean
    # stratified 80/20: every class keeps about a fifth of its images in the test split
    test_counts = np.bincount(ds.test_labels, minlength=10)
    shares = test_counts / (np.bincount(ds.train_labels, minlength=10) + test_counts)
    assert np.all(np.abs(shares - 0.2) < 0.02)
    again = load_dataset("digits")
    assert np.array_equal(again.train_labels, ds.train_labels) and np.array_equal(again.test_images, ds.test_images)
    assert load_dataset("digits", image_size=16).train_images.shape[1:] == (16, 16, 1)


# ---------------------------------------------------------------- CIFAR pickles


def test_cifar10_pickles(tmp_path):
    written = fx.write_cifar10_pickles(tmp_path)
    ds = load_dataset("cifar10", data_root=tmp_path)
    assert_dataset_types(ds)
    assert ds.train_images.shape == (20, 32, 32, 3) and ds.test_images.shape == (6, 32, 32, 3)
    # pixels and order are exactly the release's (batches 1..5 in file order)
    assert np.array_equal(ds.train_images, written["train_images"])
    assert np.array_equal(ds.train_labels, written["train_labels"])
    assert np.array_equal(ds.test_images, written["test_images"])
    assert np.array_equal(ds.test_labels, written["test_labels"])
    assert ds.classes == CIFAR10_CLASSES and ds.labels_are_clean and ds.pixels == "original"
    assert ds.train_paths is None and "cifar-10-batches-py" in ds.source


def test_cifar100_pickles_with_coarse_labels(tmp_path):
    written = fx.write_cifar100_pickles(tmp_path)
    ds = load_dataset("cifar100", data_root=tmp_path)
    assert_dataset_types(ds)
    assert ds.num_classes == 100 and ds.classes == CIFAR100_CLASSES
    assert np.array_equal(ds.train_images, written["train_images"])
    assert np.array_equal(ds.train_labels, written["train_labels"])
    assert np.array_equal(ds.extra["train_coarse_labels"], written["train_coarse"])
    assert np.array_equal(ds.extra["test_coarse_labels"], written["test_coarse"])
    assert ds.extra["coarse_classes"] == fx.COARSE_NAMES


def test_cifar100_class_list_is_torchvision_order():
    assert len(CIFAR100_CLASSES) == 100 and CIFAR100_CLASSES == sorted(CIFAR100_CLASSES)
    assert CIFAR100_CLASSES[4] == "beaver" and CIFAR100_CLASSES[91] == "trout" and CIFAR100_CLASSES[99] == "worm"


def test_image_size_resizes_in_memory_data(tmp_path):
    fx.write_cifar10_pickles(tmp_path)
    ds = load_dataset("cifar10", data_root=tmp_path, image_size=16)
    assert ds.train_images.shape == (20, 16, 16, 3) and ds.train_images.dtype == np.uint8


# ---------------------------------------------------------------- class-folder trees


def test_png_tree_order_labels_and_paths(tmp_path):
    written = fx.write_index_tree(tmp_path, CIFAR10_CLASSES, n_train=12, n_test=5)
    ds = load_dataset("cifar10", data_root=tmp_path)
    assert_dataset_types(ds)
    # train order = the integer file names, whatever folder each file is in
    assert np.array_equal(ds.train_images, written["train_images"])
    assert np.array_equal(ds.train_labels, written["train_labels"])
    assert ds.train_paths[3] == f"train/{CIFAR10_CLASSES[written['train_labels'][3]]}/3.png"
    assert ds.pixels == "original"
    # test order: by class index, then by integer file name
    expected = sorted(range(5), key=lambda k: (written["test_labels"][k], k))
    assert np.array_equal(ds.test_labels, written["test_labels"][expected])
    assert np.array_equal(ds.test_images, written["test_images"][expected])


def test_jpeg_tree_is_flagged_and_cached(tmp_path, no_image_decoding):
    tree = tmp_path / "cifar10-jpeg"
    written = fx.write_index_tree(tree, CIFAR10_CLASSES, ext=".jpg")
    first = load_dataset("cifar10", data_root=tmp_path)
    assert first.pixels == "jpeg" and np.array_equal(first.train_labels, written["train_labels"])
    assert len(list(cache_dir().glob("cifar10-*.npz"))) == 1
    no_image_decoding()  # a second load must come from the cache
    second = load_dataset("cifar10", data_root=tmp_path)
    assert np.array_equal(second.train_images, first.train_images)
    assert np.array_equal(second.test_images, first.test_images)
    assert second.train_paths == first.train_paths


def test_cache_misses_when_a_file_changes(tmp_path, monkeypatch):
    fx.write_index_tree(tmp_path, CIFAR10_CLASSES)
    load_dataset("cifar10", data_root=tmp_path)
    changed = next((tmp_path / "train").rglob("0.png"))
    fx.save_image(changed, np.zeros((32, 32, 3), np.uint8))
    os.utime(changed, ns=(10**19, 10**19))  # a newer mtime than any other file
    reloaded = load_dataset("cifar10", data_root=tmp_path)
    assert reloaded.train_images[0].max() == 0
    assert len(list(cache_dir().glob("cifar10-*.npz"))) == 2


def test_tree_label_file_must_match(tmp_path):
    written = fx.write_index_tree(tmp_path, CIFAR10_CLASSES)
    np.save(tmp_path / "train_labels.npy", written["train_labels"])
    assert np.array_equal(load_dataset("cifar10", data_root=tmp_path).train_labels, written["train_labels"])
    wrong = written["train_labels"].copy()
    wrong[5] = (wrong[5] + 1) % 10
    np.save(tmp_path / "train_labels.npy", wrong)
    with pytest.raises(UserError, match=r"train_labels.npy disagrees .* at 1 of 12 .* index 5"):
        load_dataset("cifar10", data_root=tmp_path)


def test_tree_without_index_names_is_refused(tmp_path):
    fx.write_index_tree(tmp_path, CIFAR10_CLASSES)
    (tmp_path / "train" / "cat").mkdir(exist_ok=True)
    fx.save_image(tmp_path / "train" / "cat" / "kitten.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(UserError, match=r"cannot establish the train order .*/kitten.png is not named by an integer"):
        load_dataset("cifar10", data_root=tmp_path)


def test_tree_with_index_gap_is_refused(tmp_path):
    fx.write_index_tree(tmp_path, CIFAR10_CLASSES)
    next((tmp_path / "train").rglob("4.png")).unlink()
    with pytest.raises(UserError, match=r"not exactly 0..10 \(index 4 is missing\)"):
        load_dataset("cifar10", data_root=tmp_path)


def test_cifar100_tree_uses_canonical_class_indices(tmp_path):
    classes = ["apple", "trout", "worm"]
    written = fx.write_index_tree(tmp_path / "cifar100-jpeg", classes, n_train=6, n_test=3)
    ds = load_dataset("cifar100", data_root=tmp_path)
    assert ds.num_classes == 100
    expected = np.array([CIFAR100_CLASSES.index(classes[y]) for y in written["train_labels"]])
    assert np.array_equal(ds.train_labels, expected)


# ---------------------------------------------------------------- MNIST


def test_mnist_idx_files(tmp_path):
    written = fx.write_mnist_idx(tmp_path)
    ds = load_dataset("mnist", data_root=tmp_path)
    assert_dataset_types(ds, channels=1)
    assert ds.train_images.shape == (10, 28, 28, 1) and ds.test_images.shape == (4, 28, 28, 1)
    assert np.array_equal(ds.train_images[..., 0], written["train_images"])
    assert np.array_equal(ds.test_labels, written["test_labels"])
    assert ds.classes == [str(d) for d in range(10)] and ds.labels_are_clean


def test_mnist_published_gz_files_are_read_in_place_by_parallel_runs(tmp_path):
    """The published MNIST/raw/*.gz are read as they are: nothing is unpacked into the data folder (which may be
    read-only), so parallel runs cannot race on half-written files (before, torchvision unpacked them and a second
    run read an empty file)."""
    from concurrent.futures import ThreadPoolExecutor

    written = fx.write_mnist_idx(tmp_path, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    before = sorted(p.name for p in raw.iterdir())
    raw.chmod(0o555)
    try:
        with ThreadPoolExecutor(4) as pool:
            loaded = list(pool.map(lambda _: load_dataset("mnist", data_root=tmp_path, download=True), range(4)))
    finally:
        raw.chmod(0o755)
    assert sorted(p.name for p in raw.iterdir()) == before
    for ds in loaded:
        assert np.array_equal(ds.train_images[..., 0], written["train_images"])
        assert np.array_equal(ds.test_labels, written["test_labels"])


def test_mnist_damaged_idx_file_is_one_line(tmp_path):
    fx.write_mnist_idx(tmp_path)
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", data_root=tmp_path)


def test_mnist_png_tree(tmp_path):
    written = fx.write_index_tree(tmp_path, [str(d) for d in range(10)], size=28, channels=1)
    ds = load_dataset("mnist", data_root=tmp_path)
    assert_dataset_types(ds, channels=1)
    assert np.array_equal(ds.train_images, written["train_images"])
    assert np.array_equal(ds.train_labels, written["train_labels"])


# ---------------------------------------------------------------- missing data and downloads


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10", ["cifar-10-batches-py", "cifar10-jpeg/train/<class>", "NLKIT_OFFLINE=1", "--data-root"]),
        ("cifar100", ["cifar-100-python", "cifar100-jpeg"]),
        ("mnist", ["MNIST/raw", "mnist-png"]),
        ("animal10n", ["training/", "animal10n/training"]),
        ("clothing1m", ["noisy_train.txt", "noisy_label_kv.txt", "annotations"]),
        ("red_mini_imagenet", ["split/clean_validation"]),
    ],
)
def test_missing_data_offline_says_where_it_looked(tmp_path, monkeypatch, name, expected):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to download while offline")

    for cls in ("CIFAR10", "CIFAR100", "MNIST"):
        monkeypatch.setattr(torchvision.datasets, cls, no_network)
    with pytest.raises(DataMissingError) as err:
        load_dataset(name, data_root=tmp_path / "empty")
    message = str(err.value)
    assert message.startswith(f"{name}: not found under {tmp_path / 'empty'}")
    for part in expected:
        assert part in message


def test_unusable_tree_is_named_in_the_missing_message(tmp_path):
    fx.write_index_tree(tmp_path, [str(d) for d in range(10)], size=28, channels=1)  # an MNIST tree
    with pytest.raises(DataMissingError, match=r"folders that are not class names \(0, 1, 2\)"):
        load_dataset("cifar10", data_root=tmp_path)


def test_download_failure_becomes_data_missing(tmp_path, monkeypatch):
    timeouts = []

    def unreachable(root, train, download):
        timeouts.append(socket.getdefaulttimeout())
        raise URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", unreachable)
    before = socket.getdefaulttimeout()
    with pytest.raises(DataMissingError, match=r"(?s)cifar10: not found.*download failed: URLError"):
        load_dataset("cifar10", data_root=tmp_path, download=True)
    assert timeouts == [30.0] and socket.getdefaulttimeout() == before


def test_download_is_used_then_read_from_disk(tmp_path, monkeypatch):
    monkeypatch.delenv("NLKIT_OFFLINE")
    written = {}

    def fake_cifar10(root, train, download):
        assert download and train
        written.update(fx.write_cifar10_pickles(tmp_path / "new"))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    ds = load_dataset("cifar10", data_root=tmp_path / "new")  # download=None: allowed when online
    assert np.array_equal(ds.train_images, written["train_images"])


# ---------------------------------------------------------------- real-world noisy datasets


def test_animal10n(tmp_path):
    names = fx.write_animal10n(tmp_path / "animal10n")
    ds = load_dataset("animal10n", data_root=tmp_path)
    assert_dataset_types(ds)
    assert ds.train_images.shape == (5, 64, 64, 3) and not ds.labels_are_clean
    assert ds.train_paths == [f"training/{n}" for n in names["training"]]
    assert ds.train_labels.tolist() == [0, 3, 3, 7, 9] and ds.test_labels.tolist() == [1, 5]
    assert ds.classes[9] == "guinea pig"
    fx.save_image(tmp_path / "animal10n" / "training" / "cat.jpg", np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(UserError, match=r"cat.jpg is not named '<label>_<name>.jpg'"):
        load_dataset("animal10n", data_root=tmp_path)


@pytest.mark.parametrize("original_layout", [False, True])
def test_clothing1m(tmp_path, original_layout):
    splits = fx.write_clothing1m(tmp_path, original_layout=original_layout)
    ds = load_dataset("clothing1m", data_root=tmp_path)
    assert_dataset_types(ds)
    assert ds.train_images.shape == (6, 64, 64, 3)  # mixed sizes resized to the default 64
    assert ds.train_labels.tolist() == [y for _, y in splits["train"]]
    assert ds.test_labels.tolist() == [y for _, y in splits["test"]]
    assert ds.extra["val_images"].shape == (3, 64, 64, 3)
    assert ds.extra["val_labels"].tolist() == [y for _, y in splits["val"]]
    assert ds.train_paths == [p for p, _ in splits["train"]]
    assert ds.classes == CLOTHING1M_CLASSES and not ds.labels_are_clean
    small = load_dataset("clothing1m", data_root=tmp_path, image_size=16, max_train=2)
    assert small.train_images.shape == (2, 16, 16, 3)


def test_clothing1m_missing_image(tmp_path):
    splits = fx.write_clothing1m(tmp_path)
    (tmp_path / splits["test"][1][0]).unlink()
    with pytest.raises(DataMissingError, match=r"1 of 13 image files .* are missing"):
        load_dataset("clothing1m", data_root=tmp_path)


def test_red_mini_imagenet(tmp_path):
    lists = fx.write_red_mini_imagenet(tmp_path / "red_mini_imagenet")
    ds = load_dataset("red_mini_imagenet", data_root=tmp_path, noise_rate=0.4)
    assert_dataset_types(ds)
    assert ds.train_images.shape == (5, 32, 32, 3)  # 84x84 files resized to the default 32
    assert ds.train_labels.tolist() == [y for _, y in lists[0.4]]
    assert ds.test_labels.tolist() == [y for _, y in lists["test"]]
    assert ds.classes[7] == "class_7" and ds.num_classes == 100 and not ds.labels_are_clean
    assert load_dataset("red_mini_imagenet", data_root=tmp_path).train_labels.tolist() == [y for _, y in lists[0.2]]
    names = [f"synset {k}" for k in range(100)]
    (tmp_path / "red_mini_imagenet" / "split" / "class_names.txt").write_text("\n".join(names) + "\n")
    assert load_dataset("red_mini_imagenet", data_root=tmp_path, image_size=84).classes == names
    with pytest.raises(DataMissingError, match=r"noise_rate=0.8 .* found: red_noise_nl_0.2, red_noise_nl_0.4"):
        load_dataset("red_mini_imagenet", data_root=tmp_path, noise_rate=0.8)


# ---------------------------------------------------------------- splits


def test_validation_split_is_stratified_deterministic_and_disjoint():
    labels = np.repeat(np.arange(4), [100, 60, 30, 10])
    train, val = validation_split(labels, val_fraction=0.1, seed=3)
    assert train.dtype == np.int64 and np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert np.intersect1d(train, val).size == 0 and np.array_equal(np.union1d(train, val), np.arange(200))
    assert np.bincount(labels[val]).tolist() == [10, 6, 3, 1]
    again = validation_split(labels, val_fraction=0.1, seed=3)
    assert np.array_equal(again[1], val)
    assert not np.array_equal(validation_split(labels, val_fraction=0.1, seed=4)[1], val)
    _, val_sized = validation_split(labels, val_size=40, stratified=False)
    assert val_sized.size == 40


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"val_fraction": 0.1, "val_size": 5}, {"val_fraction": 1.0}, {"val_size": 0}, {"val_size": 2.5}],
)
def test_validation_split_rejects_bad_arguments(kwargs):
    with pytest.raises(UserError):
        validation_split(np.repeat(np.arange(2), 10), **kwargs)


def test_holdout_tail():
    train, val = holdout_tail(50000, 5000)
    assert train[-1] == 44999 and val[0] == 45000 and val[-1] == 49999 and len(val) == 5000
    with pytest.raises(UserError):
        holdout_tail(10, 10)


# ---------------------------------------------------------------- DeviceBatcher


@pytest.fixture
def images():
    return np.random.default_rng(7).integers(0, 256, size=(50, 8, 6, 3), dtype=np.uint8)


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """Undo /255 (no mean/std) and go back to N H W C."""
    return torch.round(x * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def collect(batches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    batches = list(batches)
    assert all(isinstance(b, Batch) for b in batches)
    return (
        np.concatenate([as_uint8(b.x) for b in batches]),
        np.concatenate([b.y.numpy() for b in batches]),
        np.concatenate([b.idx.numpy() for b in batches]),
    )


def test_batcher_evaluation_mode_returns_dataset_in_order(images):
    labels = np.arange(50) % 5
    batcher = DeviceBatcher(images, labels, batch_size=16, shuffle=False)
    assert len(batcher) == 4
    x, y, idx = collect(batcher.epoch(0))
    assert np.array_equal(idx, np.arange(50)) and np.array_equal(x, images) and np.array_equal(y, labels)
    first = next(iter(batcher.epoch(0)))
    assert first.x.dtype == torch.float32 and first.x.shape == (16, 3, 8, 6) and first.y.dtype == torch.int64


def test_batcher_epochs_are_deterministic_and_cover_every_index(images):
    make = lambda: DeviceBatcher(images, np.arange(50), batch_size=16, crop_padding=2, flip=True, seed=11)  # noqa: E731
    a, b = make(), make()
    xa, ya, ia = collect(a.epoch(3))
    xb, yb, ib = collect(b.epoch(3))
    assert np.array_equal(xa, xb) and np.array_equal(ia, ib)
    assert np.array_equal(np.sort(ia), np.arange(50))
    assert np.array_equal(ya, ia)  # labels follow the sample indices
    _, _, i4 = collect(a.epoch(4))
    assert not np.array_equal(i4, ia)
    # iterating claims consecutive epochs; a batcher resumed at epoch 3 repeats epoch 3
    assert np.array_equal(collect(iter(a))[2], collect(b.epoch(0))[2]) and a.next_epoch == 1
    b.next_epoch = 3
    assert np.array_equal(collect(b)[2], ia)


def test_batcher_drop_last(images):
    batcher = DeviceBatcher(images, batch_size=16, drop_last=True)
    assert len(batcher) == 3
    batches = list(batcher.epoch(0))
    assert len(batches) == 3 and all(len(b.idx) == 16 for b in batches) and batches[0].y is None


def test_batcher_crop_is_a_window_of_the_zero_padded_image(images):
    p = 2
    batcher = DeviceBatcher(images, batch_size=50, crop_padding=p, shuffle=False, seed=1)
    batch = next(iter(batcher.epoch(0)))
    x, idx = as_uint8(batch.x), batch.idx.numpy()
    assert x.shape == images.shape
    padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = set()
    for i in range(50):
        matches = [
            (dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
            if np.array_equal(x[i], padded[idx[i], dy : dy + 8, dx : dx + 6])
        ]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 5  # offsets are drawn per sample


def test_batcher_reflect_padding(images):
    batcher = DeviceBatcher(images, batch_size=50, crop_padding=1, shuffle=False, padding_mode="reflect")
    x = as_uint8(next(iter(batcher.epoch(0))).x)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    assert all(
        any(np.array_equal(x[i], padded[i, dy : dy + 8, dx : dx + 6]) for dy in range(3) for dx in range(3))
        for i in range(50)
    )


def test_batcher_flip_mirrors_some_samples(images):
    batcher = DeviceBatcher(images, batch_size=50, flip=True, shuffle=False)
    x = as_uint8(next(iter(batcher.epoch(0))).x)
    flipped = [np.array_equal(x[i], images[i, :, ::-1]) for i in range(50)]
    kept = [np.array_equal(x[i], images[i]) for i in range(50)]
    assert all(f != k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 40


def test_batcher_normalises_and_channels_last(images):
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    batcher = DeviceBatcher(images, batch_size=8, shuffle=False, mean=mean, std=std, channels_last=True)
    x = next(iter(batcher.epoch(0))).x
    assert x.is_contiguous(memory_format=torch.channels_last)
    pixels = torch.from_numpy(images[:8]).permute(0, 3, 1, 2) / 255
    expected = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(x, expected, atol=1e-5)
    half = DeviceBatcher(images, batch_size=8, dtype=torch.bfloat16)
    assert next(iter(half)).x.dtype == torch.bfloat16


def test_batcher_labels_can_be_replaced(images):
    batcher = DeviceBatcher(images, np.zeros(50, dtype=np.int32), batch_size=10, shuffle=False)
    assert batcher.labels.dtype == torch.int64 and int(batcher.labels.sum()) == 0
    batcher.labels = torch.arange(50) * 2
    _, y, idx = collect(batcher.epoch(0))
    assert np.array_equal(y, idx * 2)
    with pytest.raises(UserError):
        batcher.labels = np.zeros(49, dtype=np.int64)
    with pytest.raises(UserError):
        DeviceBatcher(images.astype(np.float32), batch_size=4)
    with pytest.raises(UserError):
        DeviceBatcher(images, batch_size=4, mean=[0.1, 0.2])


def test_cifar10_from_a_tar_gz_of_the_jpeg_tree(tmp_path, monkeypatch):
    """The JPEG copy of CIFAR-10 ships as cifar10-jpeg.tar.gz; it is unpacked once into the cache."""
    import tarfile

    from PIL import Image

    from nlkit.data import CIFAR10_CLASSES, load_dataset

    monkeypatch.setenv("NLKIT_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "src" / "cifar10-jpeg"
    rng = np.random.default_rng(0)
    labels = np.array([3, 1, 4, 1, 5, 9])
    for i, y in enumerate(labels):
        folder = tree / "train" / CIFAR10_CLASSES[y]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:05d}.jpg")
    for k, y in enumerate([0, 2]):
        folder = tree / "test" / CIFAR10_CLASSES[y]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{k:04d}.jpg")
    root = tmp_path / "data"
    root.mkdir()
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(tree, arcname="cifar10-jpeg")
    ds = load_dataset("cifar10", data_root=root)
    np.testing.assert_array_equal(ds.train_labels, labels)
    assert ds.pixels == "jpeg" and ds.test_images.shape == (2, 32, 32, 3)
    assert len([p for p in (tmp_path / "cache" / "archives").iterdir() if p.is_dir()]) == 1
    assert load_dataset("cifar10", data_root=root).train_images.shape == (6, 32, 32, 3)  # reuses the extraction


def test_parallel_runs_unpack_an_archive_once(tmp_path, monkeypatch):
    """Two runs started together (`--jobs 2`) both need the archive: one unpacks it, the other waits and uses it
    (before, the second rename failed with 'Directory not empty' and its run failed)."""
    import tarfile
    import threading

    from nlkit.data.cache import extracted_archive

    monkeypatch.setenv("NLKIT_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "src" / "pack"
    tree.mkdir(parents=True)
    for i in range(200):
        (tree / f"{i}.bin").write_bytes(np.random.default_rng(i).bytes(2000))
    archive = tmp_path / "pack.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="pack")
    start, results, errors = threading.Barrier(3), [], []

    def unpack():
        start.wait()
        try:
            results.append(extracted_archive(archive))
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    workers = [threading.Thread(target=unpack) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors and len(set(results)) == 1
    assert len(list((results[0] / "pack").iterdir())) == 200
    assert [p.name for p in results[0].parent.iterdir() if p.is_dir()] == [results[0].name]  # no temp folder left
