"""How a run's notebook is executed: papermill (a fresh kernel, the executed notebook with its outputs) or
directly in this process (machines without Jupyter)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..errors import DataMissingError, UserError
from ..io import atomic_write
from .params import repo_root


def papermill_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("papermill", "ipykernel"))


def notebook_path(resolved: dict) -> Path:
    path = repo_root() / "notebooks" / f"{resolved['notebook']}.ipynb"
    if not path.is_file():
        raise UserError(f"notebook not found: {path}")
    return path


def execute_papermill(notebook: Path, out_dir: Path, parameters: dict) -> None:
    import papermill as pm

    executed = out_dir / "notebook.ipynb"
    # papermill rewrites its output after every cell: it writes a hidden file that replaces notebook.ipynb whole
    # once execution ends, so a full disk or a killed run never leaves a truncated notebook.ipynb
    partial = out_dir / ".notebook.partial.ipynb"
    try:
        pm.execute_notebook(str(notebook), str(partial), parameters=parameters, kernel_name="python3",
                            cwd=str(repo_root()), progress_bar=False)
    except pm.PapermillExecutionError as e:
        _publish_notebook(partial, executed, quiet=True)
        if e.ename == "DataMissingError":
            raise DataMissingError(e.evalue) from None
        raise RuntimeError(f"{e.ename}: {e.evalue} (cell {e.exec_count}; see {executed})") from None
    except BaseException:
        _publish_notebook(partial, executed, quiet=True)
        raise
    _publish_notebook(partial, executed)


def _publish_notebook(partial: Path, executed: Path, quiet: bool = False) -> None:
    """Replace `executed` with the finished `partial` (paths made portable), atomically. A partial that is not a
    whole notebook (the disk filled up, the kernel was killed mid-write) is dropped. `quiet`: an error is already
    on its way, so a failure here must not hide it."""
    try:
        if not partial.is_file():
            return
        try:
            nb = json.loads(partial.read_text())
        except ValueError:
            return
        _portable_papermill_metadata(nb)
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        atomic_write(executed, lambda tmp: Path(tmp).write_text(text))
    except OSError:
        if not quiet:
            raise
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass


def _portable_papermill_metadata(nb: dict) -> None:
    """papermill records absolute input/output paths; keep executed copies free of this machine's paths (and
    name the published file, not the partial one)."""
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = portable(meta[key])
    if meta.get("output_path"):
        meta["output_path"] = meta["output_path"].replace(".notebook.partial.ipynb", "notebook.ipynb")


def notebook_code_cells(notebook: Path, parameters: dict) -> list[str]:
    """The notebook's code, with a cell assigning `parameters` right after the cell tagged 'parameters'
    (what papermill does), so a direct run follows exactly the notebook's code path."""
    nb = json.loads(notebook.read_text())
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        cells.append("".join(cell["source"]))
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cells.append("\n".join(f"{k} = {v!r}" for k, v in parameters.items()))
    return cells


def execute_direct(notebook: Path, out_dir: Path, parameters: dict) -> None:
    """Run the notebook's code in this process (machines without Jupyter). matplotlib draws off-screen."""
    import os

    import matplotlib

    matplotlib.use("Agg")
    _ensure_display()
    namespace = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(repo_root())
    try:
        for i, code in enumerate(notebook_code_cells(notebook, parameters)):
            exec(compile(code, f"{notebook.name}[code cell {i}]", "exec"), namespace)  # noqa: S102
    finally:
        os.chdir(cwd)
        import matplotlib.pyplot as plt

        plt.close("all")


def _ensure_display() -> None:
    """Notebooks call IPython's display(); where IPython is absent, print a text form instead."""
    if importlib.util.find_spec("IPython") is not None:
        return
    import sys
    import types

    def display(*objs, **_):
        for obj in objs:
            if not hasattr(obj, "savefig"):
                print(obj)

    ipython = types.ModuleType("IPython")
    ipython.display = types.ModuleType("IPython.display")
    ipython.display.display = display
    sys.modules.update({"IPython": ipython, "IPython.display": ipython.display})


def portable(path) -> str:
    """`path` relative to the project folder when it lies inside it or beside it, else as given."""
    path = Path(path).absolute()
    root = repo_root()
    for base, prefix in ((root, ""), (root.parent, "../")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


