"""The EDM / StyleGAN dataset format that TDSM's code reads and its authors publish labels for: an uncompressed ZIP
of PNGs (image i at `<first 5 of 8 digits>/img<8 digits>.png`) with `dataset.json` holding
`{"labels": [[path, label], ...]}`. Writing one lets the kit's noisy labels be used with the official code, and
reading one lets the authors' published `dataset.json` labels be used by the kit."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import atomic_write


def edm_image_name(i: int) -> str:
    name = f"{i:08d}"
    return f"{name[:5]}/img{name}.png"


def write_edm_zip(path, images: np.ndarray, labels=None) -> Path:
    """uint8 images (N, H, W, C), C = 1 or 3, and int labels (or None) to an EDM dataset ZIP."""
    from PIL import Image

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise UserError(f"EDM datasets hold uint8 (N, H, W, 1|3) images, got {images.dtype} {images.shape}")
    names = [edm_image_name(i) for i in range(len(images))]

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for name, img in zip(names, images):
                buf = io.BytesIO()
                Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="png", compress_level=0)
                z.writestr(name, buf.getvalue())
            meta = {"labels": None if labels is None else [[n, int(y)] for n, y in zip(names, np.asarray(labels))]}
            z.writestr("dataset.json", json.dumps(meta))

    atomic_write(path, write)
    return Path(path)


def read_edm_labels(source) -> dict[str, int] | None:
    """The labels of a `dataset.json` (a file, or an EDM ZIP holding one) as {image path: label}."""
    source = Path(source)
    try:
        if source.suffix == ".zip":
            with zipfile.ZipFile(source) as z:
                meta = json.loads(z.read("dataset.json"))
        else:
            meta = json.loads(source.read_text())
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise UserError(f"cannot read EDM labels from {source}: {err}") from None
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if labels is None:
        return None
    return {str(name): int(y) for name, y in labels}


def read_edm_zip(path) -> tuple[np.ndarray, np.ndarray | None]:
    """(uint8 images (N, H, W, C) in file-name order, int64 labels or None) from an EDM dataset ZIP."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise UserError(f"EDM dataset not found: {path}")
    labels = read_edm_labels(path)
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".png"))
        images = [np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in names]
    arr = np.stack(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if labels is None:
        return arr, None
    missing = [n for n in names if n not in labels]
    if missing:
        raise UserError(f"{path}: dataset.json has no label for {missing[0]} (and {len(missing) - 1} more)")
    return arr, np.asarray([labels[n] for n in names], dtype=np.int64)
