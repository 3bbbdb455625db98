"""SLN in bf16 against fp32: the same reduced run (the cpu profile's CIFAR-10 sym-0.4 SLN cell, shortened) in both
precisions, same seed, and each net's test accuracy.

On CUDA the kit's `bf16` switch autocasts the forward passes to bf16; on CPU the kit always runs fp32, so this script
forces CPU bf16 autocast for the bf16 run. The loss stays fp32 in both, as in the kit. Writes one JSON to
benchmarks/results/ and prints a table:

    python benchmarks/bench_sln_precision.py --data-root DATA [--epochs 40 --train-subset 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import time
from pathlib import Path

import torch

from nlkit.methods import sln
from nlkit.methods.contract import Roots
from nlkit.pipeline.params import load_cell, repo_root
from nlkit.pipeline.runner import device_name, git_commit
from nlkit.train import engine

CELL = "cifar10-sym-0.40-paper-sln"


def _cpu_bf16_autocast(device, enabled: bool = True):
    if enabled:
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run(data, cfg: sln.SLNConfig, seed: int) -> dict:
    original = engine.autocast_for
    if cfg.bf16:
        engine.autocast_for = _cpu_bf16_autocast
    try:
        start = time.perf_counter()
        result = sln.train_sln(data, cfg, seed, device="cpu", progress=False)
        seconds = time.perf_counter() - start
    finally:
        engine.autocast_for = original
    h = result.history
    out = {"seconds": round(seconds, 1)}
    for net in ("live", "ema"):
        acc = h[f"test_acc_{net}"] * 100
        out[net] = {"last": round(float(acc.iloc[-1]), 2), "best": round(float(acc.max()), 2),
                    "last5_mean": round(float(acc.iloc[-5:].mean()), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", required=True, help="folder with the CIFAR-10 copy and noise/ label files")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--train-subset", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cell = load_cell(repo_root() / "params" / "sln" / f"{CELL}.yaml", "cpu")
    cell = {**cell, "train_subset": args.train_subset}
    data = sln.prepare(cell, args.seed, Roots(data_root=args.data_root))
    base = dataclasses.replace(sln.SLNConfig.from_cell(cell), epochs=args.epochs)
    results = {p: run(data, dataclasses.replace(base, bf16=p == "bf16"), args.seed) for p in ("fp32", "bf16")}
    record = {"benchmark": "sln_precision", "cell": CELL, "profile": "cpu", "epochs": args.epochs,
              "train_subset": args.train_subset, "test_images": int(len(data.test_labels)), "seed": args.seed,
              "device": device_name(), "commit": git_commit(), "torch": torch.__version__,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "results": results}
    name = f"sln_precision-cpu-{record['commit'][:7]}-seed{args.seed}.json"
    out = Path(__file__).resolve().parent / "results" / name
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{'precision':9} {'net':5} {'last':>6} {'best':>6} {'last5':>6}  seconds")
    for p, r in results.items():
        for net in ("live", "ema"):
            acc = r[net]
            print(f"{p:9} {net:5} {acc['last']:6.2f} {acc['best']:6.2f} {acc['last5_mean']:6.2f}  {r['seconds']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
