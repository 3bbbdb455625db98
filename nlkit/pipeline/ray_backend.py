"""`nlkit reproduce --backend ray`: every run (cell × seed) a Ray task.

Without an address (`--ray-address`, or $RAY_ADDRESS set by the user) a local Ray of its own starts on this machine
and uses all of it (every GPU of a multi-GPU node), even when a `ray start` cluster already runs here; with one the
runs go to that cluster. Each task asks for the resources of its profile's
`resources:` block (see remote.RESOURCE_KEYS; `num_gpus: 0.25` lets four small runs share a GPU). A run that needs
other cells takes their tasks' results as arguments, so Ray itself starts it once they have finished (no waiting on
the driver), and a failed dependency makes it 'not run'. A worker lost mid-run leaves no metrics.json (it is written
last) and Ray retries the task (`max_retries`); the retry resumes from the run's checkpoints (the kit's own resume).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..errors import UserError
from .backend import record
from .currency import outputs_root, run_dir
from .needs import needs_of
from .params import repo_root, settings_hash
from .remote import execute_run, label_of, make_probe, resources_of, result_of
from .runner import RunResult, adopt_twin


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def ray_target(address: str | None = None) -> str:
    """Where the runs go: `address` (--ray-address), else $RAY_ADDRESS when the user set it, else "local": a Ray of
    our own on this machine. Never Ray's own default, which joins any cluster a `ray start` left running here
    (through /tmp/ray/ray_current_cluster) and would run the tasks on someone else's resources."""
    return address or os.environ.get("RAY_ADDRESS") or "local"


def start_ray(address: str | None = None, attempts: int = 3, **init) -> None:
    """`ray.init` on `ray_target(address)`. Ray gives a starting node 30 s to register, which a busy machine can
    exceed: a failed local start is tried again."""
    import ray

    target = ray_target(address)
    init = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING", **init}
    for attempt in range(attempts):
        try:
            ray.init(address=target, **init)
            return
        except Exception:
            ray.shutdown()
            if target != "local" or attempt == attempts - 1:
                raise


def _board_class(ray):
    @ray.remote(num_cpus=0)
    class Board:
        """Which runs have started on a worker (for the progress view's 'running')."""

        def __init__(self):
            self.started = set()
            self.stopped = False

        def start(self, key) -> bool:
            """False once Ctrl-C asked to start no new run."""
            if not self.stopped:
                self.started.add(key)
            return not self.stopped

        def stop(self):
            self.stopped = True

        def snapshot(self):
            return set(self.started)

    return Board


def _task(board, key, *args):
    import ray

    if not ray.get(board.start.remote(key)):  # Ctrl-C came before this run started: it does not start
        return {"status": "cancelled"}
    return execute_run(*args)


def run_on_ray(todo, stop, results: list, bar, stream, *, address=None, data_root=None, noise_root=None,
               executor: str = "auto", root: Path | None = None) -> None:
    """The Ray Backend (backend.Backend): runs `todo` (dependencies first) as Ray tasks and records each result as it finishes (see the module
    docstring). First Ctrl-C: runs not yet started are cancelled and those under way finish; second: all stop."""
    if not ray_available():
        raise UserError("the ray backend needs Ray: pip install 'nlkit[ray]'")
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        start_ray(address)
    out_root = Path(root or outputs_root()).resolve()
    probe = make_probe(out_root)
    project = str(repo_root())
    options = dict(data_root=str(Path(data_root).resolve()) if data_root else None,
                   noise_root=str(Path(noise_root).resolve()) if noise_root else None, executor=executor)
    task = ray.remote(_task)
    board = _board_class(ray).remote()
    t0 = time.perf_counter()

    def cell_of(resolved):
        return f"{resolved['paper']}/{resolved['cell_id']}"

    needed = {ref for resolved, _ in todo for ref in needs_of(resolved, data_root).values()}
    refs_of_cell: dict[str, list] = {}
    items: dict = {}       # task ref -> (index, resolved, seed, refs it depends on)
    twins: dict = {}       # index of a computed run -> [(resolved, seed)] with identical settings, recorded from it
    source_of: dict = {}   # settings hash -> index of the run computing it
    try:
        for i, (resolved, seed) in enumerate(todo):
            key = settings_hash(resolved, seed)
            cell = cell_of(resolved)
            if key in source_of and cell not in needed:  # computed once (as a local reproduce does)
                twins.setdefault(source_of[key], []).append((resolved, seed))
                continue
            source_of.setdefault(key, i)
            res = resources_of(resolved)
            deps = [r for ref in needs_of(resolved, data_root).values() for r in refs_of_cell.get(ref, [])]
            opts = dict(num_cpus=res["num_cpus"], num_gpus=res["num_gpus"], max_retries=int(res["max_retries"]),
                        retry_exceptions=False, name=label_of(resolved, seed))
            if res["memory_gb"]:
                opts["memory"] = int(res["memory_gb"] * 2**30)
            ref = task.options(**opts).remote(board, i, project, str(out_root), probe, resolved, int(seed),
                                              options, *deps)
            refs_of_cell.setdefault(cell, []).append(ref)
            items[ref] = (i, resolved, seed, deps)
        _collect(ray, items, twins, board, stop, results, bar, stream, out_root, root, t0)
    except KeyboardInterrupt:  # second Ctrl-C: stop everything now (no metrics.json is left half-written)
        for ref in items:
            ray.cancel(ref, force=True)
        stop.requested = True
    finally:
        (out_root / probe).unlink(missing_ok=True)
        if started_here:
            ray.shutdown()


def _collect(ray, items, twins, board, stop, results, bar, stream, out_root, root, t0) -> None:
    pending = dict(items)
    failed: set = set()
    cancelled = False
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
        for ref in ready:
            index, resolved, seed, deps = pending.pop(ref)
            result = _result(ray, ref, resolved, seed, deps, failed, out_root, root)
            if result is None:  # cancelled by Ctrl-C before it started: not counted, like the local backend
                continue
            if result.status not in ("done", "skipped"):
                failed.add(ref)
            record(result, results, bar, stream)
            for twin, twin_seed in twins.pop(index, []):
                adopted = adopt_twin(twin, twin_seed, resolved, seed, root=root) if result.status in ("done", "skipped") \
                    else None
                record(adopted or RunResult(label_of(twin, twin_seed), twin_seed, result.status,
                                             run_dir(twin, twin_seed, root), 0.0,
                                             f"same settings as {result.cell}: {result.message}"),
                        results, bar, stream)
        started = ray.get(board.snapshot.remote())
        running = sum(1 for ref, item in pending.items() if item[0] in started)
        bar.set_postfix_str(f"running {running}, left {len(pending) - running}, {time.perf_counter() - t0:.0f} s")
        if stop.requested and not cancelled:  # no new run starts; the ones under way finish
            cancelled = True
            ray.get(board.stop.remote())


def _result(ray, ref, resolved, seed, deps, failed, out_root, root) -> RunResult | None:
    from ray.exceptions import TaskCancelledError

    try:
        payload = ray.get(ref)
    except TaskCancelledError:
        return None
    except Exception as e:  # noqa: BLE001 - a lost run (retries spent) is reported, the others go on
        if any(d in failed for d in deps):
            status, message = "not_run", "a cell it needs did not finish"
        else:
            status, message = "failed", f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e) else ''}"
        return RunResult(label_of(resolved, seed), seed, status, run_dir(resolved, seed, root), 0.0, message)
    if payload.get("status") == "cancelled":
        return None
    return result_of(payload, out_root)
