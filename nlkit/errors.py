"""Errors that describe bad input or missing data.

The CLI turns these into one line on stderr and exit code 2, and so it does with the machine's own errors (a full
disk, a read-only folder: see ENVIRONMENT_ERRNOS); anything else is a bug and keeps its traceback.
"""

import errno
import reprlib

import numpy as np


class UserError(ValueError):
    """Bad input from the user: an unknown name, a value out of range, a malformed file."""


class Terminated(SystemExit):
    """SIGTERM reached an `nlkit` command: it unwinds (kernels shut down, their connection files removed) and exits
    with 143. Not the notebook's own sys.exit(): the direct executor lets it through."""


class DataMissingError(UserError):
    """A dataset or file is not on disk and cannot be downloaded."""


def check_rate(rate: float, name: str = "rate") -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"{name} must lie in [0, 1], got {rate:g}")
    return rate


SEED_LIMIT = 2**32  # numpy's RandomState (the published generators) takes seeds in [0, 2**32)


def check_seed(seed, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < SEED_LIMIT:
        raise UserError(f"{name} must be an integer in [0, 2**32), got {short_repr(seed)}")
    return int(seed)


def check_choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise UserError(f"unknown {what} {short_repr(value)}; choose one of: {', '.join(sorted(choices))}")
    return value


def short_text(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def short_repr(value, limit: int = 60) -> str:
    """A value for an error message, cut to about `limit` characters without building its whole repr first (a
    nested list of a billion items, a string of a gigabyte): reprlib stops at a few items per level."""
    r = reprlib.Repr()
    r.maxlevel = 3
    r.maxdict = r.maxlist = r.maxtuple = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 6
    r.maxstring = r.maxlong = r.maxother = limit
    try:
        text = r.repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        text = f"<{type(value).__name__}>"
    return short_text(text, limit)


# errors of the machine rather than of the kit: reported in one line naming the path, never as a traceback
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO,
                                errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EMFILE})


def describe_os_error(e: OSError, where=None) -> str:
    """'No space left on device: outputs/.../metrics.json': what happened and to which path, in one line. An error
    that names no file (a write() on a full disk) names `where` (the folder being written), when given."""
    if e.filename is None:
        what = " ".join(f"{e.strerror or type(e).__name__}{': ' + str(e) if not e.strerror else ''}".split())
        return f"{what} (writing under {where})" if where is not None else what
    where = str(e.filename) + (f" -> {e.filename2}" if e.filename2 else "")
    return f"{e.strerror or type(e).__name__}: {where}"
