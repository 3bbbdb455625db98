"""One process per run: a lock in the run folder, so two `make reproduce` (or a `--jobs` worker and a local
`nlkit run`) never execute the same run twice. The lock is an OS file lock (filelock): a killed process
releases it, so a stale lock file never blocks the next run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".run.lock"


@contextmanager
def run_lock(out_dir: Path) -> Iterator[bool]:
    """Yield True while this process holds the run's lock, or False at once when another process holds it
    (the caller skips the run with a message rather than waiting hours for it). Creating the run folder or the
    lock file may raise OSError (a read-only or full disk): the caller reports that run as failed."""
    from filelock import FileLock, Timeout

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(out_dir / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()

