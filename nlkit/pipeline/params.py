"""Params files: one YAML per table cell, `params/<paper>/<cell>.yaml`, plus profile overlays.

Resolution of a cell under a profile (later wins, dictionaries merge key by key):
  0. `params/<paper>/_defaults.yaml`: what every cell of the paper shares (train block, sources);
  1. the cell file (the faithful, paper-profile settings, each with its `source`);
  2. `params/<paper>/_profiles.yaml`, key <profile>: the overlay every cell of that paper gets;
  3. the cell's own `profiles: {<profile>: ...}` overlay (e.g. a digits stand-in for the smoke profile).
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import hashlib
import json
import os
from pathlib import Path

import yaml

from ..errors import UserError, check_choice, short_text
from ..io import PACKAGED_KIT, kit_path, project_root
from .schema import DEFAULT_TIMEOUT_MIN, PROFILE_NAMES, check_overlay_keys, validate_cell

PROFILES = PROFILE_NAMES
PROFILES_FILE = "_profiles.yaml"
DEFAULTS_FILE = "_defaults.yaml"


def repo_root() -> Path:
    """The project folder holding params/ and notebooks/ (see nlkit.io.project_root)."""
    return project_root()


def deep_merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (overlay or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the same safe subset, faster


# Deepest nesting of mappings and lists a params file may use (the kit's reach 5): copying and checking a deeper one
# recurses past Python's stack limit
MAX_YAML_DEPTH = 32


def load_yaml(text: str, where) -> object:
    """A YAML document the user wrote (params, _defaults, _profiles, _tables), parsed with the safe loader and
    without anchors and aliases: an alias of an alias of ... nine levels deep ("billion laughs") is a few hundred
    bytes that expand to billions of values in any later copy, check, hash or message. The events are scanned
    first, so such a file (or one nested deeper than MAX_YAML_DEPTH) is refused before anything is built from it."""
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_SAFE_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                mark = event.start_mark
                raise UserError(f"{where}: anchors and aliases are not allowed (line {mark.line + 1}); "
                                "write the value out")
            depth += isinstance(event, yaml.CollectionStartEvent) - isinstance(event, yaml.CollectionEndEvent)
            if depth > MAX_YAML_DEPTH:
                raise UserError(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels (line "
                                f"{event.start_mark.line + 1})")
        return yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as e:
        raise UserError(f"{where} is not valid YAML: {short_text(' '.join(str(e).split()), 300)}") from None


def _read_yaml(path: Path) -> dict:
    try:
        stat = path.stat()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None
    return copy.deepcopy(_parsed_yaml(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=512)
def _parsed_yaml(path: str, mtime_ns: int, size: int) -> dict:
    # keyed by modification time and size: an edited file is read again
    try:
        data = load_yaml(Path(path).read_text(), path) or {}
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping")
    return data


def load_cell(path, profile: str = "paper") -> dict:
    """The fully resolved params of one cell under a profile (see the module docstring), checked against the
    params schema (`nlkit.pipeline.schema`): a bad cell raises one UserError naming the file, key and reason."""
    check_choice(profile, PROFILES, "profile")
    path = Path(path)
    if not path.is_file():
        candidate = kit_path(path)
        if not candidate.is_file():
            raise UserError(f"params file not found: {path}")
        path = candidate
    cell = _read_yaml(path)
    defaults = path.parent / DEFAULTS_FILE
    if defaults.is_file():  # what every cell of the paper shares; the cell states only what differs
        cell = deep_merge(_read_yaml(defaults), cell)
    paper = cell.get("paper") or path.parent.name
    overlays = path.parent / PROFILES_FILE
    resolved = {k: v for k, v in cell.items() if k != "profiles"}
    check_overlay_keys(cell.get("profiles"), f"{path}: profiles")
    if overlays.is_file():
        profile_overlays = _read_yaml(overlays)
        check_overlay_keys(profile_overlays, str(overlays))
        resolved = deep_merge(resolved, profile_overlays.get(profile) or {})
    resolved = deep_merge(resolved, (cell.get("profiles") or {}).get(profile) or {})
    resolved.update(paper=paper, cell_id=path.stem, profile=profile, params_file=_display_path(path))
    return validate_cell(resolved)


def _display_path(path: Path) -> str:
    for base in (repo_root(), PACKAGED_KIT):  # 'params/<paper>/<cell>.yaml' also for the installed copy
        try:
            return str(path.resolve().relative_to(base))
        except ValueError:
            pass
    return str(path)


# How a result is presented and cited, not what it depends on: editing these never invalidates a finished run.
PRESENTATION_KEYS = ("tables", "table", "row", "column", "metric", "expected", "sources", "params_file")
# Where and with what a run is scheduled (CPUs, GPU share, SLURM partition): never what it computes.
SCHEDULING_KEYS = ("resources",)


def params_hash(resolved: dict, seed: int) -> str:
    """What a run's result depends on: the resolved settings and the seed (not where outputs go, nor the table
    rows and paper values it is shown beside)."""
    settings = {k: v for k, v in resolved.items() if k not in PRESENTATION_KEYS + SCHEDULING_KEYS}
    settings["noise"] = {k: v for k, v in (resolved.get("noise") or {}).items() if k != "source"} \
        if isinstance(resolved.get("noise"), dict) else resolved.get("noise")
    blob = json.dumps({"params": settings, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def time_limit_min(resolved: dict) -> float:
    """A run's time limit in minutes: its `resources.timeout_min` (profile overlay, cell, or `--timeout-min`),
    else its profile's default (schema.DEFAULT_TIMEOUT_MIN)."""
    return float((resolved.get("resources") or {}).get("timeout_min") or DEFAULT_TIMEOUT_MIN[resolved["profile"]])


def with_time_limit(resolved: dict, minutes: float | None) -> dict:
    """`resolved` with its time limit set to `minutes` (the command line's --timeout-min; None: unchanged). A
    scheduling key: the run stays current."""
    if minutes is None:
        return resolved
    return {**resolved, "resources": {**(resolved.get("resources") or {}), "timeout_min": float(minutes)}}


def find_cells(paper: str | None = None, only: str | None = None, root: Path | None = None) -> list[Path]:
    """Params files, sorted; `paper` selects a folder, `only` a glob over cell names (e.g. 'cifar10-*')."""
    base = root / "params" if root else kit_path("params")
    papers = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if paper:
        names = [p.name for p in papers]
        check_choice(paper, names, "paper")
        papers = [base / paper]
    cells = [f for p in papers for f in sorted(p.glob("*.yaml")) if not f.name.startswith("_")]
    if only:
        cells = [f for f in cells if fnmatch.fnmatch(f.stem, only) or fnmatch.fnmatch(f"{f.parent.name}/{f.stem}", only)]
    return cells


def settings_hash(resolved: dict, seed: int) -> str:
    """What a run computes, whatever cell asks for it: the params hash without the cell's own name. Two cells with
    the same settings hash (e.g. a CIFAR-10 and a CIFAR-100 cell that the smoke profile both swaps for digits) run
    the same computation."""
    return params_hash({**resolved, "cell_id": None}, seed)
