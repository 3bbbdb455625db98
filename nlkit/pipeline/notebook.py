"""What a paper notebook needs from the pipeline when a person runs it by hand: the artefacts its cell declares
under `needs:` (the TDSM classifier, a SimCLR encoder), found where the pipeline keeps them, or made by running
the needed cell first. Run All then works on a fresh clone, exactly as `make reproduce` would order it."""

from __future__ import annotations

from ..errors import UserError
from ..io import project_path
from ..methods.contract import Roots
from .currency import is_current, resolve_needs
from .needs import DependencyMissing, dependency_cell, first_seed, need_entries, needs_of
from .runner import run_one


def notebook_roots(cell: dict, data_root=None, noise_root=None, needs: dict | None = None, *,
                   run_missing: bool = True, executor: str = "auto") -> Roots:
    """The Roots a notebook passes to its paper's `prepare`. `needs` given by hand ({artefact: file}) win;
    otherwise every `needs:` of the cell resolves to the finished artefact of the needed cell under the same
    profile, and a needed cell that has not finished is run first (with its own progress bar) when `run_missing`.
    Relative paths are taken from the project folder."""
    data_root = str(project_path(data_root)) if data_root else None
    noise_root = str(project_path(noise_root)) if noise_root else None
    if needs:
        return Roots(data_root, noise_root, {k: str(project_path(v)) for k, v in needs.items()})
    if not need_entries(cell):
        return Roots(data_root, noise_root, {})
    if run_missing:  # a need met by a published file (e.g. the authors' SimCLR weights) runs nothing
        for ref in needs_of(cell, data_root).values():
            _ensure_finished(ref, cell["profile"], data_root, noise_root, executor, chain=(cell_ref(cell),))
    try:
        found = resolve_needs(cell, data_root=data_root)
    except DependencyMissing as e:
        raise UserError(f"{cell_ref(cell)}: {e}") from None
    return Roots(data_root, noise_root, {k: str(v) for k, v in found.paths.items()})


def show_committed_results(paper: str) -> None:
    """The top of a paper notebook when a person explores it: the kit's real-data runs of this paper (committed
    under outputs/), each profile's reading and table figure, before anything runs."""
    from IPython.display import Image, Markdown, display

    from .tables import committed_results

    shown = committed_results(paper)
    for found in shown:
        display(Markdown(f"**`{found['profile']}` profile, {found['runs']} table cells:** "
                         f"{found['reading'] or 'no reading written yet'}"))
        if found["png"] is not None:
            display(Image(filename=str(found["png"])))
    if not shown:
        print("no real-data (cpu/quick) results of this paper are in outputs/ yet")


def cell_ref(cell: dict) -> str:
    return f"{cell.get('paper')}/{cell.get('cell_id')}"


def _ensure_finished(ref: str, profile: str, data_root, noise_root, executor: str, chain: tuple[str, ...]) -> None:
    if ref in chain:
        raise UserError(f"`needs:` form a cycle: {' -> '.join(chain + (ref,))}")
    dep = dependency_cell(ref, profile)
    for sub in needs_of(dep, data_root).values():  # what the needed cell needs, first
        _ensure_finished(sub, profile, data_root, noise_root, executor, chain + (ref,))
    seed = first_seed(dep)
    if is_current(dep, seed, data_root=data_root):
        return
    print(f"{chain[-1]} needs {ref} ({profile} profile), which has not finished: running it first")
    result = run_one(dep, seed, data_root=data_root, noise_root=noise_root, executor=executor)
    if result.status not in ("done", "skipped"):
        raise UserError(f"{ref} ({profile}) did not finish ({result.status}: {result.message}); "
                        f"see {result.out_dir}")
