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
differs (InstanceGM's) as the very same arrays. LRA-Diffusion gets the same splits plus the frozen features of
the cell's `encoder:` (a SimCLR run it `needs`, CLIP, or the PCA stand-in of the CPU profiles) and no held-out
split, so it selects nothing, like every other row (docs/bench.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import UserError, check_choice
from .contract import PROTOCOL_METRICS, MethodSpec, OpenFraction, PositiveInt, Roots, RunOutput
from .lra_diffusion import EncoderSettings
from .registry import get_method


@dataclass(frozen=True)
class Row:
    method: str              # the registered method (registry name) that implements the row
    select: dict             # top-level cell keys that pick the row inside that method
    label: str               # how the tables name it
    unshared: tuple = ()     # shared train keys the method has no use for (dropped before its Config reads them)


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
    # LRA-Diffusion classifies with a denoiser over f_p features: the shared backbone (`arch`) is not its network
    "lra": Row("lra_diffusion", {}, "LRA-Diffusion", unshared=("arch",)),
}

# Top-level keys a benchmark cell may set beyond the pipeline's own: the row, and what SLN's data step reads.
CELL_KEYS = {
    "bench_method": str,
    "val_fraction": OpenFraction | None,
    "image_size": PositiveInt | None,
    "downsample": PositiveInt | None,
    # LRA-Diffusion's row: its f_p encoder and the train-feature pass (nlkit.methods.lra_diffusion.CELL_KEYS)
    "encoder": EncoderSettings | None,
    "train_feat": Literal["augmented", "clean"] | None,
}

# Every metric name any row writes (each row's own SPEC), so that a table entry may name the EMA's or a peer's.
_ROW_METRICS = ("acc_last_live", "acc_last_ema", "acc_best_test_live", "acc_best_test_ema", "acc_last10",
                "best_epoch", "noise_rate", "epochs", "seconds_per_epoch", "train_seconds", "retrieval_purity",
                "knn_majority_acc", "linear_probe_acc")
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
    row = row_of(cell)
    train = {k: v for k, v in (cell.get("train") or {}).items() if k not in row.unshared}
    return {**cell, "train": train, **row.select}


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
        if hasattr(self.inner, "arch"):
            return self.inner.arch
        # LRA-Diffusion: a denoiser over f_p features, with its own image encoder or none (cached features)
        return f"LRA denoiser, image encoder {self.inner.image_encoder}"


Config = BenchConfig


def prepare(cell: dict, seed: int, roots: Roots | None = None):
    """The same images and noisy labels for every row: SLN's data step on the cell's dataset and noise block.
    The noise is drawn with the cell's noise seed (not the run seed), so every method and seed sees one label set.
    LRA-Diffusion's row gets those splits with its encoder's frozen features (`shared` gives back the splits)."""
    from . import sln

    roots = roots or Roots()
    data = sln.prepare_data(cell, seed, roots.data_root, roots.noise_root)
    if row_of(cell).method != "lra_diffusion":
        return data
    from . import lra_diffusion as lra

    mean, std = lra.normalisation(data.train_images)   # the LRA code's own input normalisation
    empty = data.test_images[:0]
    splits = lra.LRAData(train_images=data.train_images, noisy=data.noisy, clean=data.clean, val_images=empty,
                         val_labels=data.test_labels[:0], test_images=data.test_images, test_labels=data.test_labels,
                         classes=list(data.classes), mean=mean, std=std, pixels=data.pixels,
                         noise_meta=dict(data.noise_meta), train_index=data.train_index)
    return lra.inputs_for(splits, method_cell(cell), seed, roots)


def shared(data):
    """The shared splits of what `prepare` returned (for LRA-Diffusion's row, the splits under its features)."""
    from .lra_diffusion import LRAInputs

    return data.data if isinstance(data, LRAInputs) else data


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
    splits = shared(data)
    output.metrics = {**output.metrics, "bench_method": config.bench_method, "method_module": config.method,
                      "noise_rate": float(np.mean(splits.noisy != splits.clean))}
    return output
