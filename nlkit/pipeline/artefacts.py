"""Artefacts of finished runs: whether a zip-based one still reads back, and the content hash a dependent run's key
is built from (a torch file by the tensors and values it holds, not its bytes)."""

from __future__ import annotations

import hashlib
import zipfile
from functools import lru_cache
from pathlib import Path

from ..errors import UserError


# artefact formats that are zip archives: a truncated one no longer opens (its directory is at the end)
ZIP_SUFFIXES = (".pt", ".pth", ".npz", ".zip")


def damaged_artefact(folder: Path, metrics: dict) -> str:
    """'' when every zip-based artefact the run lists (torch's .pt, numpy's .npz) that is present reads back: its
    members' checksums match (a truncated or overwritten file fails) and it loads with the safe loaders (a readable
    zip holding a pickled payload, or not laid out as torch or numpy write it, fails); else which does not. A
    damaged artefact makes the run not current, so it is run again instead of failing every dependent run.
    Artefacts absent altogether (large weights not kept) are not checked here: a dependent that needs one says
    so."""
    artefacts = metrics.get("artefacts")
    for file in (artefacts or {}).values() if isinstance(artefacts, dict) else ():
        path = folder / str(file)
        if path.suffix in ZIP_SUFFIXES and path.is_file():
            st = path.stat()
            problem = _zip_problem(str(path), st.st_mtime_ns, st.st_size)
            if problem:
                return f"artefact {path.name} does not read back ({problem})"
            problem = _load_problem(path)
            if problem:
                return f"artefact {path.name} does not load ({problem})"
    return ""


def _load_problem(path: Path) -> str:
    """'' when the artefact loads safely: a torch file with weights_only (what content_hash hashes; cached), an
    .npz without pickles; else why not."""
    if path.suffix in TORCH_SUFFIXES:
        try:
            content_hash(path)
        except ArtefactUnreadable as e:
            return " ".join(str(e).split())[:300]
        return ""
    if path.suffix == ".npz":
        st = path.stat()
        return _npz_problem(str(path), st.st_mtime_ns, st.st_size)
    return ""


@lru_cache(maxsize=64)
def _npz_problem(path: str, mtime_ns: int, size: int) -> str:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            for name in z.files:
                z[name]
    except Exception as e:  # noqa: BLE001 - an object array (a pickle), a bad header: it does not load
        return " ".join(str(e).split())[:200] or type(e).__name__
    return ""


@lru_cache(maxsize=256)
def _zip_problem(path: str, mtime_ns: int, size: int) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        return f"member {bad} is damaged" if bad else ""
    except Exception as e:  # noqa: BLE001 - whatever stops it reading back (truncation, bad headers, zlib) is damage
        return " ".join(str(e).split())[:200] or type(e).__name__


# torch files whose hash is taken over what they hold, not their bytes (see content_hash)
TORCH_SUFFIXES = (".pt", ".pth")


class ArtefactUnreadable(UserError):
    """A torch artefact that does not load back (truncated, damaged, not a torch file)."""


@lru_cache(maxsize=256)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=64)
def _tensor_sha256(path: str, mtime_ns: int, size: int) -> str:
    from ..safeload import torch_load

    try:
        obj = torch_load(path, "an artefact")
    except UserError as e:
        raise ArtefactUnreadable(str(e)) from None
    h = hashlib.sha256()
    _hash_value(h, obj)
    return h.hexdigest()


def _hash_value(h, value) -> None:
    """Feed a loaded torch file's content to `h`: mappings in key order, tensors as dtype, shape and bytes, other
    values by their repr. The file's own bytes are not used: torch.save records the name it wrote to (a temporary
    one under atomic_write), so a bit-identical retrain would otherwise hash differently."""
    import torch

    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        h.update(f"D{len(value)}".encode())
        for key in sorted(value, key=str):
            h.update(f"K{key!r}".encode())
            _hash_value(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"L{type(value).__name__}{len(value)}".encode())
        for item in value:
            _hash_value(h, item)
    else:
        h.update(f"V{value!r}".encode())


def content_hash(path: Path, *, file_bytes: bool = False) -> str:
    """The sha256 of an artefact: of the tensors and values a torch file holds (ArtefactUnreadable when it does
    not load), of the bytes of any other file (or of every file with `file_bytes`, how runs recorded before
    content hashing fingerprinted their needs)."""
    st = path.stat()
    if path.suffix in TORCH_SUFFIXES and not file_bytes:
        return _tensor_sha256(str(path), st.st_mtime_ns, st.st_size)
    return _sha256(str(path), st.st_mtime_ns, st.st_size)
