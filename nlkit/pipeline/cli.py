"""`nlkit run`, `nlkit reproduce`, `nlkit tables`."""

from __future__ import annotations

import os
from pathlib import Path

from ..io import TIME_BUDGET_ENV, env_seconds, expand_home, project_root
from .params import PROFILES


def _cmd_run(args) -> int:
    from .runner import run_cell

    env_seconds(TIME_BUDGET_ENV)   # a bad budget is one line before anything runs, not a failure of every run
    results = run_cell(args.params, args.profile, args.seed, data_root=args.data_root, noise_root=args.noise_root,
                       executor=args.executor, force=args.force, timeout_min=args.timeout_min)
    for r in results:
        extra = f" ({r.seconds:.1f} s)" if r.status == "done" else (f": {r.message}" if r.message else "")
        print(f"{r.status}: {r.cell} -> {r.out_dir}{extra}")
    statuses = {r.status for r in results}
    # 1 failed, 2 not run (data or a needed cell missing) or failed on bad input (a refused label file), 3 stopped
    # by a time budget (run again to continue), 4 busy (another process is running it)
    if any(r.status == "failed" and not r.bad_input for r in results):
        return 1
    return 2 if statuses & {"failed", "not_run"} else 3 if "stopped" in statuses else 4 if "busy" in statuses else 0


def _jobs(text: str):
    import argparse

    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be 'auto' or a whole number >= 1, got {text!r}")
    return value


def _minutes(text: str) -> float:
    import argparse
    import math

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"--timeout-min must be a number of minutes > 0, got {text!r}")
    return value


def _cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    env_seconds(TIME_BUDGET_ENV)
    return reproduce(args.profile, args.paper, args.only, data_root=args.data_root, noise_root=args.noise_root,
                     executor=args.executor, jobs=args.jobs, backend=args.backend, ray_address=args.ray_address,
                     timeout_min=args.timeout_min,
                     slurm={k: v for k, v in (("partition", args.slurm_partition), ("time_min", args.slurm_time),
                                              ("folder", args.slurm_folder)) if v is not None})


def _cmd_tables(args) -> int:
    from ..errors import UserError, describe_os_error
    from .tables import build_tables

    try:
        paths = build_tables(args.profile, args.paper, data_root=args.data_root)
    except OSError as e:
        raise UserError(f"cannot write the tables: {describe_os_error(e)}") from None
    for path in paths:
        print(path)
    return 0


def _from_cwd(text: str) -> str:
    """A folder named on the command line, relative to the working directory, handed on in the project-relative
    form that notebooks and params use (so a run records `../data`, not this machine's absolute path)."""
    path = expand_home(text)
    if path.is_absolute():
        return str(path)
    return os.path.relpath(Path.cwd() / path, project_root())


def _common(p, profile_default="smoke"):
    p.add_argument("--profile", default=profile_default, choices=PROFILES)
    # on the command line a relative folder means what the shell means (the working directory); in notebooks and
    # params files it is taken from the project folder
    p.add_argument("--data-root", type=_from_cwd,
                   help="folder holding the datasets (default: $NLKIT_DATA_ROOT or the project's data/)")
    p.add_argument("--noise-root", type=_from_cwd,
                   help="folder holding published label files (default: <data-root>/noise)")
    p.add_argument("--executor", default="auto", choices=("auto", "papermill", "direct"),
                   help="papermill when installed (default), or run the notebook's code directly (no Jupyter)")
    p.add_argument("--timeout-min", type=_minutes, help="stop a run still busy after this many minutes (default: "
                   "the cell's resources.timeout_min, else its profile's limit: smoke 30, cpu 180, quick 720, "
                   "paper 4320)")


def add_commands(sub) -> None:
    run = sub.add_parser("run", help="run one table cell (params file) for one or all of its seeds")
    run.add_argument("params", help="params/<paper>/<cell>.yaml")
    run.add_argument("--seed", type=int, help="one seed (default: every seed the params list)")
    run.add_argument("--force", action="store_true", help="retrain from scratch even if a current metrics.json exists (its checkpoints are discarded; its metrics, results and notebook are put back if the new run does not finish)")
    _common(run)
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("reproduce", help="run every matching cell and seed, then rebuild the tables")
    rep.add_argument("--paper", help="one paper (a folder of params/)")
    rep.add_argument("--only", help="glob over cell names, e.g. 'cifar10-*'")
    rep.add_argument("--jobs", type=_jobs, default=1, help="runs at a time, each in a kernel or process of its own "
                     "(default 1; 'auto': as many as the cores hold, by each run's resources.num_cpus, and on a "
                     "CUDA machine by its num_gpus; with --backend slurm: jobs in the queue at a time, default 64)")
    rep.add_argument("--backend", default="local", choices=("local", "ray", "slurm"),
                     help="where the runs go: this machine (default), a Ray cluster (a local one unless "
                          "--ray-address or $RAY_ADDRESS names one), or SLURM jobs through submitit")
    rep.add_argument("--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else start a local Ray of "
                     "its own, even when a `ray start` cluster runs on this machine)")
    rep.add_argument("--slurm-partition", help="SLURM partition (default: the profile's resources.partition)")
    rep.add_argument("--slurm-time", type=int, help="SLURM time limit per run, minutes (default: the profile's "
                     "resources.time_min, else 60)")
    rep.add_argument("--slurm-folder", help="where submitit keeps job scripts and logs (default: outputs/.slurm)")
    _common(rep)
    rep.set_defaults(func=_cmd_reproduce)

    tab = sub.add_parser("tables", help="rebuild the tables from the metrics under outputs/<profile>/")
    tab.add_argument("--profile", default="smoke", choices=PROFILES)
    tab.add_argument("--paper")
    tab.add_argument("--data-root", help="the --data-root the runs used: published weights are looked up under "
                     "<data-root>/weights (default: $NLKIT_WEIGHTS_ROOT, then $NLKIT_DATA_ROOT or ./data)")
    tab.set_defaults(func=_cmd_tables)
