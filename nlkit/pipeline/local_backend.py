"""The local backend: runs on this machine, one after the other in one shared Jupyter kernel, or `jobs` at a time
(a kernel per worker thread, or an `nlkit run` process each without Jupyter)."""

from __future__ import annotations

import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

from .backend import record
from .currency import run_dir
from .executors import SharedKernel, current_kernel, describe_exit, papermill_available, shared_kernel, use_kernel
from .needs import needs_of
from .params import repo_root, settings_hash, time_limit_min
from .runner import RunResult, _write_error, adopt_twin, is_current, run_one


def run_local(todo, stop, results: list, bar, stream, *, jobs: int = 1, **options) -> None:
    """The Backend of this machine: `jobs` runs at a time (run_concurrently), or one after the other (run_in_turn)."""
    if jobs > 1:
        run_concurrently(todo, jobs, stop, results, bar, stream, **options)
    else:
        run_in_turn(todo, stop, results, bar, stream, **options)


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


def run_in_turn(todo, stop, results: list, bar, stream, **options) -> None:
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
            record(result, results, bar, stream)


def run_concurrently(todo, jobs: int, stop, results: list, bar, stream, launch=None, **options) -> None:
    """`jobs` runs at a time. Locally each worker thread drives a Jupyter kernel of its own, reused by its runs (as
    `run_in_turn` does with one); without papermill each run is an `nlkit run` process. A run starts only when
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
        record(result, results, bar, stream)

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
                            record(RunResult(f"{cell_of(item[0])} seed {item[1]}", item[1], "not_run",
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


# How long past its own time limit a run's process may go on before it is killed from outside (a process stopped
# by SIGSTOP, or stuck in native code, never reaches its own limit).
PROCESS_GRACE_S = 15


def _run_in_process(resolved: dict, seed: int, options: dict) -> RunResult:
    """One run as an `nlkit run` process (machines without Jupyter: the direct executor cannot share a process).
    It is 'done' only when it left a current metrics.json; a failure always says why (the process's own line, or
    how it ended: killed by a signal, stopped at its time limit) and its error.txt holds the details."""
    import os
    import signal
    import subprocess

    limit = time_limit_min(resolved)
    cmd = [sys.executable, "-m", "nlkit", "run", str(Path(resolved["params_file"])), "--seed", str(seed),
           "--profile", resolved["profile"], "--executor", options["executor"], "--timeout-min", f"{limit:g}"]
    for flag, key in (("--data-root", "data_root"), ("--noise-root", "noise_root")):
        if options.get(key):
            cmd += [flag, str(options[key])]
    label = f"{resolved['paper']}/{resolved['cell_id']} seed {seed}"
    out_dir = run_dir(resolved, seed, options["root"])
    t0 = time.perf_counter()
    # own session: the terminal's Ctrl-C reaches this process only, which lets the runs finish
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(repo_root()),
                            start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=limit * 60 + PROCESS_GRACE_S)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # its session: whatever it started goes with it
        except OSError:
            proc.kill()
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    seconds = time.perf_counter() - t0
    status = {0: "done", 2: "not_run", 3: "stopped", 4: "busy"}.get(proc.returncode, "failed")
    lines = (stdout + stderr).strip().splitlines()
    message = next((ln for ln in reversed(lines)
                    if ln.startswith(("failed:", "not_run:", "stopped:", "busy:", "nlkit"))), "")
    message = message.split(": ", 2)[-1] if message else ""
    why = ""
    if timed_out:
        why = f"the run's process was stopped at its time limit of {limit:g} min (resources.timeout_min)"
    elif status == "done" and not is_current(resolved, seed, options["root"], data_root=options.get("data_root")):
        why = "the run's process ended without writing a current metrics.json"
    elif status == "failed" and not message:
        why = f"the run's process {'was ' if proc.returncode < 0 else ''}{describe_exit(proc.returncode)}"
    if why:
        status, message = "failed", why
        tail = "\n".join(lines[-40:])
        _write_error(out_dir, f"{why}\n" + (f"\nits last output:\n{tail}\n" if tail else ""))
    return RunResult(label, seed, status, out_dir, seconds, message)
