"""Files written whole or not at all: a temporary file in the same folder, then an atomic rename, so a reader
(or a run killed mid-write) never sees half a file; inter-process locks for shared entries; and the one rule for
relative paths in notebooks and params files (they mean the same in JupyterLab, whose kernels start in
notebooks/, and on the command line)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def project_root() -> Path:
    """The project folder holding params/ and notebooks/ ($NLKIT_ROOT, else the checkout the package lives in,
    else the working directory)."""
    if os.environ.get("NLKIT_ROOT"):
        return Path(os.environ["NLKIT_ROOT"]).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "params").is_dir():
        return here
    return Path.cwd()


def project_path(path) -> Path | None:
    """A path given in a notebook, a params file or an NLKIT_* variable: `~` expanded, and a relative one taken
    from the project folder, whatever the working directory. None stays None."""
    if path is None or str(path) == "":
        return None
    path = expand_home(path)
    return path if path.is_absolute() else project_root() / path


def expand_home(path) -> Path:
    """`~` and `~user` expanded; a user with no home folder (a typo: `~nosuchuser/x`) is a UserError naming the
    path, not pathlib's RuntimeError."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        from .errors import UserError

        raise UserError(f"cannot expand {str(path)!r}: no home folder for {Path(path).parts[0]!r}") from None


TIME_BUDGET_ENV = "NLKIT_TIME_BUDGET_SECONDS"   # each training loop stops (resumably) after this many seconds


def env_seconds(name: str) -> float | None:
    """A positive, finite number of seconds from the environment variable `name` (unset or empty: None). Anything
    else is a UserError in one line: 0 or a negative budget would stop every run at once."""
    import math

    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        from .errors import UserError

        raise UserError(f"{name} must be a number of seconds > 0, got {text!r}")
    return value


def atomic_write(path, write_fn) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; the file gets the permissions open() would give
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename is None:  # a write() on a full disk names no file: name ours
            e.filename = str(path)
        raise


def atomic_write_json(path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=json_default)
            f.write("\n")

    atomic_write(path, write)


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")




def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def entry_lock(path, timeout: float = -1):
    """Hold an inter-process lock on `<path>.lock` (filelock) while one process computes a shared entry, so
    another waits for it (`timeout` seconds; -1 = as long as it takes) instead of computing it too. Yields
    False, without locking, where the folder cannot hold a lock file (read-only, full): the caller goes on
    unlocked rather than failing."""
    from filelock import FileLock

    lock = FileLock(f"{path}.lock", timeout=timeout)
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
