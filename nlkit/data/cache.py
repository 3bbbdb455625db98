"""On-disk cache of decoded image files.

Decoding tens of thousands of JPEGs takes minutes; the decoded arrays are kept as one .npz per
file list, keyed by the folder's absolute path, the file count, the newest modification time and
a digest of the (ordered) file names, so any added, removed, renamed or touched file is a miss.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataMissingError
from ..io import entry_lock, expand_home
from .images import as_size, decode_files

# Bump when the decoding itself changes, so that old caches are not reused.
_CACHE_VERSION = 1


def cache_dir() -> Path:
    """`$NLKIT_CACHE` if set, else ~/.cache/nlkit."""
    env = os.environ.get("NLKIT_CACHE")
    return expand_home(env) if env else Path.home() / ".cache" / "nlkit"


def _files_key(root: Path, groups: dict[str, list[str]], settings: str, name: str) -> str:
    digest = hashlib.sha256()
    newest, count, missing = 0, 0, []
    for group, rel_paths in groups.items():
        digest.update(f"[{group}]\n".encode())
        for rel in rel_paths:
            digest.update(rel.encode() + b"\n")
            try:
                newest = max(newest, os.stat(root / rel).st_mtime_ns)
            except FileNotFoundError:
                missing.append(rel)
            count += 1
    if missing:
        raise DataMissingError(
            f"{name}: {len(missing)} of {count} image files listed for {root} are missing, e.g. {root / missing[0]}"
        )
    header = f"v{_CACHE_VERSION}|{root.resolve()}|{count}|{newest}|{settings}|"
    return hashlib.sha256(header.encode() + digest.digest()).hexdigest()[:24]


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"ignoring unreadable cache file {path}: {err}", stacklevel=3)
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # temp file + os.replace: a crash or a concurrent reader never sees half a file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    except OSError as err:
        warnings.warn(f"cannot write the image cache in {path.parent} ({err}); set NLKIT_CACHE", stacklevel=3)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as err:  # a full disk costs the next load time, not this one
        Path(tmp).unlink(missing_ok=True)
        warnings.warn(f"cannot write the image cache {path} ({err})", stacklevel=3)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decode_cached(
    name: str, root: Path, groups: dict[str, list[str]], *, channels: int = 3, image_size=None
) -> dict[str, np.ndarray]:
    """Decode every group of files (paths relative to `root`) into a uint8 array, via the cache.

    Returns {group: (N, H, W, channels) array}.
    """
    size = as_size(image_size)
    key = _files_key(root, groups, f"c{channels}|size{size}", name)
    path = cache_dir() / f"{name}-{key}.npz"
    arrays = _read_cache(path)
    if arrays is not None and set(arrays) == set(groups):
        return arrays
    with entry_lock(path) as locked:  # a second process waits for this decode instead of repeating it
        if locked:
            arrays = _read_cache(path)
            if arrays is not None and set(arrays) == set(groups):
                return arrays
        arrays = {
            group: decode_files(
                [root / rel for rel in rel_paths], channels=channels, image_size=size, desc=f"{name} {group}"
            )
            for group, rel_paths in groups.items()
        }
        _write_cache(path, arrays)
    return arrays


def extracted_archive(archive: Path) -> Path:
    """Unpack a .tar.gz (e.g. the JPEG copy of CIFAR-10) once into the cache and return that folder.

    The folder is named after the archive's size and mtime and is renamed into place only when complete,
    so an interrupted extraction is redone rather than used."""
    import shutil
    import tarfile

    stat = archive.stat()
    target = cache_dir() / "archives" / f"{archive.name.split('.')[0]}-{stat.st_size}-{stat.st_mtime_ns}"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with entry_lock(target.parent / f".{target.name}"):  # parallel runs wait for one extraction
        if target.is_dir():
            return target
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():  # another process won the race (the lock could not be taken here)
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target
