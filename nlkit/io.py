"""Files written whole or not at all: a temporary file in the same folder, then an atomic rename, so a reader
(or a run killed mid-write) never sees half a file; inter-process locks for shared entries; and the one rule for
relative paths in notebooks and params files (they mean the same in JupyterLab, whose kernels start in
notebooks/, and on the command line)."""

from __future__ import annotations

import json
import math
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


# The copy of params/, notebooks/ and docs/ that an installed (non-editable) package carries (see setup.py).
PACKAGED_KIT = Path(__file__).resolve().parent / "_kit"


def kit_path(relative) -> Path:
    """A file or folder the kit ships, e.g. 'params' or 'notebooks/sln.ipynb': the project folder's own where it
    has one (a checkout, whose edits win), else the copy installed with the package (a `pip install` without a
    checkout, as on Colab)."""
    own = project_root() / relative
    if own.exists():
        return own
    packaged = PACKAGED_KIT / relative
    return packaged if packaged.exists() else own


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


# Longest integer a recorded file may hold: seeds, counts and sizes fit; a 400-digit one is no measurement, and
# float() of it (the tables' mean) overflows.
MAX_INT_DIGITS = 30


class BadJsonValue(ValueError):
    """A recorded JSON file that parses but holds a value no result can be (NaN, an overflowing number)."""


class _Refused:
    def __init__(self, why: str):
        self.why = why


def _bounded_int(text: str):
    digits = len(text.lstrip("-"))
    return _Refused(f"an integer of {digits} digits") if digits > MAX_INT_DIGITS else int(text)


def _finite_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"{text[:40]} overflows")


def loads_strict(text: str):
    """JSON as the kit records it: NaN and +-Infinity (which json writes and reads by default, but no result can
    be), numbers that overflow to infinity (1e999) and integers of more than MAX_INT_DIGITS digits raise
    BadJsonValue naming the field (e.g. `needs.encoder.sha256: NaN is not a number`); bad JSON, ValueError."""
    data = json.loads(text, parse_constant=lambda name: _Refused(f"{name} is not a number"),
                      parse_int=_bounded_int, parse_float=_finite_float)
    stack = [("", data)]
    while stack:  # iterative: a deeply nested file must not exhaust the stack here either
        where, value = stack.pop()
        if isinstance(value, _Refused):
            raise BadJsonValue(f"{where or 'value'}: {value.why}")
        if isinstance(value, dict):
            stack += [(f"{where}.{k}" if where else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    return data


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
