"""What the scale-out backends (Ray, SLURM) share: a run's resources from its profile, and the body of a run on
another process or machine, built on the same `run_one` as a local run.

A worker that sees the driver's `outputs/` (same machine, or a shared filesystem) writes the run there itself. One
that does not runs into a folder of its own and returns the run folder's files (checkpoints aside), which the driver
writes with `metrics.json` last and atomically; the files of the runs it needs come to it the same way.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..errors import UserError
from ..io import atomic_write, atomic_write_json
from .currency import run_dir
from .executors import SharedKernel, papermill_available, use_kernel
from .runner import RunResult, run_one

# `resources:` in a params file or profile overlay (scheduling only: not part of the run's params hash).
RESOURCE_KEYS = {
    "num_cpus": "CPU cores a run needs (Ray task / SLURM cpus-per-task); default 1",
    "num_gpus": "GPUs a run needs; a fraction (e.g. 0.25) lets small runs share one GPU under Ray; default 0",
    "memory_gb": "host memory a run needs, in GB (optional)",
    "max_retries": "how often a run whose worker died is retried (Ray); default 3",
    "partition": "SLURM partition (optional)",
    "time_min": "SLURM time limit of one run, in minutes; default 60",
    "timeout_min": "a run still busy after this many minutes is stopped and fails (any backend, either "
                   "executor); default: the profile's limit (schema.DEFAULT_TIMEOUT_MIN), --timeout-min overrides",
}

SKIP_RETURN = ("checkpoints",)  # resume state stays with the worker; artefacts live in the run folder itself


def resources_of(resolved: dict) -> dict:
    """The run's `resources:` block, checked, with defaults."""
    given = resolved.get("resources") or {}
    where = resolved.get("params_file", "params")
    if not isinstance(given, dict):
        raise UserError(f"{where}: `resources` must be a mapping of {sorted(RESOURCE_KEYS)}")
    unknown = set(given) - set(RESOURCE_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown resources {sorted(unknown)}; known: {sorted(RESOURCE_KEYS)}")
    out = {"num_cpus": 1, "num_gpus": 0, "memory_gb": None, "max_retries": 3, "partition": None, "time_min": 60,
           "timeout_min": None, **given}
    for key in ("num_cpus", "num_gpus", "memory_gb", "max_retries", "time_min", "timeout_min"):
        value = out[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise UserError(f"{where}: resources.{key} must be a non-negative number, got {value!r}")
    return out


def label_of(resolved: dict, seed: int) -> str:
    return f"{resolved['paper']}/{resolved['cell_id']} seed {seed}"


def run_relpath(resolved: dict, seed: int) -> str:
    return str(run_dir(resolved, seed, Path("/")).relative_to("/"))


# ------------------------------------------------------------------------------------------------- on the worker

_KERNEL: dict = {}


def _worker_kernel(project: str) -> None:
    """One Jupyter kernel per worker process, reused by the papermill runs it executes (as `shared_kernel()` does
    for a local reproduce); replaced when the project folder changes."""
    if _KERNEL.get("project") != project:
        if "kernel" in _KERNEL:
            _KERNEL["kernel"].close()
        _KERNEL.update(project=project, kernel=SharedKernel())
        if not _KERNEL.get("atexit"):
            atexit.register(lambda: _KERNEL["kernel"].close())
            _KERNEL["atexit"] = True
    use_kernel(_KERNEL["kernel"])


def execute_run(project: str, out_root: str, probe: str | None, resolved: dict, seed: int, options: dict,
                *deps: dict) -> dict:
    """Run one cell × seed on a worker after the runs it needs (`deps`, their payloads) and return a payload:
    status, message, seconds, and the run folder's files when the worker cannot write to the driver's outputs."""
    label = label_of(resolved, seed)
    rel = run_relpath(resolved, seed)
    payload = {"label": label, "seed": seed, "dir": rel, "status": "not_run", "seconds": 0.0, "files": None,
               "message": "a cell it needs did not finish"}
    if any(d.get("status") == "cancelled" for d in deps):
        return {"status": "cancelled"}
    if any(d.get("status") not in ("done", "skipped") for d in deps):
        return payload
    if Path(project, "params").is_dir():  # the driver's project is visible here: same params and notebooks
        os.environ["NLKIT_ROOT"] = project
    shared = probe is None or Path(out_root, probe).is_file()
    if shared:
        root = Path(out_root)
    else:  # a folder of this machine, stable across retries so that a retried run resumes its checkpoints here
        tag = hashlib.sha256(out_root.encode()).hexdigest()[:12]
        root = Path(tempfile.gettempdir()) / f"nlkit-runs-{os.getuid()}" / tag
        for dep in deps:
            _materialise(root, dep)
        # the driver found this run not done: a metrics.json left here (an earlier, lost driver) is no answer
        (root / rel / "metrics.json").unlink(missing_ok=True)
    if options.get("executor") in ("papermill", "auto"):
        if papermill_available():
            _worker_kernel(os.environ.get("NLKIT_ROOT", project))
    t0 = time.perf_counter()
    result = run_one(resolved, seed, data_root=options.get("data_root"), noise_root=options.get("noise_root"),
                     executor=options.get("executor", "auto"), root=root)
    payload.update(status=result.status, message=result.message, seconds=result.seconds or time.perf_counter() - t0)
    if not shared:
        payload["files"] = collect_files(root / rel)
        if result.status == "done":
            shutil.rmtree(root / rel, ignore_errors=True)
    return payload


def collect_files(folder: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.parts[0] not in SKIP_RETURN and not path.name.startswith("."):
            files[str(rel)] = path.read_bytes()
    return files


def _materialise(root: Path, payload: dict) -> None:
    if payload.get("files"):
        write_files(root / payload["dir"], payload["files"])


# ------------------------------------------------------------------------------------------------- on the driver

def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """A returned run folder, written like a local run writes it: any old metrics.json removed first, every file
    atomically, metrics.json last (its presence still means the run finished)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").unlink(missing_ok=True)
    for name, data in sorted(files.items(), key=lambda kv: kv[0] == "metrics.json"):
        target = (folder / name).resolve()
        if folder.resolve() not in target.parents:
            raise UserError(f"a worker returned a file outside its run folder: {name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp, data=data: Path(tmp).write_bytes(data))


def result_of(payload: dict, out_root: Path) -> RunResult:
    """The driver's record of a finished remote run (its files written first when the worker returned them)."""
    folder = out_root / payload["dir"]
    if payload.get("files") is not None:
        write_files(folder, payload["files"])
    return RunResult(payload["label"], payload["seed"], payload["status"], folder, payload.get("seconds", 0.0),
                     payload.get("message", ""))


def make_probe(out_root: Path) -> str:
    """A file the workers look for to tell whether they see the driver's outputs folder."""
    out_root.mkdir(parents=True, exist_ok=True)
    name = f".nlkit-probe-{os.getpid()}-{time.time_ns()}"
    atomic_write_json(out_root / name, {"pid": os.getpid()})
    return name
