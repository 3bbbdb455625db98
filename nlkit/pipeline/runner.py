"""Run one table cell for one seed: execute the paper's notebook (papermill, or directly without Jupyter)
and write `metrics.json` last and atomically, so its presence means the run finished."""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import SEED_LIMIT, DataMissingError, UserError, describe_os_error
from ..io import atomic_write, atomic_write_json
from ..methods.contract import PROTOCOL_METRICS
from .deps import DependencyMissing, need_entries, resolve_needs, run_key
from .executors import (
    KernelDied,
    execute_direct,
    execute_papermill,
    notebook_path,
    papermill_available,
    portable,
)
from .locks import LOCK_NAME, run_lock
from .params import load_cell, repo_root

# artefact formats that are zip archives: a truncated one no longer opens (its directory is at the end)
ZIP_SUFFIXES = (".pt", ".pth", ".npz", ".zip")


@dataclass
class RunResult:
    cell: str
    seed: int
    status: str          # done | skipped | failed | not_run | stopped (time budget; resumable) | busy (another
    #                      process is running it)
    out_dir: Path
    seconds: float = 0.0
    message: str = ""


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
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        if warn:
            warnings.warn(f"skipping unreadable {path}: {e}", stacklevel=2)
        return None
    problem = bad_metric_values(metrics, resolved) or damaged_artefact(path.parent, metrics)
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
    bad = [f"{name} = {metrics[name]!r}"[:80] for name in metric_names(resolved)
           if metrics.get(name) is not None and (isinstance(metrics[name], bool)
                                                 or not isinstance(metrics[name], (int, float)))]
    return f"metric values must be numbers or null: {', '.join(bad)}" if bad else ""


def damaged_artefact(folder: Path, metrics: dict) -> str:
    """'' when every zip-based artefact the run lists (torch's .pt, numpy's .npz) that is present reads back: its
    members' checksums match (a truncated or overwritten file fails); else which does not. A damaged artefact makes
    the run not current, so it is run again instead of failing every dependent run. Artefacts absent altogether
    (large weights not kept) are not checked here: a dependent that needs one says so."""
    artefacts = metrics.get("artefacts")
    for file in (artefacts or {}).values() if isinstance(artefacts, dict) else ():
        path = folder / str(file)
        if path.suffix in ZIP_SUFFIXES and path.is_file():
            st = path.stat()
            problem = _zip_problem(str(path), st.st_mtime_ns, st.st_size)
            if problem:
                return f"artefact {path.name} does not read back ({problem})"
    return ""


@functools.lru_cache(maxsize=256)
def _zip_problem(path: str, mtime_ns: int, size: int) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
        return f"member {bad} is damaged" if bad else ""
    except Exception as e:  # noqa: BLE001 - whatever stops it reading back (truncation, bad headers, zlib) is damage
        return " ".join(str(e).split())[:200] or type(e).__name__


def is_current(resolved: dict, seed: int, root: Path | None = None, *, data_root=None) -> bool:
    return current_metrics(resolved, seed, root, data_root=data_root) is not None


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()})"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo_root()), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def check_outputs_writable(profile: str, root: Path | None = None) -> None:
    """One clear line, before anything runs, when outputs/ cannot be written (read-only, full, not ours)."""
    folder = (root or outputs_root()) / profile
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise UserError(f"cannot write under {folder} ({e.strerror or e}); nothing was run") from None


def run_cell(params_file, profile: str = "smoke", seed: int | None = None, *, data_root=None, noise_root=None,
             executor: str = "auto", force: bool = False, root: Path | None = None) -> list[RunResult]:
    """Run one cell for one seed (or every seed its params list). Finished, current runs are skipped."""
    resolved = load_cell(params_file, profile)
    if seed is not None and not (isinstance(seed, int) and 0 <= seed < SEED_LIMIT):
        raise UserError(f"--seed must be an integer in [0, 2**32), got {seed}")
    check_outputs_writable(profile, root)
    seeds = [seed] if seed is not None else list(resolved.get("seeds") or [0])
    return [run_one(resolved, s, data_root=data_root, noise_root=noise_root, executor=executor, force=force,
                    root=root) for s in seeds]


def run_one(resolved: dict, seed: int, *, data_root=None, noise_root=None, executor: str = "auto",
            force: bool = False, root: Path | None = None) -> RunResult:
    """One run, under its lock: another process running it makes this one skip it ('busy'); a full disk or an
    unwritable folder fails this run with one line naming the path, and the caller goes on with the others."""
    out_dir = run_dir(resolved, seed, root)
    label = f"{resolved['paper']}/{resolved['cell_id']} seed {seed}"
    if resolved.get("skip"):  # a cell this profile does not run (e.g. a paper-scale cell under smoke)
        return RunResult(label, seed, "not_run", out_dir, 0.0, f"not run under {resolved['profile']}: {resolved['skip']}")
    if not force and is_current(resolved, seed, root, data_root=data_root):
        return RunResult(label, seed, "skipped", out_dir)
    t0 = time.perf_counter()
    try:
        with run_lock(out_dir) as held:
            if not held:
                return RunResult(label, seed, "busy", out_dir, 0.0,
                                 f"another process is running it (lock {out_dir / LOCK_NAME}); skipped here")
            # finished by another process meanwhile
            if not force and is_current(resolved, seed, root, data_root=data_root):
                return RunResult(label, seed, "skipped", out_dir)
            return _run_locked(resolved, seed, out_dir, label, data_root=data_root, noise_root=noise_root,
                               executor=executor, force=force, root=root)
    except OSError as e:  # ENOSPC, EACCES, EROFS ... while preparing the folder or writing metrics.json
        message = describe_os_error(e, where=out_dir)
        _write_error(out_dir, message + "\n")
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, message)


def _run_locked(resolved: dict, seed: int, out_dir: Path, label: str, *, data_root, noise_root, executor: str,
                force: bool, root: Path | None) -> RunResult:
    metrics_file = out_dir / "metrics.json"
    if metrics_file.exists() and not (force and is_current(resolved, seed, root, data_root=data_root)):
        # stale (other params): removed first, so a crash cannot leave it looking current. A forced rerun of a
        # current run keeps it until the new one replaces it.
        metrics_file.unlink()
    results_file = out_dir / "results.json"
    if results_file.exists():
        results_file.unlink()
    try:
        needs = resolve_needs(resolved, root, data_root)
        key = run_key(resolved, seed, root, data_root)
    except DependencyMissing as e:
        _write_error(out_dir, f"not run: {e}")
        return RunResult(label, seed, "not_run", out_dir, 0.0, str(e))
    _fresh_checkpoints(out_dir, key, discard=force)
    if executor == "auto":
        executor = "papermill" if papermill_available() else "direct"
    # Notebooks run with the project folder as working directory: repo-relative paths keep executed copies portable.
    parameters = {"params_file": resolved["params_file"], "profile": resolved["profile"], "seed": int(seed),
                  "out_dir": portable(out_dir), "data_root": portable(data_root) if data_root else None,
                  "noise_root": portable(noise_root) if noise_root else None}
    if needs.paths:
        parameters["needs"] = {name: portable(path) for name, path in needs.paths.items()}
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    try:
        notebook = notebook_path(resolved)
        if executor == "papermill":
            execute_papermill(notebook, out_dir, parameters, threads=run_threads(resolved),
                              timeout_min=(resolved.get("resources") or {}).get("timeout_min"))
        else:
            execute_direct(notebook, out_dir, parameters, threads=run_threads(resolved))
        if not results_file.is_file():
            raise RuntimeError(f"the notebook finished without writing {results_file.name}")
        results = json.loads(results_file.read_text())
        if results.get("completed") is False:  # a time budget ran out: the checkpoint continues it next time
            message = "time budget reached; run again to continue from the checkpoint"
            return RunResult(label, seed, "stopped", out_dir, time.perf_counter() - t0, message)
    except DataMissingError as e:
        _write_error(out_dir, f"not run: {e}")
        return RunResult(label, seed, "not_run", out_dir, time.perf_counter() - t0, str(e))
    except KeyboardInterrupt:
        raise
    except KernelDied as e:  # out of memory, a segfault, its time limit: the reason is the whole story
        _write_error(out_dir, f"{e}\n")
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, str(e)[:500])
    except Exception as e:  # noqa: BLE001 - one failing cell is reported, the others go on
        _write_error(out_dir, traceback.format_exc())
        message = describe_os_error(e, where=out_dir) if isinstance(e, OSError) else " ".join(f"{type(e).__name__}: {e}".split())
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, message[:500])
    seconds = time.perf_counter() - t0
    metrics = {
        "paper": resolved["paper"], "cell": resolved["cell_id"], "profile": resolved["profile"], "seed": int(seed),
        **{k: results.pop(k, None) for k in PROTOCOL_METRICS},
        **results,
        "params": resolved, "params_hash": key, "needs": needs.fingerprint,
        "wall_seconds": round(seconds, 2), "device": results.get("device") or device_name(),
        "executor": executor, "git_commit": git_commit(), "nlkit_version": __version__,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / "error.txt").unlink(missing_ok=True)
    atomic_write_json(metrics_file, metrics)
    return RunResult(label, seed, "done", out_dir, seconds)


def run_threads(resolved: dict) -> int | None:
    """The CPU threads a run computes with: its profile's `resources.num_cpus` (rounded up) where set, else torch's
    default. Fixed by the profile, not by how many runs share the machine: torch's CPU kernels reduce in an order
    that depends on the thread count, so the same run with 1 or 2 threads ends a few points apart on digits."""
    cpus = (resolved.get("resources") or {}).get("num_cpus")
    return max(1, math.ceil(float(cpus))) if cpus else None


def adopt_twin(resolved: dict, seed: int, twin: dict, twin_seed: int, root: Path | None = None
               ) -> RunResult | None:
    """Record the result of a finished run with identical settings (see params.settings_hash) for this cell,
    instead of computing it again: metrics.json names the run that produced the numbers (`same_run_as`, whose
    folder holds the executed notebook and figures)."""
    out_dir = run_dir(resolved, seed, root)
    label = f"{resolved['paper']}/{resolved['cell_id']} seed {seed}"
    source = current_metrics(twin, twin_seed, root)
    if source is None:  # the twin is gone or stale: the caller runs this one itself
        return None
    metrics = {**source, "cell": resolved["cell_id"], "params": resolved, "params_hash": run_key(resolved, seed, root),
               "same_run_as": f"{twin['paper']}/{twin['cell_id']} seed {twin_seed}",
               "outputs_in": portable(run_dir(twin, twin_seed, root))}
    try:
        atomic_write_json(out_dir / "metrics.json", metrics)
    except OSError as e:  # a full disk or unwritable folder fails this run only, in one line
        return RunResult(label, seed, "failed", out_dir, 0.0, describe_os_error(e, where=out_dir))
    return RunResult(label, seed, "done", out_dir, 0.0, f"same settings as {metrics['same_run_as']}")


def _fresh_checkpoints(out_dir: Path, key: str, discard: bool = False) -> None:
    """Keep a run's checkpoints only for the params they were written with: a run resumes from them, so ones
    left by other settings (an edited params file, another profile overlay) are discarded first; `discard`
    (--force: retrain from scratch) drops them whatever they hold."""
    ckpt = out_dir / "checkpoints"
    stamp = ckpt / "params_hash"
    if ckpt.exists() and (discard or not stamp.is_file() or stamp.read_text().strip() != key):
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key + "\n")


def _write_error(out_dir: Path, text: str) -> None:
    """Leave the details beside the run. Never raises: on a full or read-only disk the run's one-line message
    is all there is."""
    try:
        atomic_write(out_dir / "error.txt", lambda tmp: Path(tmp).write_text(text))
    except OSError:
        pass
