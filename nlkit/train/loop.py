"""The one resumable epoch loop every method trains with.

The method supplies one function per epoch (its step, on the device, no host syncs inside) and two functions that
save and restore its state (networks, optimizers, generators, targets); the loop owns the rest:

- resume from ``<workdir>/checkpoints/last.pt`` (history included) when it exists and was written by the same
  computation (its ``identity``: settings, seed and data, see :func:`run_identity`); a checkpoint of another run
  (a notebook whose parameters changed, writing to the same folder) is set aside with one line, never resumed;
- a checkpoint every few minutes, after the last epoch, on SIGTERM (then it stops), and when the time budget runs
  out (then it stops cleanly and the next run continues);
- a tqdm bar with epoch, chosen statistics and an ETA.

Checkpoints hold only tensors and plain Python values, so they load with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..io import TIME_BUDGET_ENV, env_seconds
from .checkpoint import Checkpointer

BUDGET_ENV = TIME_BUDGET_ENV


class TrainingStopped(RuntimeError):
    """SIGTERM arrived: the loop wrote a checkpoint and stopped; running the cell again continues."""


@dataclass
class LoopResult:
    history: list[dict] = field(default_factory=list)
    completed: bool = True          # False when the time budget ran out first
    resumed_from: int = 0           # epochs already done when this call started


def plain(value):
    """numpy scalars and 0-d tensors as Python numbers, so checkpoints and JSON stay free of pickled objects."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


# Config fields that say how a run is carried out, not what it computes: changing them keeps a checkpoint valid.
_NOT_IDENTITY = frozenset({"checkpoint_every_seconds", "time_budget_seconds", "progress"})


def run_identity(config=None, seed: int | None = None, *arrays, **extra) -> str:
    """A short hash of what a training run computes: its config (a dataclass or a dict, without the fields that
    only schedule checkpoints), its seed, the content of the arrays it trains on (e.g. the noisy labels, which
    differ between noise settings) and any extra named values. Two runs with the same identity may continue
    each other's checkpoints; any other pair must not."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    settings = {k: v for k, v in (config or {}).items() if k not in _NOT_IDENTITY}
    h = hashlib.sha256(json.dumps({"config": settings, "seed": seed, "extra": extra}, sort_keys=True,
                                  default=repr).encode())
    for a in arrays:
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class TrainLoop:
    def __init__(self, workdir=None, *, epochs: int, desc: str = "train", checkpoint_every_seconds: float = 300.0,
                 time_budget_seconds: float | None = None, progress: bool = True, postfix: tuple[str, ...] = (),
                 identity: str | None = None):
        if epochs < 1:
            from ..errors import UserError

            raise UserError(f"epochs must be at least 1, got {epochs}")
        self.epochs = int(epochs)
        self.desc = desc
        self.progress = progress
        self.postfix = postfix
        self.checkpointer = Checkpointer(workdir, checkpoint_every_seconds) if workdir is not None else None
        if time_budget_seconds is None:
            time_budget_seconds = env_seconds(BUDGET_ENV)
        self.time_budget_seconds = time_budget_seconds
        self.identity = identity

    def run(self, epoch_fn: Callable[[int], dict], get_state: Callable[[], dict],
            set_state: Callable[[dict], None], map_location=None) -> LoopResult:
        """Epochs 1..epochs (1-based); `epoch_fn(epoch)` returns that epoch's history row."""
        history: list[dict] = []
        start = 0
        saved = self.checkpointer.load(map_location=map_location) if self.checkpointer else None
        if saved is not None and self.identity is not None and saved.get("identity") != self.identity:
            aside = self.checkpointer.set_aside("other")
            tqdm.write(f"{self.desc}: {self.checkpointer.path} belongs to another run (other settings, seed or "
                       f"data); moved to {aside.name}, starting fresh")
            saved = None
        if saved is not None:
            history, start = self._restore(saved, get_state, set_state)
        result = LoopResult(history, True, start)
        t_start = time.monotonic()

        def save(epoch: int) -> None:
            if self.checkpointer:
                self.checkpointer.save({"method": get_state(), "history": history, "epoch": epoch,
                                        "identity": self.identity})

        bar = tqdm(total=self.epochs, initial=start, desc=self.desc, unit="epoch", disable=not self.progress)
        with bar, _sigterm_flag() as term:
            for epoch in range(start + 1, self.epochs + 1):
                t0 = time.perf_counter()
                row = {"epoch": epoch, **{k: plain(v) for k, v in epoch_fn(epoch).items()}}
                row.setdefault("seconds", time.perf_counter() - t0)
                history.append(row)
                bar.update(1)
                shown = {k: _fmt(row[k]) for k in self.postfix if row.get(k) is not None}
                if shown:
                    bar.set_postfix(shown, refresh=False)
                out_of_time = (self.time_budget_seconds is not None and epoch < self.epochs
                               and time.monotonic() - t_start >= self.time_budget_seconds)
                if epoch == self.epochs or term.requested or out_of_time or \
                        (self.checkpointer and self.checkpointer.due()):
                    save(epoch)
                if term.requested:
                    raise TrainingStopped(f"stopped by SIGTERM after epoch {epoch}; the checkpoint resumes it")
                if out_of_time:
                    result.completed = False
                    tqdm.write(f"{self.desc}: time budget of {self.time_budget_seconds:.0f} s reached after epoch "
                               f"{epoch} of {self.epochs}; run again to continue from the checkpoint")
                    break
        return result


    def _restore(self, saved: dict, get_state: Callable[[], dict], set_state: Callable[[dict], None]
                 ) -> tuple[list[dict], int]:
        """(history, epochs done) from a checkpoint. One that reads but does not fit the method (another
        network's layout, missing entries: written by other code) is set aside like a corrupt one, with one line,
        and the run starts fresh from the state it had before the attempt."""
        before = copy.deepcopy(get_state())
        try:
            history, start = list(saved["history"]), int(saved["epoch"])
            if start < 0:
                raise ValueError(f"epoch {start}")
            set_state(saved["method"])
            return history, start
        except Exception as e:  # noqa: BLE001 - an unusable checkpoint is set aside, never fatal
            set_state(before)
            aside = self.checkpointer.set_aside("unusable")
            tqdm.write(f"{self.desc}: {self.checkpointer.path} does not fit this run ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:200]}); moved to {aside.name}, starting fresh")
            return [], 0


def _fmt(value):
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4g}"
    return value


class _Flag:
    requested = False


@contextmanager
def _sigterm_flag():
    """SIGTERM (a scheduler's pre-emption, a killed notebook) asks the loop to checkpoint and stop at the end of
    the epoch under way. Only the main thread may install handlers; elsewhere the flag stays down."""
    flag = _Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag.requested = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main interpreter thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
