"""Which finished runs are current: run folders, run keys and the metrics of a run that finished with its cell's
current params.

A dependent run's key folds in the dependency's params hash and the artefact's content hash (artefacts.content_hash),
so retraining the dependency makes every run that used it stale, unless the retrain gave the same weights. An
artefact that no longer reads back makes the dependency not current (artefacts.damaged_artefact), so it runs again.
A published file's name and content hash fold into the key the same way, so adding, replacing or removing the file
makes the runs that used the other source stale.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, short_repr, short_text
from ..io import BadJsonValue, loads_strict, project_path
from ..methods.contract import PROTOCOL_METRICS, ran_identity
from .artefacts import ArtefactUnreadable, content_hash, damaged_artefact
from .needs import DependencyMissing, dependency_cell, first_seed, need_entries, published_file
from .params import params_hash, repo_root


def outputs_root() -> Path:
    return repo_root() / "outputs"


def run_dir(resolved: dict, seed: int, root: Path | None = None) -> Path:
    return (root or outputs_root()) / resolved["profile"] / resolved["paper"] / resolved["cell_id"] / f"seed{seed}"


def metrics_path(resolved: dict, seed: int, root: Path | None = None) -> Path:
    return run_dir(resolved, seed, root) / "metrics.json"


def current_metrics(resolved: dict, seed: int, root: Path | None = None, *, warn: bool = False,
                    data_root=None) -> dict | None:
    """The run's metrics when it finished with the cell's current params (and, for a dependent cell, the current
    artefacts of what it needs, published files looked up as with `data_root`); None otherwise. An unreadable
    metrics.json counts as not run (with a warning)."""
    path = metrics_path(resolved, seed, root)
    if not path.is_file():
        return None
    try:
        metrics = loads_strict(path.read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
    except BadJsonValue as e:
        if warn:
            warnings.warn(f"counting {path} as not run: {short_text(str(e), 200)}", stacklevel=2)
        return None
    except (OSError, ValueError, RecursionError) as e:
        if warn:
            warnings.warn(f"skipping unreadable {path}: {e}", stacklevel=2)
        return None
    problem = (bad_metric_values(metrics, resolved) or bad_fields(metrics)
               or other_run(metrics.get("ran"), resolved, seed) or damaged_artefact(path.parent, metrics))
    if problem:
        if warn:
            warnings.warn(f"counting {path} as not run: {problem}", stacklevel=2)
        return None
    try:
        recorded = metrics.get("params_hash")
        if recorded == run_key(resolved, seed, root, data_root):
            return metrics
        # a run recorded before torch artefacts were hashed by content fingerprinted them by their file bytes
        if need_entries(resolved) and recorded == run_key(resolved, seed, root, data_root, file_bytes=True):
            return metrics
        return None
    except UserError:  # what it needs is not done, or its `needs:` name a cell that is not there: not current
        return None


def metric_names(resolved: dict) -> list[str]:
    """The metrics a cell's tables read, and the protocol ones every run reports."""
    names = list(PROTOCOL_METRICS)
    names.append(resolved.get("metric"))
    names += [entry.get("metric") for entry in resolved.get("tables") or [] if isinstance(entry, dict)]
    return [n for n in dict.fromkeys(names) if isinstance(n, str)]


def bad_metric_values(metrics: dict, resolved: dict) -> str:
    """'' when every metric the cell's tables read is a number or null; else which is not (a damaged or
    hand-edited metrics.json, e.g. "acc_last": "high", must not reach the tables)."""
    bad = [f"{name} = {short_repr(metrics[name])}" for name in metric_names(resolved)
           if metrics.get(name) is not None and (isinstance(metrics[name], bool)
                                                 or not isinstance(metrics[name], (int, float)))]
    return f"metric values must be numbers or null: {', '.join(bad)}" if bad else ""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# The other fields the tables and currency read, each with what it must be ('' when it is), None always allowed
_FIELD_CHECKS = {
    "wall_seconds": lambda v: "" if _is_number(v) and v >= 0 else "must be a number of seconds >= 0",
    "device": lambda v: "" if isinstance(v, str) else "must be a string",
    "params_hash": lambda v: "" if isinstance(v, str) else "must be a string",
    "needs": lambda v: "" if isinstance(v, dict) and all(isinstance(fp, dict) for fp in v.values())
    else "must map each artefact to its fingerprint",
    "artefacts": lambda v: "" if isinstance(v, dict) and all(isinstance(f, str) for f in v.values())
    else "must map each artefact to a file name",
    "ran": lambda v: "" if isinstance(v, dict) else "must be a mapping",
}


def bad_fields(metrics: dict) -> str:
    """'' when every other field the tables and currency read has its type and range (a hand-edited or damaged
    metrics.json, e.g. `wall_seconds: "x"` or `needs: "x"`, must not crash them); else the first that does not."""
    for name, check in _FIELD_CHECKS.items():
        if metrics.get(name) is not None and (problem := check(metrics[name])):
            return f"{name} {problem} (got {short_repr(metrics[name])})"
    return ""


def other_run(ran, resolved: dict, seed: int) -> str:
    """'' when the identity a run recorded (`ran`: contract.ran_identity; absent in runs recorded before it
    existed) is that of this cell and seed; else one line saying what the notebook ran instead."""
    if ran is None:
        return ""
    wanted = ran_identity(resolved, seed)
    if not isinstance(ran, dict):
        return f"its recorded identity is not a mapping (got {short_repr(ran)})"
    if (ran.get("profile"), ran.get("seed")) == (wanted["profile"], wanted["seed"]) \
            and _same_file(ran.get("params_file"), wanted["params_file"]):
        return ""

    def name(r):
        profile = f" ({short_repr(r.get('profile'))} profile)" if ran.get("profile") != wanted["profile"] else ""
        return f"{short_text(str(r.get('params_file')), 200)} seed {short_repr(r.get('seed'))}{profile}"

    return f"the notebook ran {name(ran)}, not {name(wanted)}"


def _same_file(a, b) -> bool:
    """Whether two recorded params files are one file: the same cell loaded by a relative and by an absolute path
    (or through a symlinked params/) is recorded under two spellings."""
    if a == b:
        return True
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    try:
        return project_path(a).resolve() == project_path(b).resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def is_current(resolved: dict, seed: int, root: Path | None = None, *, data_root=None) -> bool:
    return current_metrics(resolved, seed, root, data_root=data_root) is not None


@dataclass(frozen=True)
class Resolved:
    paths: dict        # artefact name -> file
    fingerprint: dict  # artefact name -> {"cell", "params_hash", "sha256"} or {"published", "sha256"}


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
    paths, fingerprint = {}, {}
    for name, (ref, published) in need_entries(resolved).items():
        found = published_file(published, data_root) if published else None
        if found is not None:
            paths[name] = found
            # a published file is fixed: its sha256 is that of its bytes, what its publisher would quote
            fingerprint[name] = {"published": published, "sha256": _need_hash(found, published, True)}
            continue
        dep = dependency_cell(ref, resolved["profile"])
        seed = first_seed(dep)
        if not is_current(dep, seed, root, data_root=data_root):
            raise DependencyMissing(f"needs {ref} ({resolved['profile']} profile), which has not finished with its "
                                    f"current params; run it first (make reproduce runs it before this cell)")
        folder = run_dir(dep, seed, root)
        metrics = loads_strict((folder / "metrics.json").read_text())
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
