"""The params schema: what a resolved cell may hold, checked (by `load_cell`) before anything runs.

The pipeline's own keys are typed here: names that become folders or notebooks are plain names (no `/`, no
`..`), seeds are integers in [0, 2**32), a `noise:` block holds the keys of its noise model (a rate in [0, 1]
where the model needs one), `needs:` maps an artefact to 'paper/cell', tables name their metric. A paper's own
top-level keys are declared by its method module (`CELL_KEYS`, {name: type}) and its `train:` block is checked by
its `Config.from_cell`; a paper that declares no CELL_KEYS (or has no method module) may add any other key.

A violation raises one UserError naming the params file, the profile, and each key with its reason.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    create_model,
    model_validator,
)

from ..errors import SEED_LIMIT, UserError, short_repr
from ..methods import available_methods, method_for
from ..methods.contract import validation_summary
from ..noise import ASYM_MAPS
from ..noise.setting import NOISE_MODELS

PROFILE_NAMES = ("smoke", "cpu", "quick", "paper")  # = params.PROFILES (params imports this module)
# Each profile's time limit of one run, minutes, where its cell states no `resources.timeout_min`: a hung or stopped
# run fails at this limit instead of blocking the rest. Generous: several times the longest run of the profile
# (smoke: seconds; cpu: <= 30 min; quick: a few hours on one GPU; paper: 300 epochs of InstanceGM on one GPU).
DEFAULT_TIMEOUT_MIN = {"smoke": 30, "cpu": 180, "quick": 720, "paper": 4320}

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _plain_name(value: str) -> str:
    if not _NAME.fullmatch(value) or ".." in value:
        raise ValueError("must be a plain name (letters, digits, '_', '-', '.', '+'; no '/' and no '..') so that "
                         "it stays inside the project")
    return value


def _relative_path(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "~")) or any(p in ("", ".", "..") for p in parts):
        raise ValueError("must be a relative path below the noise root (no leading '/', no '..')")
    return value


def _label(value):
    # a table row or column header written as a bare number in YAML (0.4) is still a label
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


Name = Annotated[StrictStr, AfterValidator(_plain_name)]
Seed = Annotated[StrictInt, Field(ge=0, lt=SEED_LIMIT)]
Rate = Annotated[float, Field(ge=0, le=1)]
Label = Annotated[StrictStr, BeforeValidator(_label)]
NeedRef = Annotated[StrictStr, Field(pattern=r"^[^/]+/[^/]+$"),
                    AfterValidator(lambda v: "/".join(_plain_name(p) for p in v.split("/")))]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Need(_Block):
    """A needed artefact that may also come published: `published` names a file (e.g. the authors' weights) looked
    up in the weights roots (nlkit.pipeline.deps.weights_roots); when it is absent, the run of `cell` provides it."""
    cell: NeedRef
    published: Name


class Expected(_Block):
    value: float | None = None
    tag: StrictStr | None = None
    source: StrictStr | None = None
    unverified: bool = False  # a recalled value not yet checked against the paper: marked ° in every table


class TableEntry(_Block):
    table: Label
    row: Label
    column: Label
    metric: Name | None = None
    expected: Expected | None = None


# noise models that draw a given fraction of the labels (the rest: clean has none, file reads it)
_NEEDS_RATE = {"sym", "sym-incl", "asym", "pairflip", "idn", "pmd", "openset"}


class Noise(_Block):
    model: Literal[NOISE_MODELS + ("openset",)]
    rate: Rate | None = None
    seed: Seed | None = None
    source: StrictStr | None = None                 # citation
    asym_map: Literal[tuple(sorted(ASYM_MAPS))] | None = None
    file: Annotated[StrictStr, AfterValidator(_relative_path)] | None = None   # a published label file
    field: StrictStr | None = None
    sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    label_range: Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=2, max_length=2)] | None = None
    norm_std: Annotated[float, Field(gt=0)] | None = None          # idn (PTD)
    flatten: Literal["hwc", "chw"] | None = None                    # idn (PTD)
    source_dataset: StrictStr | None = None                         # openset: where the replacing images come from

    @model_validator(mode="after")
    def _model_needs(self):
        if self.model in _NEEDS_RATE and self.rate is None:
            raise ValueError(f"noise model {self.model!r} needs a `rate` in [0, 1]")
        if self.model == "file" and not self.file:
            raise ValueError("noise model 'file' needs `file` (a label file below the noise root)")
        if self.label_range and self.label_range[0] >= self.label_range[1]:
            raise ValueError(f"label_range {self.label_range} must be [start, stop) with start < stop")
        return self


Amount = Annotated[float, Field(ge=0)]


class Resources(_Block):
    """Scheduling (see remote.RESOURCE_KEYS): what a run asks of a machine, and how long it may take."""
    num_cpus: Amount | None = None
    num_gpus: Amount | None = None
    memory_gb: Amount | None = None
    max_retries: Annotated[StrictInt, Field(ge=0)] | None = None
    partition: Name | None = None
    time_min: Annotated[float, Field(gt=0)] | None = None      # SLURM's limit of one job
    timeout_min: Annotated[float, Field(gt=0)] | None = None   # a run is stopped after this (DEFAULT_TIMEOUT_MIN)


class Cell(_Block):
    """The keys the pipeline itself reads or adds."""
    paper: Name
    cell_id: Name
    profile: Literal[PROFILE_NAMES]
    params_file: StrictStr
    notebook: Name
    seeds: Annotated[list[Seed], Field(min_length=1)] | None = None
    dataset: Name | None = None
    # a seeded stratified subset of the training / test images (reduced-scale profiles; nlkit.data.stratified_subset)
    train_subset: Annotated[StrictInt, Field(gt=0)] | None = None
    test_subset: Annotated[StrictInt, Field(gt=0)] | None = None
    table: Label | None = None
    row: Label | None = None
    column: Label | None = None
    metric: Name | None = None
    expected: Expected | None = None
    tables: Annotated[list[TableEntry], Field(min_length=1)] | None = None
    sources: dict[str, Any] | None = None
    noise: Noise | None = None
    train: dict[str, Any] | None = None
    needs: dict[Name, NeedRef | Need | None] | None = None
    skip: StrictStr | None = None   # a profile leaves the cell out, saying why (reported as not run)
    # scheduling only (CPUs, GPU share, minutes, partition, a run's time limit); not part of the params hash
    resources: Resources | None = None

    @model_validator(mode="after")
    def _whole_cell(self):
        if self.seeds and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} repeat a seed")
        if self.table is None and not self.tables:
            raise ValueError("names no table ('table' or a 'tables' list)")
        return self


class _OpenCell(Cell):
    model_config = ConfigDict(extra="allow")


@functools.lru_cache(maxsize=None)
def _model_for(paper: str):
    """The schema of one paper's cells: the pipeline's keys plus the method's CELL_KEYS (strict), or the
    pipeline's keys and anything else (a paper without CELL_KEYS or without a method module)."""
    module = method_for(paper) if paper in available_methods() else None
    extra = getattr(module, "CELL_KEYS", None)
    if extra is None:
        return _OpenCell, module
    names = dict.fromkeys(extra, Any) if isinstance(extra, (tuple, list, set, frozenset)) else dict(extra)
    clash = set(names) & set(Cell.model_fields)
    if clash:
        raise TypeError(f"{module.__name__}.CELL_KEYS redeclares pipeline keys {sorted(clash)}")
    fields = {name: (kind | None if kind is not Any else Any, None) for name, kind in names.items()}
    return create_model(f"{paper}_cell", __base__=Cell, **fields), module


def _problems(resolved: dict) -> list[str]:
    paper = resolved.get("paper")
    try:
        _plain_name(str(paper))
    except ValueError as e:  # not even a usable paper name: report it alone
        return [f"paper: {e} (got {short_repr(paper)})"]
    model, module = _model_for(paper)
    try:
        model.model_validate(resolved)
    except ValidationError as e:
        return [validation_summary(e)]
    problems = []
    config = getattr(module, "Config", None)
    if config is not None and hasattr(config, "from_cell"):
        try:
            config.from_cell(resolved)
        except (UserError, TypeError, ValueError) as e:  # e.g. "SLN training settings: train.epochs: ..."
            problems.append(str(e))
    spec = getattr(module, "SPEC", None)
    if spec is not None:
        entries = resolved.get("tables") or [{"metric": resolved.get("metric")}]
        for metric in {e.get("metric") or resolved.get("metric") for e in entries} - {None}:
            if metric not in spec.metrics:
                problems.append(f"metric: {short_repr(metric)} is not one {paper} produces (choose one of: "
                                f"{', '.join(spec.metrics)})")
    return problems


def validate_cell(resolved: dict) -> dict:
    """Raise one UserError listing every problem of a resolved cell (file, profile, key, reason)."""
    problems = _problems(resolved)
    if problems:
        where = f"{resolved.get('params_file')} [{resolved.get('profile')} profile]"
        raise UserError(f"{where}: invalid params: {'; '.join(problems)}")
    return resolved


def check_overlay_keys(overlays, where: str) -> None:
    """`_profiles.yaml` and a cell's `profiles:` map profile names to overlays; a misspelt profile would never
    apply."""
    if overlays is None:
        return
    if not isinstance(overlays, dict):
        raise UserError(f"{where}: profile overlays must be a mapping of {', '.join(PROFILE_NAMES)}")
    unknown = sorted(str(k) for k in overlays if k not in PROFILE_NAMES)
    if unknown:
        raise UserError(f"{where}: unknown profile {', '.join(unknown)} (profiles are {', '.join(PROFILE_NAMES)})")
    bad = sorted(k for k, v in overlays.items() if v is not None and not isinstance(v, dict))
    if bad:
        raise UserError(f"{where}: the overlay of profile {', '.join(bad)} must be a mapping")
