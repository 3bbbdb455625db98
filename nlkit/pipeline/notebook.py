"""What a paper notebook needs from the pipeline when a person runs it by hand: its run folder, the one `nlkit run`
uses (`run_folder`, and `record_run` at the end, so the run counts as the pipeline's), and the artefacts its cell
declares under `needs:` (the TDSM classifier, a SimCLR encoder), found where the pipeline keeps them, or made by
running the needed cell first. Run All then works on a fresh clone, exactly as `make reproduce` would order it."""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import time
from pathlib import Path

from ..errors import UserError
from ..io import project_path
from ..methods.contract import Roots
from .currency import is_current, resolve_needs, run_dir, run_key
from .describe import output_dir
from .executors import portable
from .locks import LOCK_NAME
from .needs import DependencyMissing, dependency_cell, first_seed, need_entries, needs_of
from .runner import ASIDE, _fresh_checkpoints, _recover_aside, _set_aside, record_metrics, run_one, run_threads

# run folder -> (its lock, start time, perf_counter at start): the notebook runs of this kernel that record_run ends
_HAND_RUNS: dict = {}


def run_folder(out_dir, cell: dict, seed: int, data_root=None, needs: dict | None = None) -> Path:
    """Where a paper notebook writes, printed. The pipeline passes `out_dir` (and records the run itself). Run by
    hand (`out_dir` None), the notebook run is the pipeline's run of its cell, profile and seed: the same folder
    as `nlkit run`, the same CPU threads (run_threads), its lock held, checkpoints of other settings discarded, and
    `record_run` writes the same metrics.json, so the tables and `make reproduce` count it as current. With
    artefacts given by hand in `needs` it is an exploration of its own (describe.output_dir)."""
    if out_dir is not None or needs:
        out = output_dir(out_dir, cell, seed)
        print(f"run folder: {portable(out)}")
        return out
    from filelock import FileLock, Timeout

    out = run_dir(cell, seed)
    out.mkdir(parents=True, exist_ok=True)
    held = _HAND_RUNS.pop(out, None)
    if held:  # this kernel ran the notebook before: its lock is still ours
        held[0].release()
    lock = FileLock(out / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"another process is running {cell_ref(cell)} seed {seed} ({cell['profile']}); "
                        f"see {portable(out)}") from None
    # not current again until this run records it; a finished run's evidence waits aside (.previous-run) and is
    # put back by the next pipeline run of this cell if this one never records its metrics
    _recover_aside(out)
    if (out / "metrics.json").is_file():
        _set_aside(out)
    (out / "results.json").unlink(missing_ok=True)
    try:
        _fresh_checkpoints(out, run_key(cell, seed, data_root=data_root))
    except DependencyMissing:
        pass   # its needs run first (notebook_roots); a checkpoint then is one of this run's own settings
    threads = run_threads(cell)
    if threads:
        import torch

        torch.set_num_threads(threads)
    _HAND_RUNS[out] = (lock, _dt.datetime.now(_dt.timezone.utc), time.perf_counter())
    print(f"run folder: {portable(out)} (the pipeline's run of this cell: `nlkit run` and the tables see it)")
    return out


def record_run(out: Path, cell: dict, seed: int, data_root=None) -> None:
    """After `write_results`: record a run by hand begun with `run_folder` as the runner would (metrics.json with
    the run key), and release its lock. Nothing for a run of the pipeline, whose runner records it, nor for an
    unfinished one (a time budget ran out; running the notebook again continues from its checkpoint)."""
    held = _HAND_RUNS.pop(Path(out), None)
    if held is None:
        return
    lock, started, t0 = held
    try:
        results = json.loads((Path(out) / "results.json").read_text())
        if results.get("completed") is False:
            print("time budget reached: run the notebook again to continue from the checkpoint")
            return
        needs = resolve_needs(cell, data_root=data_root)
        key = run_key(cell, seed, data_root=data_root)
        record_metrics(cell, seed, Path(out), results, key, needs.fingerprint, time.perf_counter() - t0,
                       "notebook", started)
        shutil.rmtree(Path(out) / ASIDE, ignore_errors=True)
        print(f"recorded: {portable(Path(out) / 'metrics.json')}")
    finally:
        lock.release()


def notebook_roots(cell: dict, data_root=None, noise_root=None, needs: dict | None = None, *,
                   run_missing: bool = True, executor: str = "auto") -> Roots:
    """The Roots a notebook passes to its paper's `prepare`. `needs` given by hand ({artefact: file}) win;
    otherwise every `needs:` of the cell resolves to the finished artefact of the needed cell under the same
    profile, and a needed cell that has not finished is run first (with its own progress bar) when `run_missing`.
    Relative paths are taken from the project folder."""
    data_root = str(project_path(data_root)) if data_root else None
    noise_root = str(project_path(noise_root)) if noise_root else None
    if needs:
        return Roots(data_root, noise_root, {k: str(project_path(v)) for k, v in needs.items()})
    if not need_entries(cell):
        return Roots(data_root, noise_root, {})
    if run_missing:  # a need met by a published file (e.g. the authors' SimCLR weights) runs nothing
        for ref in needs_of(cell, data_root).values():
            _ensure_finished(ref, cell["profile"], data_root, noise_root, executor, chain=(cell_ref(cell),))
    try:
        found = resolve_needs(cell, data_root=data_root)
    except DependencyMissing as e:
        raise UserError(f"{cell_ref(cell)}: {e}") from None
    return Roots(data_root, noise_root, {k: str(v) for k, v in found.paths.items()})


def show_committed_results(paper: str) -> None:
    """The top of a paper notebook when a person explores it: the kit's real-data runs of this paper (committed
    under outputs/), each profile's reading and table figure, before anything runs."""
    from IPython.display import Image, Markdown, display

    from .tables import committed_results

    shown = committed_results(paper)
    for found in shown:
        display(Markdown(f"**`{found['profile']}` profile, {found['runs']} table cells:** "
                         f"{found['reading'] or 'no reading written yet'}"))
        if found["png"] is not None:
            display(Image(filename=str(found["png"])))
    if not shown:
        print("no real-data (cpu/quick) results of this paper are in outputs/ yet")


def cell_ref(cell: dict) -> str:
    return f"{cell.get('paper')}/{cell.get('cell_id')}"


def _ensure_finished(ref: str, profile: str, data_root, noise_root, executor: str, chain: tuple[str, ...]) -> None:
    if ref in chain:
        raise UserError(f"`needs:` form a cycle: {' -> '.join(chain + (ref,))}")
    dep = dependency_cell(ref, profile)
    for sub in needs_of(dep, data_root).values():  # what the needed cell needs, first
        _ensure_finished(sub, profile, data_root, noise_root, executor, chain + (ref,))
    seed = first_seed(dep)
    if is_current(dep, seed, data_root=data_root):
        return
    print(f"{chain[-1]} needs {ref} ({profile} profile), which has not finished: running it first")
    result = run_one(dep, seed, data_root=data_root, noise_root=noise_root, executor=executor)
    if result.status not in ("done", "skipped"):
        raise UserError(f"{ref} ({profile}) did not finish ({result.status}: {result.message}); "
                        f"see {result.out_dir}")
