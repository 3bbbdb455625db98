"""`make reproduce`: every matching cell and seed, skipping current runs, then the tables."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from .params import find_cells, load_cell, repo_root
from .runner import RunResult, is_current, run_dir, run_one
from .tables import build_tables


def reproduce(profile: str = "smoke", paper: str | None = None, only: str | None = None, *, data_root=None,
              noise_root=None, executor: str = "auto", root: Path | None = None, stream=None, jobs: int = 1) -> int:
    """Returns 0 when every run finished (or was current), 1 when any failed. Cells whose data is missing are
    reported as not run and do not fail the whole (they are not errors of the kit)."""
    stream = stream or sys.stderr
    cells = find_cells(paper, only)
    if not cells:
        print(f"no params files match paper={paper!r} only={only!r}", file=stream)
        return 1
    plan, skipped = [], 0
    for cell in cells:
        resolved = load_cell(cell, profile)
        if resolved.get("skip"):  # cells this profile leaves out (`skip: <why>` in a profile overlay)
            skipped += 1
            continue
        plan += [(resolved, int(s)) for s in resolved.get("seeds") or [0]]
    if skipped:
        print(f"reproduce [{profile}]: {skipped} cells are not run under this profile (their `skip` says why)",
              file=stream)
    # cells whose outputs others need (e.g. trained SimCLR encoders) declare an earlier `stage`
    plan.sort(key=lambda item: item[0].get("stage", 1))
    todo = [(r, s) for r, s in plan if not is_current(r, s, root)]
    print(f"reproduce [{profile}]: {len(plan)} runs in {len(cells)} cells; {len(plan) - len(todo)} current, "
          f"{len(todo)} to run", file=stream)
    results: list[RunResult] = []
    t0 = time.perf_counter()
    with _stop_after_current_run(stream) as stop, tqdm(total=len(todo), desc="runs", unit="run", file=stream,
                                                         disable=not todo) as bar:
        for resolved, seed in todo:
            if jobs > 1:
                break
            bar.set_postfix_str(f"{resolved['paper']}/{resolved['cell_id']} s{seed}")
            result = run_one(resolved, seed, data_root=data_root, noise_root=noise_root, executor=executor,
                             root=root)
            if stop.requested:  # this run may have been cut short by the same Ctrl-C: it is not counted
                break
            _record(result, results, bar, stream)
        if jobs > 1:
            _run_concurrently(todo, jobs, stop, results, bar, stream, data_root=data_root, noise_root=noise_root,
                              executor=executor, root=root)
    if stop.requested:
        print(f"reproduce [{profile}]: interrupted after {len(results)} of {len(todo)} runs; run it again to "
              "resume (finished runs are kept)", file=stream)
        return 130
    failed = [r for r in results if r.status == "failed"]
    not_run = [r for r in results if r.status == "not_run"]
    done = [r for r in results if r.status == "done"]
    print(f"reproduce [{profile}]: {len(done)} ran, {len(plan) - len(todo)} were current, {len(not_run)} not run "
          f"(data missing), {len(failed)} failed, in {time.perf_counter() - t0:.0f} s", file=stream)
    for r in failed:
        print(f"  FAILED {r.cell}: {r.message} (details: {r.out_dir / 'error.txt'})", file=stream)
    for path in build_tables(profile, paper=paper, root=root):
        print(f"table: {path}", file=stream)
    return 1 if failed else 0


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
    if result.status in ("failed", "not_run"):
        tqdm.write(f"  {result.status.replace('_', ' ')}: {result.cell}: {result.message}", file=stream)
    bar.update(1)


def _run_concurrently(todo, jobs: int, stop, results: list, bar, stream, **options) -> None:
    """Each run in its own `nlkit run` process, `jobs` at a time: isolated kernels and memory, and on a GPU
    several small runs share the device. Ctrl-C lets the runs under way finish and starts no new one."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def one(item):
        resolved, seed = item
        if stop.requested:
            return None
        cmd = [sys.executable, "-m", "nlkit", "run", str(Path(resolved["params_file"])), "--seed", str(seed),
               "--profile", resolved["profile"], "--executor", options["executor"]]
        for flag, key in (("--data-root", "data_root"), ("--noise-root", "noise_root")):
            if options.get(key):
                cmd += [flag, str(options[key])]
        t0 = time.perf_counter()
        # own session: the terminal's Ctrl-C reaches this process only, which lets the runs finish
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(repo_root()), start_new_session=True)
        status = {0: "done", 2: "not_run"}.get(proc.returncode, "failed")
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        message = next((ln for ln in reversed(lines) if ln.startswith(("failed:", "not_run:", "nlkit"))), "")
        label = f"{resolved['paper']}/{resolved['cell_id']} seed {seed}"
        return RunResult(label, seed, status, run_dir(resolved, seed, options["root"]),
                         time.perf_counter() - t0, message.split(": ", 2)[-1] if message else "")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for result in pool.map(one, todo):
            if result is not None:
                _record(result, results, bar, stream)
