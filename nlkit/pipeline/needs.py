"""Cell dependencies as declared: `needs: {<artefact>: <paper>/<cell>}` in a params file.

A run that needs another cell's artefact (an LRA cell the SimCLR encoder, a TDSM cell its noisy-label classifier)
gets the file that the dependency's finished run listed under that name in its `metrics.json`; the dependency's
first seed provides it. How a need folds into the dependent's run key is currency.py's part.

An artefact may also come published (e.g. the authors' encoder weights):
`needs: {<artefact>: {cell: <paper>/<cell>, published: <file name>}}`. When that file lies in one of the weights
roots (`weights_roots`) it is used and the cell is not needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UserError, short_repr
from ..io import expand_home, kit_path
from .params import load_cell


WEIGHTS_FOLDER = "weights"


class DependencyMissing(UserError):
    """A cell this run needs has not finished under the same profile (or left no such artefact)."""


def weights_roots(data_root=None) -> list[Path]:
    """Where published weights are looked up, first match wins: $NLKIT_WEIGHTS_ROOT, <data_root>/weights (the
    --data-root of the run), <default data root>/weights ($NLKIT_DATA_ROOT or ./data)."""
    from ..data import default_data_root

    roots = [expand_home(os.environ["NLKIT_WEIGHTS_ROOT"])] if os.environ.get("NLKIT_WEIGHTS_ROOT") else []
    if data_root:
        roots.append(expand_home(data_root) / WEIGHTS_FOLDER)
    roots.append(Path(default_data_root()) / WEIGHTS_FOLDER)
    return roots


def published_file(name: str, data_root=None) -> Path | None:
    """The published file `name` in the first weights root holding it, else None."""
    return next((root / name for root in weights_roots(data_root) if (root / name).is_file()), None)


def need_entries(resolved: dict) -> dict[str, tuple[str, str | None]]:
    """The cell's `needs` as {artefact: (paper/cell, published file name or None)}; an entry set to null (e.g. by
    a profile overlay that swaps the encoder for PCA) is no dependency."""
    needs = resolved.get("needs") or {}
    if not isinstance(needs, dict):
        raise UserError(f"{resolved.get('params_file')}: `needs` must map an artefact name to 'paper/cell'")
    out = {}
    for name, entry in needs.items():
        if entry is None:
            continue
        ref, published = (entry.get("cell"), entry.get("published")) if isinstance(entry, dict) else (entry, None)
        if not isinstance(ref, str) or ref.count("/") != 1 or any(p in ("", ".", "..") for p in ref.split("/")):
            raise UserError(f"{resolved.get('params_file')}: needs.{name} must be 'paper/cell', got {short_repr(ref)}")
        out[str(name)] = (ref, published)
    return out


def needs_of(resolved: dict, data_root=None) -> dict[str, str]:
    """The cells that must have run first, as {artefact: "paper/cell"}: every need whose published file (if it
    names one) is not in the weights roots."""
    return {name: ref for name, (ref, published) in need_entries(resolved).items()
            if not (published and published_file(published, data_root))}


def dependency_cell(ref: str, profile: str) -> dict:
    paper, cell = ref.split("/")
    path = kit_path("params") / paper / f"{cell}.yaml"
    if not path.parent.is_dir():
        raise UserError(f"needed cell {ref} names an unknown paper {paper!r} (no params/{paper}/)")
    if not path.is_file():
        raise UserError(f"needed cell {ref} has no params file (params/{paper}/{cell}.yaml)")
    return load_cell(path, profile)


def first_seed(resolved: dict) -> int:
    return int((resolved.get("seeds") or [0])[0])
