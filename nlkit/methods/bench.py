"""The benchmark study: every classifier method of the kit on the same images, the same noisy labels and the same
budget, so that their numbers can be set side by side (the papers each report on their own noise files, backbone
and schedule).

One benchmark cell is one (method, noise setting) pair. Its top-level `bench_method` names a row of `ROWS`: the
registered method that implements it (`registry.get_method`) and the settings that select the row inside that
method (e.g. SLN's `method: ce` is CE). The cell's `train:` block is that method's own (its paper defaults,
written into the cell by `params/bench/make_cells.py`, plus the benchmark's shared overrides per profile: the
backbone, the epoch budget and the schedule scaled to it), checked by the method's own `Config.from_cell`.

The data step is the same for every row: SLN's (`sln.prepare_data`: the cell's dataset, its noise block drawn on
the full training set with the cell's seed, the same stratified subsets), handed to a method whose data type
differs (InstanceGM's) as the very same arrays. LRA-Diffusion is not a row: it trains on an encoder's features
and needs that encoder's run first (docs/bench.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UserError, check_choice
from .contract import PROTOCOL_METRICS, MethodSpec, OpenFraction, PositiveInt, Roots, RunOutput
from .registry import get_method


@dataclass(frozen=True)
class Row:
    method: str              # the registered method (registry name) that implements the row
    select: dict             # top-level cell keys that pick the row inside that method
    label: str               # how the tables name it


# bench_method -> the method that runs it. SLN-MO is not a cell of its own: it is the EMA net of the SLN run
# (the cell's second table entry reads acc_last_ema), as in the SLN paper.
ROWS: dict[str, Row] = {
    "ce": Row("sln", {"method": "ce", "report_net": "live"}, "CE"),
    "sln": Row("sln", {"method": "sln", "report_net": "live"}, "SLN"),
    "slnmolc": Row("sln", {"method": "slnmolc", "report_net": "ema"}, "SLN-MO-LC"),
    "dividemix": Row("instancegm", {"method": "dividemix"}, "DivideMix"),
    "instancegm": Row("instancegm", {"method": "instancegm"}, "InstanceGM"),
    "gce": Row("gce", {}, "GCE"),
    "coteaching": Row("coteaching", {}, "Co-teaching"),
}

# Top-level keys a benchmark cell may set beyond the pipeline's own: the row, and what SLN's data step reads.
CELL_KEYS = {
    "bench_method": str,
    "val_fraction": OpenFraction | None,
    "image_size": PositiveInt | None,
    "downsample": PositiveInt | None,
}

# Every metric name any row writes (each row's own SPEC), so that a table entry may name the EMA's or a peer's.
_ROW_METRICS = ("acc_last_live", "acc_last_ema", "acc_best_test_live", "acc_best_test_ema", "acc_last10",
                "best_epoch", "noise_rate", "epochs", "seconds_per_epoch", "train_seconds")
SPEC = MethodSpec("bench", metrics=PROTOCOL_METRICS + _ROW_METRICS)


def row_of(cell: dict) -> Row:
    name = cell.get("bench_method")
    if name is None:
        raise UserError(f"{cell.get('params_file', 'a benchmark cell')}: names no `bench_method` "
                        f"(one of: {', '.join(ROWS)})")
    check_choice(name, tuple(ROWS), "bench_method")
    return ROWS[name]


def method_cell(cell: dict) -> dict:
    """The cell as the row's own method reads it: the selecting keys added (never set by a benchmark cell)."""
    return {**cell, **row_of(cell).select}


@dataclass
class BenchConfig:
    bench_method: str
    method: str          # the registered method that runs the row
    inner: Any           # that method's Config, built by its own from_cell

    @classmethod
    def from_cell(cls, cell: dict) -> "BenchConfig":
        row = row_of(cell)
        inner = get_method(row.method).Config.from_cell(method_cell(cell))
        return cls(cell["bench_method"], row.method, inner)

    @property
    def epochs(self) -> int:
        return self.inner.epochs

    @property
    def arch(self) -> str:
        return self.inner.arch


Config = BenchConfig


def prepare(cell: dict, seed: int, roots: Roots | None = None):
    """The same images and noisy labels for every row: SLN's data step on the cell's dataset and noise block.
    The noise is drawn with the cell's noise seed (not the run seed), so every method and seed sees one label set."""
    from . import sln

    roots = roots or Roots()
    return sln.prepare_data(cell, seed, roots.data_root, roots.noise_root)


def as_method_data(data, config: BenchConfig):
    """The shared data in the type the row's method takes (InstanceGM's IGMData holds the same arrays)."""
    if config.method != "instancegm":
        return data
    from .instancegm import IGMData

    return IGMData(train_images=data.train_images, noisy=data.noisy, clean=data.clean,
                   test_images=data.test_images, test_labels=data.test_labels, classes=list(data.classes),
                   pixels=data.pixels, noise_meta=dict(data.noise_meta))


def run(data, config: BenchConfig, seed: int, workdir=None, *, device=None, progress: bool = True) -> RunOutput:
    """Run the row's own method on the shared data; its metrics plus the row's name."""
    output = get_method(config.method).run(as_method_data(data, config), config.inner, seed, workdir,
                                           device=device, progress=progress)
    output.metrics = {**output.metrics, "bench_method": config.bench_method, "method_module": config.method,
                      "noise_rate": float(data.noisy_mask.mean())}
    return output
