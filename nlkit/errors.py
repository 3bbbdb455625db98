"""Errors that describe bad input or missing data.

The CLI turns these into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(ValueError):
    """Bad input from the user: an unknown name, a value out of range, a malformed file."""


class DataMissingError(UserError):
    """A dataset or file is not on disk and cannot be downloaded."""


def check_rate(rate: float, name: str = "rate") -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"{name} must lie in [0, 1], got {rate:g}")
    return rate


def check_choice(value: str, choices, what: str) -> str:
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}; choose one of: {', '.join(sorted(choices))}")
    return value
