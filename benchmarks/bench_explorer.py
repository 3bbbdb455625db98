"""How long the noise explorer takes to redraw after a control changes (the widget's work minus the browser):
the first drawing of a dataset (loading, PMD's classifier when asked), then one change at a time of rate, seed,
noise model and class filter, each timed. Writes benchmarks/results/explorer-<dataset>-<date>.json.

    python benchmarks/bench_explorer.py --dataset cifar10 --data-root ../data   # any dataset that resolves
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

from nlkit import __version__
from nlkit.pipeline.runner import git_commit
from nlkit.viz.explorer import Explorer

CHANGES = ({"rate": 0.3}, {"seed": 1}, {"noise": "asym"}, {"classes": ("cat",)}, {"noise": "sym", "rate": 0.2},
           {"n_images": 64}, {"rate": 0.45}, {"seed": 2})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-root")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    explorer = Explorer(data_root=args.data_root, background=False)
    ds = explorer.dataset(args.dataset)
    cat = "cat" if "cat" in ds.classes else ds.classes[3]
    settings = {"dataset": args.dataset, "noise": "sym", "rate": 0.4, "seed": 0,
                "asym_map": "asym_c10" if ds.num_classes == 10 else None, "label_file": None, "classes": (),
                "n_images": 32}
    t0 = time.perf_counter()
    explorer.figures(settings)
    first = time.perf_counter() - t0
    redraws = []
    for change in CHANGES:
        change = {k: ((cat,) if k == "classes" else v) for k, v in change.items()}
        settings = {**settings, **change}
        t0 = time.perf_counter()
        explorer.figures(settings)
        redraws.append({"change": {k: list(v) if isinstance(v, tuple) else v for k, v in change.items()},
                        "seconds": round(time.perf_counter() - t0, 3)})
    seconds = [r["seconds"] for r in redraws]
    report = {"benchmark": "explorer", "dataset": args.dataset, "train_images": int(len(ds.train_labels)),
              "date": dt.date.today().isoformat(), "cpus": os.cpu_count(),
              "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "machine": platform.machine(), "nlkit_version": __version__, "git_commit": git_commit(),
              "first_drawing_s": round(first, 2), "redraw_median_s": round(statistics.median(seconds), 3),
              "redraw_max_s": max(seconds), "redraws": redraws}
    out = Path(args.out) / f"explorer-{args.dataset}-{report['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("first_drawing_s", "redraw_median_s", "redraw_max_s")}), out)


if __name__ == "__main__":
    main()
