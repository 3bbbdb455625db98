"""Turning image files and arrays into uint8 (N, H, W, C) arrays of one size."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
JPEG_SUFFIXES = (".jpg", ".jpeg")

# Files decoded per thread task: large enough that scheduling costs nothing, small enough for a smooth bar.
_CHUNK = 256


def as_size(image_size) -> tuple[int, int] | None:
    """`None`, an int (square) or (height, width) -> (height, width) or None."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        size = (int(image_size), int(image_size))
    else:
        try:
            size = tuple(int(s) for s in image_size)
        except (TypeError, ValueError):
            raise UserError(f"image_size must be an int or (height, width), got {image_size!r}") from None
        if len(size) != 2:
            raise UserError(f"image_size must be an int or (height, width), got {image_size!r}")
    if min(size) < 1:
        raise UserError(f"image_size must be positive, got {image_size!r}")
    return size


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def any_jpeg(paths) -> bool:
    return any(Path(p).suffix.lower() in JPEG_SUFFIXES for p in paths)


def _pil_mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def resize_images(images: np.ndarray, image_size) -> np.ndarray:
    """Resize uint8 NHWC images with PIL's bilinear filter; unchanged when already that size."""
    size = as_size(image_size)
    if size is None or images.shape[1:3] == size:
        return images
    n, _, _, c = images.shape
    out = np.empty((n, size[0], size[1], c), dtype=np.uint8)
    for i in range(n):
        img = Image.fromarray(images[i, :, :, 0] if c == 1 else images[i])
        resized = np.asarray(img.resize((size[1], size[0]), Image.BILINEAR))
        out[i] = resized.reshape(size[0], size[1], c)
    return out


def _read_image(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if size is not None:
                # JPEG can decode straight to 1/2, 1/4 or 1/8 scale (never below `size`): for the
                # large real-world datasets this is several times faster than a full decode.
                img.draft(None, (size[1], size[0]))
            img = img.convert(mode)
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img)
    except OSError as err:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise UserError(f"cannot read image {path}: {err}") from None
    return arr[:, :, None] if arr.ndim == 2 else arr


def decode_files(paths: list[Path], *, channels: int = 3, image_size=None, desc: str = "decoding") -> np.ndarray:
    """Decode image files into one uint8 (N, H, W, channels) array, in the order given.

    Without `image_size` every file must have the size of the first one. Decoding runs on a few
    threads (PIL releases the GIL while decoding) behind a tqdm progress bar.
    """
    from tqdm.auto import tqdm

    mode = _pil_mode(channels)
    size = as_size(image_size)
    if not paths:
        h, w = size or (0, 0)
        return np.zeros((0, h, w, channels), dtype=np.uint8)
    first = _read_image(paths[0], mode, size)
    out = np.empty((len(paths),) + first.shape, dtype=np.uint8)

    def decode_chunk(start: int) -> int:
        stop = min(start + _CHUNK, len(paths))
        for i in range(start, stop):
            arr = first if i == 0 else _read_image(paths[i], mode, size)
            if arr.shape != first.shape:
                raise UserError(
                    f"{paths[i]} is {arr.shape[1]}x{arr.shape[0]} but {paths[0]} is {first.shape[1]}x{first.shape[0]}; "
                    "pass image_size to resize all images to one size"
                )
            out[i] = arr
        return stop - start

    starts = range(0, len(paths), _CHUNK)
    workers = min(8, os.cpu_count() or 1, len(starts))
    with tqdm(total=len(paths), desc=desc, unit="img", leave=False) as bar:
        if workers <= 1:
            for start in starts:
                bar.update(decode_chunk(start))
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                for done in as_completed([pool.submit(decode_chunk, s) for s in starts]):
                    bar.update(done.result())
            finally:
                # on a bad file, stop at once instead of decoding the rest of a million images
                pool.shutdown(wait=True, cancel_futures=True)
    return out


def downsample(images: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool uint8 N x H x W x C images by an integer factor (a reduced CPU profile's cheaper pixels)."""
    if factor == 1:
        return images
    n, h, w, c = images.shape
    if factor < 1 or h % factor or w % factor:
        raise UserError(f"downsample factor {factor} must divide the image size {h}x{w}")
    pooled = images.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return np.rint(pooled).astype(np.uint8)
