"""Planning a reproduce: which runs a selection of cells makes, in which order (the cells they need first, through
the graph of `needs:`), which cannot run and why, and which of them are still to run (not current)."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .currency import is_current
from .needs import dependency_cell, needs_of
from .params import find_cells, load_cell


def plan_runs(profile: str, paper: str | None = None, only: str | None = None, stream=None, data_root=None):
    """Every (resolved cell, seed) to consider, the cells they need included, dependencies first (a need met by a
    published file under the weights roots of `data_root` pulls in no cell); the cells that could not be resolved;
    and the cells that cannot run because of what they need, with the reason (a needed cell that is missing,
    invalid or of an unknown paper, or a cycle of `needs:`, reported as A → B → A). The whole dependency graph of
    the selection is checked before anything runs: one bad `needs:` stops only the cells that depend on it, never
    the others."""
    bad: list = []
    cells: dict[str, dict] = {}        # "paper/cell" -> resolved, for every cell of the graph that loads
    broken: dict[str, str] = {}        # "paper/cell" -> why a needed cell cannot be loaded
    skipped = 0
    selected = []
    for cell in find_cells(paper, only):
        try:
            resolved = load_cell(cell, profile)
            if profile != "paper":   # the cell's own settings must hold too, not only this profile's overlay
                load_cell(cell, "paper")
        except UserError as e:   # names the file and the profile it is invalid under
            bad.append((cell, str(e)))
            continue
        if resolved.get("skip"):  # cells this profile leaves out (`skip: <why>` in a profile overlay)
            skipped += 1
            continue
        ref = f"{resolved['paper']}/{resolved['cell_id']}"
        cells[ref] = resolved
        selected.append(ref)
    if skipped and stream is not None:
        print(f"reproduce [{profile}]: {skipped} cells are not run under this profile (their `skip` says why)",
              file=stream)

    order: list[str] = []              # dependencies first
    state: dict[str, str] = {}         # "visiting" while its dependencies are explored, then "done"
    blocked: dict[str, str] = {}       # "paper/cell" -> why it cannot run
    in_cycle: dict[str, str] = {}

    def visit(ref: str, path: list[str]) -> None:
        if state.get(ref) == "done":
            return
        if state.get(ref) == "visiting":   # back to a cell under exploration: every cell from it on is a cycle
            cycle = path[path.index(ref):] + [ref]
            for member in cycle[:-1]:
                in_cycle.setdefault(member, f"its needs form a cycle: {' → '.join(cycle)}")
            return
        if ref not in cells:
            try:
                cells[ref] = dependency_cell(ref, profile)
            except UserError as e:
                why = str(e)
                broken[ref] = why if why.startswith("needed cell") else f"needed cell {ref} is invalid: {why}"
                state[ref] = "done"
                return
        state[ref] = "visiting"
        needs = list(needs_of(cells[ref], data_root).values())
        for dep in needs:
            visit(dep, path + [ref])
        state[ref] = "done"
        reason = in_cycle.get(ref)
        for dep in needs:
            if reason:
                break
            if dep in broken:
                reason = broken[dep]
            elif dep in blocked or dep in in_cycle:
                reason = f"needs {dep}, which cannot run ({blocked.get(dep) or in_cycle[dep]})"
        if reason:
            blocked[ref] = reason
        else:
            order.append(ref)

    for ref in selected:
        visit(ref, [])
    plan = [(cells[ref], int(s)) for ref in order for s in cells[ref].get("seeds") or [0]]
    not_runnable = [(cells[ref], int(s), blocked[ref]) for ref in blocked if ref in cells
                    for s in cells[ref].get("seeds") or [0]]
    return plan, bad, not_runnable


def runs_to_do(plan, root: Path | None = None, data_root=None) -> list:
    """The planned runs that are not current (finished with their cell's current params and needs)."""
    return [(r, s) for r, s in plan if not is_current(r, s, root, data_root=data_root)]
