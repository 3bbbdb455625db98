"""Where the smoke profile's time goes, and what `make reproduce` costs end to end.

Two measurements, written to benchmarks/results/smoke-<date>.json:

- per run (`--sample K`: the first K cells of each paper): the same run executed three ways, into fresh output
  folders: papermill with a fresh kernel per run (how every run was executed before), papermill on one shared
  kernel (how `make reproduce` runs them now), and the notebook's code directly in this process (no Jupyter).
  The difference between the first two is kernel start plus imports, paid once instead of per run.
- end to end (`--full [JOBS ...]`): the whole `reproduce("smoke")` into a fresh output root, once per JOBS value
  (`auto` is what `make reproduce` uses): wall seconds, and per paper the runs computed, the runs whose settings
  equal another cell's (recorded from that run, not recomputed) and the seconds the computed runs took.

    python benchmarks/bench_smoke.py --sample 2 --full 1 auto
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nlkit import __version__
from nlkit.pipeline.executors import shared_kernel
from nlkit.pipeline.params import find_cells, load_cell
from nlkit.pipeline.reproduce import reproduce
from nlkit.pipeline.runner import git_commit, run_one

PAPERS = ("noise", "explore", "simclr", "sln", "lra_diffusion", "instancegm", "tdsm")


def per_run(sample: int, out_root: Path) -> dict:
    rows = []
    for paper in PAPERS:
        cells = find_cells(paper) if (Path("params") / paper).is_dir() else []
        for cell in cells[:sample]:
            resolved = load_cell(cell, "smoke")
            seed = int((resolved.get("seeds") or [0])[0])
            times = {}
            for mode in ("papermill_fresh_kernel", "papermill_shared_kernel", "direct"):
                root = out_root / mode
                if mode == "papermill_shared_kernel":
                    with shared_kernel() as kernel:
                        kernel.ready()  # start-up is paid once per reproduce, not per run
                        t0 = time.perf_counter()
                        result = run_one(resolved, seed, executor="papermill", root=root)
                else:
                    t0 = time.perf_counter()
                    result = run_one(resolved, seed, executor="papermill" if "papermill" in mode else "direct",
                                     root=root)
                times[mode] = round(time.perf_counter() - t0, 2)
                if result.status != "done":
                    times[mode + "_status"] = result.status
            rows.append({"paper": paper, "cell": resolved["cell_id"], **times})
            print(rows[-1], file=sys.stderr)
    summary = {}
    for mode in ("papermill_fresh_kernel", "papermill_shared_kernel", "direct"):
        values = [r[mode] for r in rows]
        summary[mode] = {"median_s": round(statistics.median(values), 2), "total_s": round(sum(values), 1)}
    return {"runs": rows, "summary": summary}


def full(out_root: Path, jobs) -> dict:
    """`make reproduce` (smoke) into a fresh output root, with `jobs` runs at a time; per paper, the runs, how many
    were computed, and the seconds its computed runs took (summed over runs, so with jobs > 1 the papers' seconds
    add up to more than the wall time)."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    t0 = time.perf_counter()
    rc = reproduce("smoke", root=out_root, jobs=jobs)
    total = time.perf_counter() - t0
    return {"jobs": jobs, "exit_code": rc, "load_average_at_start": load, "papers": breakdown(out_root),
            "total_seconds": round(total, 1)}


def breakdown(out_root: Path) -> dict:
    """Per paper, from the metrics.json files under `out_root`/smoke: runs, runs computed, and their seconds."""
    papers = {}
    for paper in PAPERS:
        metrics = [json.loads(p.read_text()) for p in (out_root / "smoke" / paper).glob("*/seed*/metrics.json")]
        computed = [m for m in metrics if not m.get("same_run_as")]
        papers[paper] = {"runs": len(metrics), "computed": len(computed),
                         "same_settings_as_another_cell": len(metrics) - len(computed),
                         "run_seconds": round(sum(m.get("wall_seconds") or 0 for m in computed), 1)}
        print(paper, papers[paper], file=sys.stderr)
    return papers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=0, help="cells per paper for the per-run comparison")
    parser.add_argument("--full", nargs="*", metavar="JOBS",
                        help="time the whole smoke reproduce, once per JOBS value given (default: auto)")
    parser.add_argument("--summarise", metavar="OUTPUT_ROOT",
                        help="only the per-paper breakdown of a finished `make reproduce` into OUTPUT_ROOT")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    report = {"benchmark": "smoke", "date": dt.date.today().isoformat(), "cpus": os.cpu_count(),
              "machine": platform.machine(), "python": platform.python_version(), "nlkit_version": __version__,
              "git_commit": git_commit()}
    if args.summarise:
        report["breakdown"] = breakdown(Path(args.summarise))
    with tempfile.TemporaryDirectory() as tmp:
        if args.sample:
            report["per_run"] = per_run(args.sample, Path(tmp) / "per_run")
        if args.full is not None:
            report["full"] = [full(Path(tmp) / f"full-{jobs}", jobs if jobs == "auto" else int(jobs))
                              for jobs in (args.full or ["auto"])]
    out = Path(args.out) / f"smoke-{report['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
