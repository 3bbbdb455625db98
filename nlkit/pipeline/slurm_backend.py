"""`nlkit reproduce --backend slurm`: every run (cell × seed) a SLURM job, submitted through submitit.

A thin adapter: the local backend's concurrent scheduler (`local_backend.run_concurrently`: a run starts once the
runs of the cells it needs have finished, a failed dependency makes it 'not run', Ctrl-C submits nothing new)
with one job per run instead of one process, each executing the same `run_one` on a compute node. The nodes see the
project and its `outputs/` through the cluster's shared filesystem; a job that SLURM preempts or kills leaves no
metrics.json and its rerun resumes from the run's checkpoints. Partition, time limit, CPUs and GPUs come from the
profile's `resources:` block, and the command line's partition and time limit override them.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import UserError
from .currency import outputs_root, run_dir
from .local_backend import run_concurrently
from .params import repo_root
from .remote import execute_run, label_of, resources_of, result_of
from .runner import RunResult


def submitit_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("submitit") is not None


def run_on_slurm(todo, stop, results: list, bar, stream, *, jobs: int = 1, partition: str | None = None,
                 time_min: int | None = None, folder=None, cluster: str | None = None, data_root=None,
                 noise_root=None, executor: str = "auto", root: Path | None = None) -> None:
    """The SLURM Backend (backend.Backend): runs `todo` as SLURM jobs, at most `jobs` in the queue at a time (64 when 1 is given). `cluster` is
    submitit's: None picks SLURM when `sbatch` is on the PATH; 'local' runs the jobs as processes here (tests)."""
    if not submitit_available():
        raise UserError("the slurm backend needs submitit: pip install 'nlkit[slurm]'")
    import submitit

    out_root = Path(root or outputs_root()).resolve()
    folder = Path(folder) if folder else out_root / ".slurm"
    job_executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=cluster)
    if job_executor.cluster not in ("slurm", "local", "debug") or (cluster is None and job_executor.cluster != "slurm"):
        raise UserError("the slurm backend found no SLURM here (no sbatch on the PATH); run it on a login node")
    project = str(repo_root())
    options = dict(data_root=str(Path(data_root).resolve()) if data_root else None,
                   noise_root=str(Path(noise_root).resolve()) if noise_root else None, executor=executor)
    lock = threading.Lock()  # submitit keeps the job parameters on the executor: one submission at a time
    submitted = []

    def launch(resolved, seed) -> RunResult:
        res = resources_of(resolved)
        params = dict(name=f"nlkit-{resolved['paper']}-{resolved['cell_id']}-s{seed}",
                      timeout_min=int(time_min or res["time_min"]), cpus_per_task=max(1, int(-(-res["num_cpus"] // 1))))
        if res["num_gpus"]:
            params["gpus_per_node"] = int(-(-res["num_gpus"] // 1))  # SLURM allocates whole GPUs
        if res["memory_gb"]:
            params["mem_gb"] = res["memory_gb"]
        if partition or res["partition"]:
            params["slurm_partition"] = partition or res["partition"]
        with lock:
            job_executor.update_parameters(**params)
            job = job_executor.submit(execute_run, project, str(out_root), None, resolved, int(seed), options)
            submitted.append(job)
        try:
            return result_of(job.result(), out_root)
        except Exception as e:  # noqa: BLE001 - a job SLURM killed (time limit, node failure) is reported
            message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            return RunResult(label_of(resolved, seed), seed, "failed", run_dir(resolved, seed, root), 0.0,
                             f"SLURM job {job.job_id}: {message}")

    try:
        run_concurrently(todo, jobs if jobs > 1 else 64, stop, results, bar, stream, launch=launch,
                          executor=executor, root=root)
    except KeyboardInterrupt:  # second Ctrl-C: cancel what is queued or running
        for job in submitted:
            if not job.done():
                job.cancel(check=False)
        stop.requested = True
