"""The reproduce pipeline: params files per table cell, runs (papermill or direct), resumable reproduce, tables."""

from .params import PROFILES, find_cells, load_cell, params_hash, repo_root
from .currency import metrics_path, run_dir
from .runner import RunResult, run_cell

__all__ = ["PROFILES", "RunResult", "find_cells", "load_cell", "metrics_path", "params_hash", "repo_root",
           "run_cell", "run_dir"]
