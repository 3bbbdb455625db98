"""The contract every paper's method follows, so that notebooks, tests and the pipeline use them alike.

A paper's home (`nlkit/methods/<paper>`) provides:

- ``SPEC``: a :class:`MethodSpec` naming the metrics its tables may read and the artefacts other cells may need;
- ``Config.from_cell(cell)``: its settings from the cell's ``train:`` block (unknown keys are errors);
- ``prepare(cell, seed, roots) -> data``: images, noisy labels and whatever else one run needs;
- ``run(data, config, seed, workdir, ...) -> RunOutput``: history, metrics (protocol metrics included) and the
  artefacts written under ``workdir``.

A notebook calls these and draws figures; :func:`write_results` stores what a run produced, and the runner turns
it into ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError
from ..io import atomic_write, atomic_write_json

# The names every table may read; each paper adds its own in its MethodSpec.
PROTOCOL_METRICS = ("acc_best_test", "acc_last", "acc_val_selected")


@dataclass(frozen=True)
class MethodSpec:
    paper: str
    metrics: tuple[str, ...] = PROTOCOL_METRICS   # what a table's `metric:` may name
    artefacts: tuple[str, ...] = ()               # files a run leaves for dependent cells (e.g. "encoder")

    def check_metric(self, name: str, where: str) -> None:
        if name not in self.metrics:
            raise UserError(f"{where}: metric {name!r} is not one {self.paper} produces; "
                            f"choose one of: {', '.join(self.metrics)}")


@dataclass(frozen=True)
class Roots:
    """Where a run finds its inputs: data, published label files, and the artefacts of the cells it needs
    (`needs:` in its params, resolved by the runner to files)."""
    data_root: str | None = None
    noise_root: str | None = None
    needs: dict[str, str] = field(default_factory=dict)

    def artefact(self, name: str) -> Path:
        if name not in self.needs:
            raise UserError(f"this cell needs the artefact {name!r} of another cell; declare it under `needs:` "
                            "(e.g. `needs: {encoder: simclr/cifar10-simclr}`) and run that cell first")
        return Path(self.needs[name])


@dataclass
class RunOutput:
    history: pd.DataFrame
    metrics: dict                                          # numbers and short lists for metrics.json
    artefacts: dict[str, str] = field(default_factory=dict)  # name -> file name inside the run folder
    state: Any = None                                      # in-memory objects for the notebook's figures
    completed: bool = True                                 # False: stopped by a time budget, resumable


def config_from_cell(config_class, cell: dict, what: str):
    """A method's config dataclass from the cell's `train:` block; an unknown key is an error, not ignored."""
    train = cell.get("train") or {}
    if not isinstance(train, dict):
        raise UserError(f"{what}: `train` must be a mapping, got {type(train).__name__}")
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(train) - names
    if unknown:
        raise UserError(f"unknown {what} training settings: {sorted(unknown)}")
    return config_class(**train)


def write_results(out_dir, output: RunOutput, **extra) -> Path:
    """The one way a run stores its outcome: `history.csv` and `results.json` (metrics, artefacts, `completed`
    and any extra entries), both atomic. The runner reads `results.json` and writes `metrics.json` last."""
    out_dir = Path(out_dir)
    text = output.history.to_csv(index=False)
    atomic_write(out_dir / "history.csv", lambda tmp: Path(tmp).write_text(text))
    results = {**output.metrics, **extra, "artefacts": dict(output.artefacts), "completed": bool(output.completed)}
    path = out_dir / "results.json"
    atomic_write_json(path, results)
    return path
