"""The accuracy cost of bf16: SLN-family cells (CE, SLN/SLN-MO) run as their profile defines them, once at fp32 and
once with the kit's `bf16: auto` + channels_last, for each seed, and each net's test accuracy.

On a CPU with native bf16 (AMX-BF16 or AVX512-BF16) `auto` computes the forward passes in bf16; the loss, the
optimiser and the EMA stay fp32 in both. Where the CPU has no native bf16 `auto` is fp32 and the script says so.
Writes one JSON to benchmarks/results/ and prints a table:

    python benchmarks/bench_sln_precision.py --data-root DATA --profile cpu --seeds 0 1 \\
        --cells params/bench/sym-0.5-ce.yaml params/bench/sym-0.5-sln.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import torch

from nlkit.hardware import cpu_isa, use_bf16
from nlkit.methods import sln
from nlkit.methods.contract import Roots
from nlkit.pipeline.params import load_cell
from nlkit.pipeline.runner import device_name, git_commit

PRECISIONS = {"fp32": {"bf16": False, "channels_last": False}, "bf16": {"bf16": "auto", "channels_last": True}}


def run(data, cfg: sln.SLNConfig, seed: int) -> dict:
    start = time.perf_counter()
    result = sln.train_sln(data, cfg, seed, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    h = result.history
    out = {"seconds": round(seconds, 1)}
    for net in ("live", "ema"):
        acc = h[f"test_acc_{net}"] * 100
        out[net] = {"last": round(float(acc.iloc[-1]), 2), "best": round(float(acc.max()), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True, help="folder with the datasets and noise/ label files")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--cells", nargs="+", required=True, help="SLN-family params files (sln or bench CE/SLN rows)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    native = use_bf16("auto", torch.device("cpu"))
    rows = []
    for path in args.cells:
        cell = load_cell(path, args.profile)
        for seed in args.seeds:
            data = sln.prepare(cell, seed, Roots(data_root=args.data_root))
            base = sln.SLNConfig.from_cell(cell)
            for name, switches in PRECISIONS.items():
                r = run(data, dataclasses.replace(base, **switches), seed)
                rows.append({"cell": Path(path).stem, "seed": seed, "precision": name, **r})
                print(f"{Path(path).stem:22} seed {seed} {name:5} live last {r['live']['last']:6.2f} best "
                      f"{r['live']['best']:6.2f} | EMA last {r['ema']['last']:6.2f} best {r['ema']['best']:6.2f} | "
                      f"{r['seconds']} s", flush=True)
    record = {"benchmark": "sln_precision", "profile": args.profile, "cells": [Path(p).stem for p in args.cells],
              "seeds": args.seeds, "threads": args.threads, "native_bf16": native, "isa": cpu_isa(),
              "device": device_name(), "commit": git_commit(), "torch": torch.__version__,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "runs": rows}
    if not native:
        print("this CPU has no native bf16: `auto` ran fp32, so both rows are the same computation")
    name = f"sln_precision-{args.profile}-{(record['commit'] or 'nocommit')[:7]}-{'-'.join(record['cells'])}.json"
    out = Path(__file__).resolve().parent / "results" / name
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
