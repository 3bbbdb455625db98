"""`make reproduce`: every matching cell and seed, skipping current runs, then the tables. It orchestrates: the plan
(planning.py), its runs on a backend (backend.Backend: local_backend, ray_backend, slurm_backend), the tables."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import check_choice, describe_os_error
from . import local_backend, ray_backend, slurm_backend
from .backend import Backend, StopFlag
from .currency import run_dir
from .local_backend import auto_jobs  # noqa: F401 - imported from here too
from .params import find_cells, with_time_limit
from .planning import plan_runs, runs_to_do
from .runner import RunResult, check_outputs_writable
from .tables import build_tables

BACKENDS = ("local", "ray", "slurm")


def reproduce(profile: str = "smoke", paper: str | None = None, only: str | None = None, *, data_root=None,
              noise_root=None, executor: str = "auto", root: Path | None = None, stream=None, jobs: int | str = 1,
              backend: str = "local", ray_address: str | None = None, slurm: dict | None = None,
              timeout_min: float | None = None) -> int:
    """Returns 0 when every run finished (or was current), 1 when any failed or a cell's params or `needs:` are
    invalid (those cells are reported as not run, with the reason; the others run). Cells whose data is missing are
    reported as not run and do not fail the whole (they are not errors of the kit). A cell another needs runs
    first, and with `jobs > 1` a dependent run starts only once what it needs has finished. `backend` ray or slurm
    fans the runs out on a Ray cluster (ray_backend.py) or SLURM jobs (slurm_backend.py) with the same semantics.
    `jobs="auto"` runs as many at a time as this machine holds (see `auto_jobs`). `timeout_min` overrides every
    run's time limit (params.time_limit_min)."""
    check_choice(backend, BACKENDS, "backend")
    stream = stream or sys.stderr
    if not find_cells(paper, only):
        print(f"no params files match paper={paper!r} only={only!r}", file=stream)
        return 1
    check_outputs_writable(profile, root)
    plan, bad, blocked = plan_runs(profile, paper, only, stream, data_root)
    plan = [(with_time_limit(r, timeout_min), s) for r, s in plan]
    for cell, message in bad:
        print(f"  invalid params: {message}", file=stream)
    unplanned = [RunResult(f"{r['paper']}/{r['cell_id']} seed {s}", s, "not_run", run_dir(r, s, root), 0.0, why)
                 for r, s, why in blocked]
    for r in unplanned:
        print(f"  not run: {r.cell}: {r.message}", file=stream)
    todo = runs_to_do(plan, root, data_root)
    print(f"reproduce [{profile}]: {len(plan)} runs in {len({(r['paper'], r['cell_id']) for r, _ in plan})} cells; "
          f"{len(plan) - len(todo)} current, {len(todo)} to run", file=stream)
    if jobs == "auto":
        jobs = auto_jobs(todo) if backend == "local" else 1
    results: list[RunResult] = []
    t0 = time.perf_counter()
    options = dict(data_root=data_root, noise_root=noise_root, executor=executor, root=root)
    with _stop_after_current_run(stream) as stop, tqdm(total=len(todo), desc="runs", unit="run", file=stream,
                                                         disable=not todo) as bar:
        where = backend if todo else "local"  # nothing to run: no cluster is started for it
        own_options = {"local": dict(jobs=jobs), "ray": dict(address=ray_address),
                       "slurm": dict(jobs=jobs, **(slurm or {}))}[where]
        backend_for(where)(todo, stop, results, bar, stream, **own_options, **options)
    if stop.requested:
        print(f"reproduce [{profile}]: interrupted after {len(results)} of {len(todo)} runs; run it again to "
              "resume (finished runs are kept)", file=stream)
        return 130
    results = unplanned + results
    by_status = {k: [r for r in results if r.status == k]
                 for k in ("done", "failed", "not_run", "stopped", "busy", "skipped")}
    print(f"reproduce [{profile}]: {len(by_status['done'])} ran, "
          f"{len(plan) - len(todo) + len(by_status['skipped'])} were current, "
          f"{len(by_status['busy'])} left to another process running them, "
          f"{len(by_status['not_run'])} not run (data or a needed cell missing), {len(by_status['stopped'])} stopped "
          f"by a time budget, {len(by_status['failed'])} failed, {len(bad)} invalid, "
          f"in {time.perf_counter() - t0:.0f} s", file=stream)
    for r in by_status["failed"]:
        details = r.out_dir / "error.txt"   # named only where it exists (a full disk may have prevented it)
        print(f"  FAILED {r.cell}: {r.message or 'no reason given'}"
              + (f" (details: {details})" if details.is_file() else ""), file=stream)
    try:
        for path in build_tables(profile, paper=paper, root=root, data_root=data_root):
            print(f"table: {path}", file=stream)
    except OSError as e:  # a full or read-only disk: the runs are reported above, the tables could not be written
        print(f"  FAILED tables: {describe_os_error(e)}", file=stream)
        return 1
    return 1 if by_status["failed"] or bad or unplanned else 0


def backend_for(name: str) -> Backend:
    """The Backend named by --backend (looked up when called, so each module's current function runs)."""
    check_choice(name, BACKENDS, "backend")
    return {"local": local_backend.run_local, "ray": ray_backend.run_on_ray, "slurm": slurm_backend.run_on_slurm}[name]


@contextmanager
def _stop_after_current_run(stream):
    """Ctrl-C asks to stop after the current run (papermill would otherwise swallow it and go on); a second
    Ctrl-C stops at once. Either way no partial metrics.json is left: it is written last."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.requested:
            raise KeyboardInterrupt
        flag.requested = True
        print("\nstopping after the current run (Ctrl-C again to stop now)", file=stream)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
