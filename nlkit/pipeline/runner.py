"""Run one table cell for one seed: execute the paper's notebook (papermill, or directly without Jupyter)
and write `metrics.json` last and atomically, so its presence means the run finished."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import SEED_LIMIT, DataMissingError, UserError, describe_os_error, short_text
from ..io import atomic_write, atomic_write_json
from ..methods.contract import PROTOCOL_METRICS, ran_identity
from .currency import (  # noqa: F401 - the run folders and currency, also imported from here
    current_metrics,
    is_current,
    metric_names,
    metrics_path,
    other_run,
    outputs_root,
    resolve_needs,
    run_dir,
    run_key,
)
from .executors import (
    RunFailed,
    execute_direct,
    execute_papermill,
    notebook_path,
    papermill_available,
    portable,
)
from .locks import LOCK_NAME, run_lock
from .needs import DependencyMissing
from .params import load_cell, repo_root, time_limit_min, with_time_limit


@dataclass
class RunResult:
    cell: str
    seed: int
    status: str          # done | skipped | failed | not_run | stopped (time budget; resumable) | busy (another
    #                      process is running it)
    out_dir: Path
    seconds: float = 0.0
    message: str = ""
    bad_input: bool = False  # failed on input the user gave (a refused label file): `nlkit run` exits 2


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
             executor: str = "auto", force: bool = False, root: Path | None = None,
             timeout_min: float | None = None) -> list[RunResult]:
    """Run one cell for one seed (or every seed its params list). Finished, current runs are skipped.
    `timeout_min` overrides the run's time limit (see params.time_limit_min)."""
    resolved = with_time_limit(load_cell(params_file, profile), timeout_min)
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
            _recover_aside(out_dir)  # a rerun killed mid-way left the finished run aside: it may be current
            # finished by another process meanwhile
            if not force and is_current(resolved, seed, root, data_root=data_root):
                return RunResult(label, seed, "skipped", out_dir)
            return _run_locked(resolved, seed, out_dir, label, data_root=data_root, noise_root=noise_root,
                               executor=executor, force=force, root=root)
    except OSError as e:  # ENOSPC, EACCES, EROFS ... while preparing the folder or writing metrics.json
        message = describe_os_error(e, where=out_dir)
        _write_error(out_dir, message + "\n")
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, message)


class ResultRefused(Exception):
    """What the notebook recorded is not a result of the run asked for (another cell's, or not a number)."""


# A finished run's evidence: set aside while the run is done again, put back unless the new run finishes
ASIDE = ".previous-run"
EVIDENCE = ("metrics.json", "results.json", "notebook.ipynb", "history.csv")


def _run_locked(resolved: dict, seed: int, out_dir: Path, label: str, *, data_root, noise_root, executor: str,
                force: bool, root: Path | None) -> RunResult:
    """A finished run done again (--force, or stale) first moves its metrics, results, executed notebook and
    artefacts aside together and puts them back if the new run does not finish (a failure, missing data, a needed
    cell not done): the evidence behind a number is never lost to a failed rerun. The unfinished run's notebook
    and results are kept beside them as notebook.failed.ipynb and results.failed.json. A stale run put back
    stays stale (its key says so)."""
    aside = _set_aside(out_dir) if (out_dir / "metrics.json").is_file() else None
    (out_dir / "results.json").unlink(missing_ok=True)  # left by a run that never finished
    result = None
    try:
        result = _execute(resolved, seed, out_dir, label, data_root=data_root, noise_root=noise_root,
                          executor=executor, force=force, root=root)
        return result
    finally:
        if aside is not None:
            if result is not None and result.status == "done":
                shutil.rmtree(aside, ignore_errors=True)
            else:
                for name in EVIDENCE:  # what the unfinished run left is kept apart from the finished run's
                    left = out_dir / name
                    if left.is_file():
                        os.replace(left, left.with_name(f"{left.stem}.failed{left.suffix}"))
                _restore(aside, out_dir)


def _evidence(out_dir: Path) -> list[Path]:
    """The files of a finished run that its number rests on: EVIDENCE and the artefacts its metrics list."""
    names = list(EVIDENCE)
    try:
        artefacts = json.loads((out_dir / "metrics.json").read_text()).get("artefacts")
        names += [str(f) for f in artefacts.values()] if isinstance(artefacts, dict) else []
    except (OSError, ValueError, AttributeError):
        pass
    inside = [out_dir / n for n in dict.fromkeys(names) if not Path(n).is_absolute() and ".." not in Path(n).parts]
    return [p for p in inside if p.is_file()]


def _set_aside(out_dir: Path) -> Path:
    aside = out_dir / ASIDE
    for path in _evidence(out_dir):
        target = aside / path.relative_to(out_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    return aside


def _restore(aside: Path, out_dir: Path) -> None:
    for path in sorted(p for p in aside.rglob("*") if p.is_file()):
        target = out_dir / path.relative_to(aside)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    shutil.rmtree(aside, ignore_errors=True)


def _recover_aside(out_dir: Path) -> None:
    """A rerun killed before it finished left the previous run aside: put it back. One killed after writing its
    metrics.json (the last step) did finish: the aside copy is dropped."""
    aside = out_dir / ASIDE
    if aside.is_dir():
        if (out_dir / "metrics.json").is_file():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            _restore(aside, out_dir)


def _checked_results(results, resolved: dict, seed: int) -> dict:
    """results.json as the runner records it: refused (ResultRefused) when the notebook ran another cell or seed
    than the one asked for, or a metric the tables read is NaN or infinite; other non-finite values become null
    (metrics.json holds only numbers a strict reader takes)."""
    if not isinstance(results, dict):
        raise ResultRefused("results.json is not a JSON object")
    problem = other_run(results.get("ran"), resolved, seed)
    if problem:
        raise ResultRefused(problem)
    for name in metric_names(resolved):
        value = results.get(name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ResultRefused(f"the run's {name} is {value}, not a result")
    return _finite_or_none(results)


def _finite_or_none(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _execute(resolved: dict, seed: int, out_dir: Path, label: str, *, data_root, noise_root, executor: str,
             force: bool, root: Path | None) -> RunResult:
    metrics_file = out_dir / "metrics.json"
    results_file = out_dir / "results.json"
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
        execute = execute_papermill if executor == "papermill" else execute_direct
        execute(notebook, out_dir, parameters, threads=run_threads(resolved), timeout_min=time_limit_min(resolved))
        if not results_file.is_file():
            raise RuntimeError(f"the notebook finished without writing {results_file.name}")
        results = _checked_results(json.loads(results_file.read_text()), resolved, seed)
        if results.get("completed") is False:  # a time budget ran out: the checkpoint continues it next time
            message = "time budget reached; run again to continue from the checkpoint"
            return RunResult(label, seed, "stopped", out_dir, time.perf_counter() - t0, message)
    except DataMissingError as e:
        _write_error(out_dir, f"not run: {e}")
        return RunResult(label, seed, "not_run", out_dir, time.perf_counter() - t0, str(e))
    except KeyboardInterrupt:
        raise
    except UserError as e:  # bad input the notebook refused: a failed run, reported in its one line
        _write_error(out_dir, traceback.format_exc())
        message = short_text(" ".join(str(e).split()), 500)
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, message, bad_input=True)
    except ResultRefused as e:
        _write_error(out_dir, f"{e}\n")
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, str(e))
    except RunFailed as e:  # out of memory, a segfault, its time limit, sys.exit(): the reason is the whole story
        _write_error(out_dir, f"{e}\n")
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, str(e)[:500])
    except Exception as e:  # noqa: BLE001 - one failing cell is reported, the others go on
        _write_error(out_dir, traceback.format_exc())
        message = describe_os_error(e, where=out_dir) if isinstance(e, OSError) else " ".join(f"{type(e).__name__}: {e}".split())
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, message[:500])
    seconds = time.perf_counter() - t0
    record_metrics(resolved, seed, out_dir, results, key, needs.fingerprint, seconds, executor, started)
    return RunResult(label, seed, "done", out_dir, seconds)


def record_metrics(resolved: dict, seed: int, out_dir: Path, results: dict, key: str, needs_fingerprint: dict,
                   seconds: float, executor: str, started: _dt.datetime) -> dict:
    """Write the finished run's `metrics.json` (last, atomically: its presence means the run finished): the
    notebook's results with the run's identity and key. Shared by the runner and a paper notebook run by hand."""
    results = dict(results)
    metrics = {
        "paper": resolved["paper"], "cell": resolved["cell_id"], "profile": resolved["profile"], "seed": int(seed),
        **{k: results.pop(k, None) for k in PROTOCOL_METRICS},
        **results,
        "params": resolved, "params_hash": key, "needs": needs_fingerprint,
        "wall_seconds": round(seconds, 2), "device": results.get("device") or device_name(),
        "hardware": results.get("hardware") or run_hardware(resolved),
        "executor": executor, "git_commit": git_commit(), "nlkit_version": __version__,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / "error.txt").unlink(missing_ok=True)
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


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
               "ran": ran_identity(resolved, seed),
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
