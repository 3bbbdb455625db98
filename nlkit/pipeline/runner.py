"""Run one table cell for one seed: execute the paper's notebook (papermill, or directly without Jupyter)
and write `metrics.json` last and atomically, so its presence means the run finished."""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import SEED_LIMIT, DataMissingError, UserError, describe_os_error
from ..io import atomic_write, atomic_write_json
from ..methods.contract import PROTOCOL_METRICS
from .currency import (  # noqa: F401 - the run folders and currency, also imported from here
    current_metrics,
    is_current,
    metrics_path,
    outputs_root,
    resolve_needs,
    run_dir,
    run_key,
)
from .executors import (
    KernelDied,
    execute_direct,
    execute_papermill,
    notebook_path,
    papermill_available,
    portable,
)
from .locks import LOCK_NAME, run_lock
from .needs import DependencyMissing
from .params import load_cell, repo_root


@dataclass
class RunResult:
    cell: str
    seed: int
    status: str          # done | skipped | failed | not_run | stopped (time budget; resumable) | busy (another
    #                      process is running it)
    out_dir: Path
    seconds: float = 0.0
    message: str = ""


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()})"


def run_hardware(resolved: dict) -> dict:
    """The CPU's ISA and what a run's speed switches resolved to on the device it ran on (nlkit.hardware)."""
    import torch

    from ..hardware import precision_report

    train = resolved.get("train") or {}
    bf16 = train.get("bf16", {"bf16": True, "auto": "auto"}.get(train.get("precision"), False))
    try:
        return precision_report("cuda" if torch.cuda.is_available() else "cpu", bf16,
                                train.get("channels_last", "auto"))
    except ValueError:  # a method with its own meaning of these keys: the ISA alone
        return precision_report("cpu")


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
        "hardware": results.get("hardware") or run_hardware(resolved),
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
