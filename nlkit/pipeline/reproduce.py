"""`make reproduce`: every matching cell and seed, skipping current runs, then the tables."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import UserError, check_choice, describe_os_error
from .deps import dependency_cell, needs_of
from .executors import SharedKernel, current_kernel, papermill_available, shared_kernel, use_kernel
from .params import find_cells, load_cell, repo_root, settings_hash
from .runner import RunResult, adopt_twin, check_outputs_writable, is_current, run_dir, run_one
from .tables import build_tables

BACKENDS = ("local", "ray", "slurm")


def plan_runs(profile: str, paper: str | None = None, only: str | None = None, stream=None, data_root=None):
    """Every (resolved cell, seed) to consider, the cells they need included, dependencies first (a need met by a
    published file under the weights roots of `data_root` pulls in no cell); the cells that could not be resolved;
    and the cells that cannot run because of what they need, with the reason (a needed cell that is missing,
    invalid or of an unknown paper, or a cycle of `needs:`, reported as A → B → A). The whole dependency graph of
    the selection is checked before anything runs: one bad `needs:` stops only the cells that depend on it, never
    the others."""
    bad: list = []
    cells: dict[str, dict] = {}        # "paper/cell" -> resolved, for every cell of the graph that loads
    broken: dict[str, str] = {}        # "paper/cell" -> why a needed cell cannot be loaded
    skipped = 0
    selected = []
    for cell in find_cells(paper, only):
        try:
            resolved = load_cell(cell, profile)
        except UserError as e:
            bad.append((cell, str(e)))
            continue
        if resolved.get("skip"):  # cells this profile leaves out (`skip: <why>` in a profile overlay)
            skipped += 1
            continue
        ref = f"{resolved['paper']}/{resolved['cell_id']}"
        cells[ref] = resolved
        selected.append(ref)
    if skipped and stream is not None:
        print(f"reproduce [{profile}]: {skipped} cells are not run under this profile (their `skip` says why)",
              file=stream)

    order: list[str] = []              # dependencies first
    state: dict[str, str] = {}         # "visiting" while its dependencies are explored, then "done"
    blocked: dict[str, str] = {}       # "paper/cell" -> why it cannot run
    in_cycle: dict[str, str] = {}

    def visit(ref: str, path: list[str]) -> None:
        if state.get(ref) == "done":
            return
        if state.get(ref) == "visiting":   # back to a cell under exploration: every cell from it on is a cycle
            cycle = path[path.index(ref):] + [ref]
            for member in cycle[:-1]:
                in_cycle.setdefault(member, f"its needs form a cycle: {' → '.join(cycle)}")
            return
        if ref not in cells:
            try:
                cells[ref] = dependency_cell(ref, profile)
            except UserError as e:
                why = str(e)
                broken[ref] = why if why.startswith("needed cell") else f"needed cell {ref} is invalid: {why}"
                state[ref] = "done"
                return
        state[ref] = "visiting"
        needs = list(needs_of(cells[ref], data_root).values())
        for dep in needs:
            visit(dep, path + [ref])
        state[ref] = "done"
        reason = in_cycle.get(ref)
        for dep in needs:
            if reason:
                break
            if dep in broken:
                reason = broken[dep]
            elif dep in blocked or dep in in_cycle:
                reason = f"needs {dep}, which cannot run ({blocked.get(dep) or in_cycle[dep]})"
        if reason:
            blocked[ref] = reason
        else:
            order.append(ref)

    for ref in selected:
        visit(ref, [])
    plan = [(cells[ref], int(s)) for ref in order for s in cells[ref].get("seeds") or [0]]
    not_runnable = [(cells[ref], int(s), blocked[ref]) for ref in blocked if ref in cells
                    for s in cells[ref].get("seeds") or [0]]
    return plan, bad, not_runnable


def reproduce(profile: str = "smoke", paper: str | None = None, only: str | None = None, *, data_root=None,
              noise_root=None, executor: str = "auto", root: Path | None = None, stream=None, jobs: int | str = 1,
              backend: str = "local", ray_address: str | None = None, slurm: dict | None = None) -> int:
    """Returns 0 when every run finished (or was current), 1 when any failed or a cell's params or `needs:` are
    invalid (those cells are reported as not run, with the reason; the others run). Cells whose data is missing are
    reported as not run and do not fail the whole (they are not errors of the kit). A cell another needs runs
    first, and with `jobs > 1` a dependent run starts only once what it needs has finished. `backend` ray or slurm
    fans the runs out on a Ray cluster (ray_backend.py) or SLURM jobs (slurm_backend.py) with the same semantics.
    `jobs="auto"` runs as many at a time as this machine holds (see `auto_jobs`)."""
    check_choice(backend, BACKENDS, "backend")
    stream = stream or sys.stderr
    if not find_cells(paper, only):
        print(f"no params files match paper={paper!r} only={only!r}", file=stream)
        return 1
    check_outputs_writable(profile, root)
    plan, bad, blocked = plan_runs(profile, paper, only, stream, data_root)
    for cell, message in bad:
        print(f"  invalid params: {message}", file=stream)
    unplanned = [RunResult(f"{r['paper']}/{r['cell_id']} seed {s}", s, "not_run", run_dir(r, s, root), 0.0, why)
                 for r, s, why in blocked]
    for r in unplanned:
        print(f"  not run: {r.cell}: {r.message}", file=stream)
    todo = [(r, s) for r, s in plan if not is_current(r, s, root, data_root=data_root)]
    print(f"reproduce [{profile}]: {len(plan)} runs in {len({(r['paper'], r['cell_id']) for r, _ in plan})} cells; "
          f"{len(plan) - len(todo)} current, {len(todo)} to run", file=stream)
    if jobs == "auto":
        jobs = auto_jobs(todo) if backend == "local" else 1
    results: list[RunResult] = []
    t0 = time.perf_counter()
    options = dict(data_root=data_root, noise_root=noise_root, executor=executor, root=root)
    with _stop_after_current_run(stream) as stop, tqdm(total=len(todo), desc="runs", unit="run", file=stream,
                                                         disable=not todo) as bar:
        if todo and backend == "ray":
            from .ray_backend import run_on_ray

            run_on_ray(todo, stop, results, bar, stream, address=ray_address, **options)
        elif todo and backend == "slurm":
            from .slurm_backend import run_on_slurm

            run_on_slurm(todo, stop, results, bar, stream, jobs=jobs, **(slurm or {}), **options)
        elif jobs > 1:
            _run_concurrently(todo, jobs, stop, results, bar, stream, **options)
        else:
            _run_in_turn(todo, stop, results, bar, stream, **options)
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
        print(f"  FAILED {r.cell}: {r.message} (details: {r.out_dir / 'error.txt'})", file=stream)
    try:
        for path in build_tables(profile, paper=paper, root=root, data_root=data_root):
            print(f"table: {path}", file=stream)
    except OSError as e:  # a full or read-only disk: the runs are reported above, the tables could not be written
        print(f"  FAILED tables: {describe_os_error(e)}", file=stream)
        return 1
    return 1 if by_status["failed"] or bad or unplanned else 0


def auto_jobs(todo) -> int:
    """How many runs this machine holds at a time: its usable cores over the most CPU threads a run takes
    (`resources.num_cpus`), and on a CUDA machine, for runs that ask for a GPU, its GPUs over their `num_gpus`
    (0.5: two runs per GPU). 1 when a run states no `num_cpus` (it computes with every core)."""
    import os

    if not todo:
        return 1
    resources = [r.get("resources") or {} for r, _ in todo]
    if any(not res.get("num_cpus") for res in resources):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = max(1, cores // math.ceil(max(float(res["num_cpus"]) for res in resources)))
    gpu_share = max(float(res.get("num_gpus") or 0) for res in resources)
    if gpu_share > 0:
        import torch

        if torch.cuda.is_available():
            jobs = min(jobs, max(1, math.floor(torch.cuda.device_count() / gpu_share)))
    return min(jobs, len(todo))


def _run_in_turn(todo, stop, results: list, bar, stream, **options) -> None:
    """One run after the other in this process, sharing one Jupyter kernel (imports are paid once). A run whose
    settings equal those of a run finished here (another cell that the profile maps to the same computation)
    records that run's result instead of computing it again."""
    use_papermill = options["executor"] == "papermill" or (options["executor"] == "auto" and papermill_available())
    finished: dict[str, tuple[dict, int]] = {}
    with shared_kernel() if use_papermill else nullcontext():
        for resolved, seed in todo:
            bar.set_postfix_str(f"{resolved['paper']}/{resolved['cell_id']} s{seed}")
            key = settings_hash(resolved, seed)
            result = adopt_twin(resolved, seed, *finished[key], root=options["root"]) if key in finished else None
            result = result or run_one(resolved, seed, **options)
            if stop.requested:  # this run may have been cut short by the same Ctrl-C: it is not counted
                break
            if result.status == "done":
                finished.setdefault(key, (resolved, seed))
            _record(result, results, bar, stream)


class _StopFlag:
    requested = False


@contextmanager
def _stop_after_current_run(stream):
    """Ctrl-C asks to stop after the current run (papermill would otherwise swallow it and go on); a second
    Ctrl-C stops at once. Either way no partial metrics.json is left: it is written last."""
    flag = _StopFlag()
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


def _record(result: RunResult, results: list, bar, stream) -> None:
    results.append(result)
    if result.status in ("failed", "not_run", "stopped", "busy"):
        tqdm.write(f"  {result.status.replace('_', ' ')}: {result.cell}: {result.message}", file=stream)
    bar.update(1)


def _run_concurrently(todo, jobs: int, stop, results: list, bar, stream, launch=None, **options) -> None:
    """`jobs` runs at a time. Locally each worker thread drives a Jupyter kernel of its own, reused by its runs (as
    `_run_in_turn` does with one); without papermill each run is an `nlkit run` process. A run starts only when
    every run of the cells it needs has finished (a failed dependency makes it 'not run'), and a run whose settings
    equal those of one under way waits for it and records its result. Ctrl-C lets the runs under way finish and
    starts no new one. `launch(resolved, seed) -> RunResult` runs one elsewhere instead (SLURM submits a job)."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    def cell_of(resolved):
        return f"{resolved['paper']}/{resolved['cell_id']}"

    pending_runs = {}  # cell -> runs of it still to finish in this plan
    for resolved, _ in todo:
        pending_runs[cell_of(resolved)] = pending_runs.get(cell_of(resolved), 0) + 1
    failed_cells: set[str] = set()
    use_kernels = launch is None and (options["executor"] == "papermill"
                                      or (options["executor"] == "auto" and papermill_available()))
    kernels: list[SharedKernel] = []

    def one(item):
        resolved, seed = item
        if launch is not None:
            return launch(resolved, seed)
        if not use_kernels:
            return _run_in_process(resolved, seed, options)
        if current_kernel() is None:  # this worker thread's kernel, started once
            kernels.append(SharedKernel())
            use_kernel(kernels[-1])
        return run_one(resolved, seed, **options)

    def finish(item, result):
        pending_runs[cell_of(item[0])] -= 1
        if result.status not in ("done", "skipped"):
            failed_cells.add(cell_of(item[0]))
        _record(result, results, bar, stream)

    waiting = list(todo)
    in_flight: set[str] = set()  # settings of the runs under way
    finished: dict[str, tuple[dict, int]] = {}  # settings -> a run that computed them here

    def start_ready(pool, running: dict) -> None:
        """Start waiting runs whose dependencies are done, up to `jobs`; settle those that need not compute."""
        for item in list(waiting):
            if len(running) >= jobs:
                return
            deps = needs_of(item[0], options.get("data_root")).values()
            key = settings_hash(*item)
            if any(d in failed_cells for d in deps):
                waiting.remove(item)
                finish(item, RunResult(f"{cell_of(item[0])} seed {item[1]}", item[1], "not_run",
                                       run_dir(item[0], item[1], options["root"]), 0.0,
                                       "a cell it needs did not finish"))
            elif any(pending_runs.get(d, 0) for d in deps) or key in in_flight:
                continue  # a dependency, or a run with the same settings, is still under way
            elif key in finished and (adopted := adopt_twin(*item, *finished[key], root=options["root"])):
                waiting.remove(item)
                finish(item, adopted)
            else:
                waiting.remove(item)
                in_flight.add(key)
                running[pool.submit(one, item)] = (item, key)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            running: dict = {}
            try:
                while waiting or running:
                    if stop.requested:
                        waiting.clear()
                    else:
                        start_ready(pool, running)
                    if not running:
                        for item in waiting:  # what they need is outside this plan: it never finishes here
                            _record(RunResult(f"{cell_of(item[0])} seed {item[1]}", item[1], "not_run",
                                              run_dir(item[0], item[1], options["root"]), 0.0,
                                              "a cell it needs is not done"), results, bar, stream)
                        waiting.clear()
                        continue
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        item, key = running.pop(future)
                        result = future.result()
                        in_flight.discard(key)
                        if result.status == "done":
                            finished.setdefault(key, item)
                        finish(item, result)
            except KeyboardInterrupt:  # a second Ctrl-C: the runs under way end now, their kernels shut down
                for kernel in kernels:
                    kernel.close()
                raise
    finally:
        for kernel in kernels:
            kernel.close()


def _run_in_process(resolved: dict, seed: int, options: dict) -> RunResult:
    """One run as an `nlkit run` process (machines without Jupyter: the direct executor cannot share a process)."""
    import subprocess

    cmd = [sys.executable, "-m", "nlkit", "run", str(Path(resolved["params_file"])), "--seed", str(seed),
           "--profile", resolved["profile"], "--executor", options["executor"]]
    for flag, key in (("--data-root", "data_root"), ("--noise-root", "noise_root")):
        if options.get(key):
            cmd += [flag, str(options[key])]
    t0 = time.perf_counter()
    # own session: the terminal's Ctrl-C reaches this process only, which lets the runs finish
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(repo_root()), start_new_session=True)
    status = {0: "done", 2: "not_run", 3: "stopped", 4: "busy"}.get(proc.returncode, "failed")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    message = next((ln for ln in reversed(lines)
                    if ln.startswith(("failed:", "not_run:", "stopped:", "busy:", "nlkit"))), "")
    return RunResult(f"{resolved['paper']}/{resolved['cell_id']} seed {seed}", seed, status,
                     run_dir(resolved, seed, options["root"]), time.perf_counter() - t0,
                     message.split(": ", 2)[-1] if message else "")
