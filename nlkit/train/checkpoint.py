"""Periodic, atomic checkpoints so one run can span several time-limited sessions (a preempted Colab, a GPU
command capped at minutes): `nlkit run` re-executes the notebook and training continues from the last one."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..noise.labelfiles import atomic_write


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
        return torch.load(self.path, map_location=map_location, weights_only=False)

    def save(self, state: dict) -> None:
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds
