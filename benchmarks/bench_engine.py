"""Training-engine speed: images/s and seconds per epoch of WRN-28-2 on CIFAR-10-sized data.

Runs the SLN training step (device batcher with crop+flip, bf16 autocast and channels_last on CUDA, soft
cross-entropy with SLN targets, SGD, EMA) on random uint8 images, so it needs no dataset. Writes one JSON per run
to benchmarks/results/, named by device and commit, for comparison across commits:

    python benchmarks/bench_engine.py                 # GPU when present, else CPU (a few steps)
    python benchmarks/bench_engine.py --device cpu --steps 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import time
from pathlib import Path

import numpy as np
import torch

from nlkit import __version__
from nlkit.data import DeviceBatcher
from nlkit.methods.sln import NORMALISATION, sln_targets, soft_cross_entropy
from nlkit.models import build_model
from nlkit.pipeline.runner import device_name, git_commit
from nlkit.train import Trainer


def measure(device: str, steps: int, batch_size: int, n_images: int, compile: bool, arch: str) -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, 32, 32, 3), dtype=np.uint8)
    labels = torch.as_tensor(rng.integers(0, 10, n_images))
    torch.manual_seed(0)
    trainer = Trainer(build_model(arch, num_classes=10), lr=0.001, weight_decay=5e-4, ema_decay=0.999,
                      device=device, compile=compile)
    dev = trainer.device
    mean, std = NORMALISATION["cifar10"]
    batcher = DeviceBatcher(images, batch_size=batch_size, device=dev, crop_padding=4, flip=True, mean=mean,
                            std=std, channels_last=dev.type == "cuda")
    targets = torch.nn.functional.one_hot(labels.to(dev), 10).float()
    gen = torch.Generator(device=dev).manual_seed(1)

    def loss_fn(logits, batch):
        return soft_cross_entropy(logits, sln_targets(targets.index_select(0, batch.idx), 1.0, gen))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up (compilation, cudnn autotuning), then time whole passes over `steps` batches
    subset = DeviceBatcher(images[: steps * batch_size], batch_size=batch_size, device=dev, crop_padding=4,
                           flip=True, mean=mean, std=std, channels_last=dev.type == "cuda")
    trainer.train_epoch(subset, loss_fn)
    sync()
    t0 = time.perf_counter()
    repeats = 3 if dev.type == "cuda" else 1
    for _ in range(repeats):
        trainer.train_epoch(subset, loss_fn)
    sync()
    per_step = (time.perf_counter() - t0) / (repeats * len(subset))
    result = {"images_per_second": batch_size / per_step, "seconds_per_step": per_step,
              "seconds_per_epoch_50k": per_step * int(np.ceil(50_000 / batch_size))}
    if dev.type == "cuda":  # one real epoch over n_images, the number a user sees
        sync()
        t0 = time.perf_counter()
        trainer.train_epoch(batcher, loss_fn)
        sync()
        result["seconds_per_full_epoch"] = time.perf_counter() - t0
        result["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, help="timed steps (default 200 on GPU, 5 on CPU)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--arch", default="wrn28_2")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    steps = args.steps or (200 if args.device.startswith("cuda") else 5)
    n_images = 50_000 if args.device.startswith("cuda") else steps * args.batch_size
    result = measure(args.device, steps, args.batch_size, n_images, args.compile, args.arch)
    commit = git_commit() or "unknown"
    device = device_name() if args.device.startswith("cuda") else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    record = {"benchmark": "sln_train_step", "arch": args.arch, "batch_size": args.batch_size, "steps": steps,
              "compile": args.compile, "bf16": args.device.startswith("cuda"), "device": device,
              "torch": torch.__version__, "nlkit_version": __version__, "git_commit": commit,
              "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device.split(" (")[0]).strip("-").lower()
    path = out / f"{args.arch}-{slug}{'-compile' if args.compile else ''}-{commit[:8]}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
