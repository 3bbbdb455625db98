"""The one interface every execution backend implements (local workers, Ray tasks, SLURM jobs), and what they share:
the stop flag Ctrl-C sets and the recording of each result as its run finishes."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from tqdm.auto import tqdm

from .runner import RunResult


class Backend(Protocol):
    """Runs `todo` ((resolved cell, seed) pairs, the cells they need first) and `record`s each run's result into
    `results` as it finishes: a run starts only once the runs of the cells it needs have finished (a failed one makes
    it 'not run'), and once `stop.requested` no new run starts. Backend-specific options (`jobs`, a Ray address,
    SLURM's partition ...) come as further keywords."""

    def __call__(self, todo: list[tuple[dict, int]], stop: StopFlag, results: list[RunResult], bar, stream, *,
                 data_root=None, noise_root=None, executor: str = "auto", root: Path | None = None,
                 **backend_options) -> None: ...


class StopFlag:
    """Set by Ctrl-C (reproduce._stop_after_current_run): a backend starts no new run."""

    requested = False


def record(result: RunResult, results: list, bar, stream) -> None:
    """Keep a finished run's result, say so when it did not succeed, and advance the progress bar."""
    results.append(result)
    if result.status in ("failed", "not_run", "stopped", "busy"):
        tqdm.write(f"  {result.status.replace('_', ' ')}: {result.cell}: {result.message}", file=stream)
    bar.update(1)
