"""Cell dependencies: `needs: {<artefact>: <paper>/<cell>}` in a params file.

A run that needs another cell's artefact (an LRA cell the SimCLR encoder, a TDSM cell its noisy-label classifier)
gets the file that the dependency's finished run listed under that name in its `metrics.json`. The dependency's
params hash and the artefact's content hash fold into the dependent's run key, so retraining the dependency makes
every run that used it stale, unless the retrain gave the same weights: a torch artefact is hashed by the tensors
and values it holds, not its bytes (see content_hash). The dependency's first seed provides the artefact; an
artefact that no longer reads back makes the dependency not current (runner.damaged_artefact), so it runs again.

An artefact may also come published (e.g. the authors' encoder weights):
`needs: {<artefact>: {cell: <paper>/<cell>, published: <file name>}}`. When that file lies in one of the weights
roots (`weights_roots`) it is used and the cell is not needed; its name and content hash fold into the run key, so
adding, replacing or removing the file makes the runs that used the other source stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UserError
from ..io import expand_home
from .params import load_cell, params_hash, repo_root

WEIGHTS_FOLDER = "weights"


class DependencyMissing(UserError):
    """A cell this run needs has not finished under the same profile (or left no such artefact)."""


@dataclass(frozen=True)
class Resolved:
    paths: dict        # artefact name -> file
    fingerprint: dict  # artefact name -> {"cell", "params_hash", "sha256"} or {"published", "sha256"}


def weights_roots(data_root=None) -> list[Path]:
    """Where published weights are looked up, first match wins: $NLKIT_WEIGHTS_ROOT, <data_root>/weights (the
    --data-root of the run), <default data root>/weights ($NLKIT_DATA_ROOT or ./data)."""
    from ..data import default_data_root

    roots = [expand_home(os.environ["NLKIT_WEIGHTS_ROOT"])] if os.environ.get("NLKIT_WEIGHTS_ROOT") else []
    if data_root:
        roots.append(expand_home(data_root) / WEIGHTS_FOLDER)
    roots.append(Path(default_data_root()) / WEIGHTS_FOLDER)
    return roots


def published_file(name: str, data_root=None) -> Path | None:
    """The published file `name` in the first weights root holding it, else None."""
    return next((root / name for root in weights_roots(data_root) if (root / name).is_file()), None)


def need_entries(resolved: dict) -> dict[str, tuple[str, str | None]]:
    """The cell's `needs` as {artefact: (paper/cell, published file name or None)}; an entry set to null (e.g. by
    a profile overlay that swaps the encoder for PCA) is no dependency."""
    needs = resolved.get("needs") or {}
    if not isinstance(needs, dict):
        raise UserError(f"{resolved.get('params_file')}: `needs` must map an artefact name to 'paper/cell'")
    out = {}
    for name, entry in needs.items():
        if entry is None:
            continue
        ref, published = (entry.get("cell"), entry.get("published")) if isinstance(entry, dict) else (entry, None)
        if not isinstance(ref, str) or ref.count("/") != 1 or any(p in ("", ".", "..") for p in ref.split("/")):
            raise UserError(f"{resolved.get('params_file')}: needs.{name} must be 'paper/cell', got {ref!r}")
        out[str(name)] = (ref, published)
    return out


def needs_of(resolved: dict, data_root=None) -> dict[str, str]:
    """The cells that must have run first, as {artefact: "paper/cell"}: every need whose published file (if it
    names one) is not in the weights roots."""
    return {name: ref for name, (ref, published) in need_entries(resolved).items()
            if not (published and published_file(published, data_root))}


def dependency_cell(ref: str, profile: str) -> dict:
    paper, cell = ref.split("/")
    path = repo_root() / "params" / paper / f"{cell}.yaml"
    if not path.parent.is_dir():
        raise UserError(f"needed cell {ref} names an unknown paper {paper!r} (no params/{paper}/)")
    if not path.is_file():
        raise UserError(f"needed cell {ref} has no params file ({path.relative_to(repo_root())})")
    return load_cell(path, profile)


def first_seed(resolved: dict) -> int:
    return int((resolved.get("seeds") or [0])[0])


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


_RESOLVING = threading.local()   # the cells whose needs are being resolved in this thread, outermost first


def resolve_needs(resolved: dict, root: Path | None = None, data_root=None, *, file_bytes: bool = False) -> Resolved:
    """Files and fingerprints of everything the cell needs; DependencyMissing when one is not (currently) done, or
    when the needs lead back to the cell (a cycle: never done). `file_bytes`: fingerprint by file bytes (see
    content_hash)."""
    chain = getattr(_RESOLVING, "chain", ())
    me = f"{resolved['paper']}/{resolved['cell_id']}"
    if me in chain:
        raise DependencyMissing(f"its needs form a cycle: {' → '.join(chain[chain.index(me):] + (me,))}")
    _RESOLVING.chain = (*chain, me)
    try:
        return _resolve_needs(resolved, root, data_root, file_bytes)
    finally:
        _RESOLVING.chain = chain


def _resolve_needs(resolved: dict, root: Path | None, data_root, file_bytes: bool) -> Resolved:
    from .runner import is_current, run_dir

    paths, fingerprint = {}, {}
    for name, (ref, published) in need_entries(resolved).items():
        found = published_file(published, data_root) if published else None
        if found is not None:
            paths[name] = found
            fingerprint[name] = {"published": published, "sha256": _need_hash(found, published, file_bytes)}
            continue
        dep = dependency_cell(ref, resolved["profile"])
        seed = first_seed(dep)
        if not is_current(dep, seed, root, data_root=data_root):
            raise DependencyMissing(f"needs {ref} ({resolved['profile']} profile), which has not finished with its "
                                    f"current params; run it first (make reproduce runs it before this cell)")
        folder = run_dir(dep, seed, root)
        metrics = json.loads((folder / "metrics.json").read_text())
        artefact = (metrics.get("artefacts") or {}).get(name)
        if not artefact or not (folder / artefact).is_file():
            raise DependencyMissing(f"needs the artefact {name!r} of {ref}, but its run left none")
        path = folder / artefact
        paths[name] = path
        fingerprint[name] = {"cell": ref, "params_hash": metrics["params_hash"],
                             "sha256": _need_hash(path, ref, file_bytes)}
    return Resolved(paths, fingerprint)


def _need_hash(path: Path, source: str, file_bytes: bool) -> str:
    try:
        return content_hash(path, file_bytes=file_bytes)
    except ArtefactUnreadable as e:
        raise DependencyMissing(f"needs {source}, whose artefact does not read back ({e})") from None


def run_key(resolved: dict, seed: int, root: Path | None = None, data_root=None, *, file_bytes: bool = False) -> str:
    """What makes a finished run current: its params and seed, and for a dependent cell the params and artefact
    content of what it needs (or the published file's name and content). Raises DependencyMissing when a
    dependency is not done. `file_bytes`: the key as runs recorded it before torch artefacts were hashed by
    content (their file bytes), so that those runs stay current while their artefacts are unchanged."""
    key = params_hash(resolved, seed)
    if not need_entries(resolved):
        return key
    fingerprint = resolve_needs(resolved, root, data_root, file_bytes=file_bytes).fingerprint
    blob = json.dumps({"params_hash": key, "needs": fingerprint}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
