"""The contract every paper's method follows, so that notebooks, tests and the pipeline use them alike.

A paper's home (`nlkit/methods/<paper>`), and a plug-in method (one module, found by name through
`nlkit.methods.registry`; docs/adding-a-method.md), provides:

- ``SPEC``: a :class:`MethodSpec` naming the metrics its tables may read and the artefacts other cells may need;
- ``Config.from_cell(cell)``: its settings from the cell's ``train:`` block (unknown keys, wrong types and values
  outside the ranges its field annotations declare are errors; see :func:`config_from_cell`);
- optionally ``CELL_KEYS``: the top-level keys its cells may set beyond the pipeline's own (noise, train, seeds,
  tables, ...), as {name: type}; the params schema then rejects any other key. A paper that declares none may use
  any extra key (checked by nobody but its notebook).
- ``prepare(cell, seed, roots) -> data``: images, noisy labels and whatever else one run needs;
- ``run(data, config, seed, workdir, ...) -> RunOutput``: history, metrics (protocol metrics included) and the
  artefacts written under ``workdir``.

A notebook calls these and draws figures; :func:`write_results` stores what a run produced, and the runner turns
it into ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import ConfigDict, Field, ValidationError, create_model
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt  # noqa: F401 - for Config fields

from ..errors import UserError, short_repr
from ..io import atomic_write, atomic_write_json, project_path

# Value ranges for Config fields (and CELL_KEYS): annotate a field with one of these and Config.from_cell rejects
# a value outside it with the key and the reason.
Fraction = Annotated[float, Field(ge=0, le=1)]          # a probability or a decay in [0, 1]
OpenFraction = Annotated[float, Field(gt=0, lt=1)]      # strictly between 0 and 1 (a split fraction)

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
            raise UserError(f"this cell needs the artefact {name!r} of another cell, and none was given; run it "
                            "through the pipeline (`nlkit run`, `make reproduce`), or in a notebook leave `needs` "
                            "empty so that the cell's own `needs:` are resolved")
        return project_path(self.needs[name])


@dataclass
class RunOutput:
    history: pd.DataFrame
    metrics: dict                                          # numbers and short lists for metrics.json
    artefacts: dict[str, str] = field(default_factory=dict)  # name -> file name inside the run folder
    state: Any = None                                      # in-memory objects for the notebook's figures
    completed: bool = True                                 # False: stopped by a time budget, resumable


def config_from_cell(config_class, cell: dict, what: str):
    """A method's config dataclass from the cell's `train:` block. An unknown key, a value of the wrong type (a
    string for a number, 1.5 for an integer, NaN) or outside the range its annotation declares (e.g.
    `epochs: PositiveInt`) is an error naming the key, never ignored or coerced silently."""
    train = cell.get("train") or {}
    if not isinstance(train, dict):
        raise UserError(f"{what}: `train` must be a mapping, got {type(train).__name__}")
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = set(train) - names
    if unknown:
        raise UserError(f"unknown {what} training settings: {sorted(unknown)}")
    try:
        checked = _field_checker(config_class).model_validate(train)
    except ValidationError as e:
        raise UserError(f"{what} training settings: {validation_summary(e, prefix='train.')}") from None
    return config_class(**{k: getattr(checked, k) for k in train})


def validation_summary(error: ValidationError, prefix: str = "") -> str:
    """pydantic's errors as one line: `key: reason (got value)` for each."""
    parts = []
    for item in error.errors():
        key = prefix + ".".join(str(p) for p in item["loc"]) if item["loc"] else prefix.rstrip(".") or "value"
        got = "" if item["type"] in ("missing", "extra_forbidden") else f" (got {short_repr(item.get('input'))})"
        message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        parts.append(f"{key}: {message}{got}")
    return "; ".join(dict.fromkeys(parts))


@functools.lru_cache(maxsize=None)
def _field_checker(config_class):
    """A pydantic model with the dataclass's fields: strict types (no string-to-number or int-to-bool
    coercion; an int is a valid float), finite numbers, the ranges the annotations declare. Sequences keep
    lax mode so that a YAML list fills a tuple field."""
    hints = typing.get_type_hints(config_class, include_extras=True)
    fields = {}
    for f in dataclasses.fields(config_class):
        hint = hints.get(f.name, Any)
        strict = "tuple" not in repr(hint).lower() and "sequence" not in repr(hint).lower()
        if "Literal" in repr(hint):  # a union with a Literal (e.g. bool | 'auto') takes no per-field `strict`; the
            strict = None            # model's strict mode still refuses 1 or "true" for the bool
        if f.default is not dataclasses.MISSING:
            spec = Field(default=f.default, strict=strict)
        elif f.default_factory is not dataclasses.MISSING:
            spec = Field(default_factory=f.default_factory, strict=strict)
        else:
            spec = Field(strict=strict)
        fields[f.name] = (hint, spec)
    return create_model(f"{config_class.__name__}Check",
                        __config__=ConfigDict(strict=True, extra="forbid", allow_inf_nan=False,
                                              arbitrary_types_allowed=True), **fields)


def ran_identity(cell: dict, seed: int) -> dict:
    """Which cell a run computed: its params file, profile and seed (`ran` in results.json and metrics.json). The
    runner refuses results whose identity is not that of the run it asked for, e.g. a notebook whose later cell
    set another `params_file`."""
    return {"params_file": cell.get("params_file"), "profile": cell.get("profile"), "seed": int(seed)}


def write_results(out_dir, output: RunOutput, *, cell: dict, seed: int, **extra) -> Path:
    """The one way a run stores its outcome: `history.csv` and `results.json` (metrics, artefacts, `completed`,
    the identity of the cell and seed it ran, and any extra entries), both atomic. The runner reads `results.json`
    and writes `metrics.json` last."""
    out_dir = Path(out_dir)
    text = output.history.to_csv(index=False)
    atomic_write(out_dir / "history.csv", lambda tmp: Path(tmp).write_text(text))
    results = {**output.metrics, **extra, "artefacts": dict(output.artefacts), "completed": bool(output.completed),
               "ran": ran_identity(cell, seed)}
    path = out_dir / "results.json"
    atomic_write_json(path, results)
    return path
