"""Run one table cell for one seed: execute the paper's notebook (papermill, or directly without Jupyter)
and write `metrics.json` last and atomically, so its presence means the run finished."""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import platform
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import DataMissingError, UserError
from ..io import atomic_write, atomic_write_json
from .params import load_cell, params_hash, repo_root

METRIC_KEYS = ("acc_best_test", "acc_last", "acc_val_selected")


@dataclass
class RunResult:
    cell: str
    seed: int
    status: str          # done | skipped | failed | not_run
    out_dir: Path
    seconds: float = 0.0
    message: str = ""


def outputs_root() -> Path:
    return repo_root() / "outputs"


def run_dir(resolved: dict, seed: int, root: Path | None = None) -> Path:
    return (root or outputs_root()) / resolved["profile"] / resolved["paper"] / resolved["cell_id"] / f"seed{seed}"


def metrics_path(resolved: dict, seed: int, root: Path | None = None) -> Path:
    return run_dir(resolved, seed, root) / "metrics.json"


def is_current(resolved: dict, seed: int, root: Path | None = None) -> bool:
    path = metrics_path(resolved, seed, root)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("params_hash") == params_hash(resolved, seed)
    except (OSError, json.JSONDecodeError):
        return False


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()})"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo_root()), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def papermill_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("papermill", "ipykernel"))


def _notebook_path(resolved: dict) -> Path:
    path = repo_root() / "notebooks" / f"{resolved['notebook']}.ipynb"
    if not path.is_file():
        raise UserError(f"notebook not found: {path}")
    return path


def _execute_papermill(notebook: Path, out_dir: Path, parameters: dict) -> None:
    import papermill as pm

    executed = out_dir / "notebook.ipynb"
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters=parameters, kernel_name="python3",
                            cwd=str(repo_root()), progress_bar=False)
    except pm.PapermillExecutionError as e:
        if e.ename == "DataMissingError":
            raise DataMissingError(e.evalue) from None
        raise RuntimeError(f"{e.ename}: {e.evalue} (cell {e.exec_count}; see {executed})") from None
    finally:
        portable_papermill_paths(executed)


def portable_papermill_paths(executed: Path) -> None:
    """papermill records absolute input/output paths; keep executed copies free of this machine's paths."""
    if not executed.is_file():
        return
    nb = json.loads(executed.read_text())
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = _portable(meta[key])
    text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    atomic_write(executed, lambda tmp: Path(tmp).write_text(text))


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


def _execute_direct(notebook: Path, out_dir: Path, parameters: dict) -> None:
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


def run_cell(params_file, profile: str = "smoke", seed: int | None = None, *, data_root=None, noise_root=None,
             executor: str = "auto", force: bool = False, root: Path | None = None) -> list[RunResult]:
    """Run one cell for one seed (or every seed its params list). Finished, current runs are skipped."""
    resolved = load_cell(params_file, profile)
    seeds = [seed] if seed is not None else list(resolved.get("seeds") or [0])
    return [run_one(resolved, s, data_root=data_root, noise_root=noise_root, executor=executor, force=force,
                    root=root) for s in seeds]


def run_one(resolved: dict, seed: int, *, data_root=None, noise_root=None, executor: str = "auto",
            force: bool = False, root: Path | None = None) -> RunResult:
    out_dir = run_dir(resolved, seed, root)
    label = f"{resolved['paper']}/{resolved['cell_id']} seed {seed}"
    if resolved.get("skip"):  # a cell this profile does not run (e.g. a paper-scale cell under smoke)
        return RunResult(label, seed, "not_run", out_dir, 0.0, f"not run under {resolved['profile']}: {resolved['skip']}")
    if not force and is_current(resolved, seed, root):
        return RunResult(label, seed, "skipped", out_dir)
    metrics_file = out_dir / "metrics.json"
    if metrics_file.exists():  # stale (other params): remove first, so a crash cannot leave it looking current
        metrics_file.unlink()
    results_file = out_dir / "results.json"
    if results_file.exists():
        results_file.unlink()
    _fresh_checkpoints(out_dir, params_hash(resolved, seed))
    if executor == "auto":
        executor = "papermill" if papermill_available() else "direct"
    # Notebooks run with the project folder as working directory: repo-relative paths keep executed copies portable.
    parameters = {"params_file": resolved["params_file"], "profile": resolved["profile"], "seed": int(seed),
                  "out_dir": _portable(out_dir), "data_root": _portable(data_root) if data_root else None,
                  "noise_root": _portable(noise_root) if noise_root else None}
    started = _dt.datetime.now(_dt.timezone.utc)
    t0 = time.perf_counter()
    try:
        notebook = _notebook_path(resolved)
        (_execute_papermill if executor == "papermill" else _execute_direct)(notebook, out_dir, parameters)
        if not results_file.is_file():
            raise RuntimeError(f"the notebook finished without writing {results_file.name}")
        results = json.loads(results_file.read_text())
    except DataMissingError as e:
        _write_error(out_dir, f"not run: {e}")
        return RunResult(label, seed, "not_run", out_dir, time.perf_counter() - t0, str(e))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - one failing cell is reported, the others go on
        _write_error(out_dir, traceback.format_exc())
        return RunResult(label, seed, "failed", out_dir, time.perf_counter() - t0, f"{type(e).__name__}: {e}")
    seconds = time.perf_counter() - t0
    metrics = {
        "paper": resolved["paper"], "cell": resolved["cell_id"], "profile": resolved["profile"], "seed": int(seed),
        **{k: results.pop(k, None) for k in METRIC_KEYS},
        **results,
        "params": resolved, "params_hash": params_hash(resolved, seed),
        "wall_seconds": round(seconds, 2), "device": results.get("device") or device_name(),
        "executor": executor, "git_commit": git_commit(), "nlkit_version": __version__,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / "error.txt").unlink(missing_ok=True)
    atomic_write_json(metrics_file, metrics)
    return RunResult(label, seed, "done", out_dir, seconds)


def _fresh_checkpoints(out_dir: Path, key: str) -> None:
    """Keep a run's checkpoints only for the params they were written with: a run resumes from them, so ones
    left by other settings (an edited params file, another profile overlay) are discarded first."""
    ckpt = out_dir / "checkpoints"
    stamp = ckpt / "params_hash"
    if ckpt.exists() and (not stamp.is_file() or stamp.read_text().strip() != key):
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key + "\n")


def _portable(path) -> str:
    """`path` relative to the project folder when it lies inside it or beside it, else as given."""
    path = Path(path).absolute()
    root = repo_root()
    for base, prefix in ((root, ""), (root.parent, "../")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


def _write_error(out_dir: Path, text: str) -> None:
    atomic_write(out_dir / "error.txt", lambda tmp: Path(tmp).write_text(text))
