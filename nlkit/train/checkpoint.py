"""Periodic, atomic checkpoints so one run can span several time-limited sessions (a preempted Colab, a GPU
command capped at minutes): re-running the cell continues from the last one.

Checkpoints are read with ``weights_only=True``: they hold tensors and plain Python values only, so loading one
can never run code. A checkpoint that cannot be read (truncated, damaged, or holding other objects) is moved
aside as ``last.pt.corrupt-<time>`` with one warning, and the run starts fresh.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch

from ..io import atomic_write
from ..safeload import torch_load


class Checkpointer:
    def __init__(self, folder, every_seconds: float = 300.0):
        self.path = Path(folder) / "checkpoints" / "last.pt"
        self.every_seconds = float(every_seconds)
        self._last = time.monotonic()

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, map_location=None) -> dict | None:
        if not self.exists():
            return None
        try:
            state = torch_load(self.path, "a checkpoint", map_location=map_location)
            if not isinstance(state, dict):
                raise TypeError(f"holds a {type(state).__name__}, not a dict")
            return state
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is set aside, never fatal
            aside = self.set_aside("corrupt")
            warnings.warn(f"unreadable checkpoint {self.path} ({type(e).__name__}: {str(e)[:200]}); moved to "
                          f"{aside.name}, starting fresh", stacklevel=2)
            return None

    def set_aside(self, why: str) -> Path:
        """Move the checkpoint out of the way as `last.pt.<why>-<time>` (kept for inspection, never resumed)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.{why}-{stamp}")
        n = 1
        while aside.exists():  # two in the same second: keep both
            n += 1
            aside = self.path.with_name(f"{self.path.name}.{why}-{stamp}-{n}")
        self.path.replace(aside)
        return aside

    def save(self, state: dict) -> None:
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds
