"""Seconds per epoch of DivideMix and InstanceGM (and of a warm-up / CE epoch) with the kit's device-resident
pipeline, for a profile's sizes: `cpu` (10,000 16x16 images, PreAct ResNet-18 at 1/4 width; the default on a CPU) or
`paper` (50,000 images, full width; the default on a GPU).

Random uint8 images stand in for CIFAR-10 (speed does not depend on the pixels) with a 50/50 clean/noisy division,
about what the GMM gives at 50% IDN. A semi-supervised epoch is timed over `iterations` iterations per network and
scaled to the full labelled set; the eval pass (per-sample losses + GMM) and the test pass are timed whole.
The original code's reference: DivideMix takes 14.0 h per 300-epoch CIFAR run on a Titan X Pascal (168 s per
epoch; ReScience reproduction), and InstanceGM's released code builds a 5-worker DataLoader iterator at every
iteration (docs/instancegm.md §7).

    python benchmarks/bench_instancegm.py                           # cpu sizes on the CPU, paper sizes on a GPU
    python benchmarks/bench_instancegm.py --profile paper --device cuda
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nlkit import __version__
from nlkit.data import DeviceBatcher
from nlkit.methods import instancegm as igm
from nlkit.methods.instancegm.dividemix import DivideMix
from nlkit.methods.instancegm.generative import GenerativeModule
from nlkit.methods.instancegm.train import build_classifier, vae_extra_loss
from nlkit.pipeline import load_cell
from nlkit.pipeline.runner import device_name, git_commit

ROOT = Path(__file__).resolve().parents[1]
CELL = ROOT / "params" / "instancegm" / "cifar10-idn-0.50-instancegm.yaml"
REFERENCE = {
    "dividemix_titan_x_pascal_hours_per_run": 14.0,
    "dividemix_titan_x_pascal_seconds_per_epoch": 14.0 * 3600 / 300,
    "source": "DivideMix on CIFAR, 300 epochs, Titan X Pascal: ReScience reproduction (docs/instancegm.md §7)",
    "instancegm_original_estimate": "1-2 GPU-days per CIFAR run on 2022 hardware [R]: a 5-worker DataLoader "
                                    "iterator is built at every iteration for the VAE batch",
}


def measure(device: str, n_images: int, n_test: int, iterations: int, width_mult: float, batch_size: int = 64,
            vae_batch_size: int = 128, warmup_batch_size: int = 128, eval_batch_size: int = 512,
            side: int = 32, crop_padding: int = 4, bf16: bool = False) -> dict:
    dev = torch.device(device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, side, side, 3), dtype=np.uint8)
    test_images = rng.integers(0, 256, size=(n_test, side, side, 3), dtype=np.uint8)
    noisy = torch.as_tensor(rng.integers(0, 10, n_images), device=dev)
    test_labels = torch.as_tensor(rng.integers(0, 10, n_test), device=dev)
    cfg = igm.InstanceGMConfig(width_mult=width_mult, batch_size=batch_size, vae_batch_size=vae_batch_size,
                               warmup_batch_size=warmup_batch_size, eval_batch_size=eval_batch_size, bf16=bf16)
    last = dev.type == "cuda"

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        return time.perf_counter() - t0, out

    out = {}
    for method in ("dividemix", "instancegm"):
        torch.manual_seed(0)
        nets = [build_classifier(cfg.arch, 10, 3, width_mult).to(dev) for _ in range(2)]
        if last:
            nets = [n.to(memory_format=torch.channels_last) for n in nets]
        train_b = DeviceBatcher(images, batch_size=warmup_batch_size, crop_padding=crop_padding, flip=True,
                                device=dev, channels_last=last)
        eval_b = DeviceBatcher(images, batch_size=eval_batch_size, shuffle=False, device=dev, channels_last=last)
        test_b = DeviceBatcher(test_images, batch_size=eval_batch_size, shuffle=False, device=dev,
                               channels_last=last)
        extra = None
        if method == "instancegm":
            gms = [GenerativeModule(3, side, 10, cfg.z_dim).to(dev) for _ in range(2)]
            extra = vae_extra_loss(gms, train_b, noisy, replace(cfg, method=method))
        trainer = DivideMix(nets, replace(cfg, method=method), train_b, eval_b, noisy, 10, 0, extra)
        # `iterations` labelled batches timed (after one untimed iteration), the rest of the set unlabelled
        prob = np.zeros(n_images)
        prob[: batch_size] = 0.9
        trainer.train_epoch(0, 20, prob)                                   # warm caches, autotuning
        prob[: iterations * batch_size] = 0.9
        seconds, _ = timed(lambda: trainer.train_epoch(0, 20, prob))
        per_iter = seconds / iterations
        eval_s, _ = timed(lambda: trainer.clean_probability(0, 20))
        test_s, _ = timed(lambda: trainer.test(test_b, test_labels))
        n_iter = math.ceil((n_images // 2) / batch_size)               # a 50/50 division
        out[f"seconds_per_{method}_iteration"] = per_iter
        out[f"seconds_per_{method}_epoch"] = 2 * (n_iter * per_iter + eval_s) + test_s
        if method == "dividemix":
            out["seconds_per_eval_pass"] = eval_s
            out["seconds_per_test_pass"] = test_s
            steps = max(1, min(math.ceil(n_images / warmup_batch_size), iterations * 2))
            subset = DeviceBatcher(images[: steps * warmup_batch_size], batch_size=warmup_batch_size,
                                   crop_padding=crop_padding, flip=True, device=dev, channels_last=last)
            trainer.train_batcher = subset
            t, _ = timed(lambda: trainer.warmup_epoch(0, 0))
            out["seconds_per_warmup_network_epoch"] = t / steps * math.ceil(n_images / warmup_batch_size)
            out["seconds_per_ce_epoch"] = out["seconds_per_warmup_network_epoch"] + test_s / 2
    if dev.type == "cuda":
        out["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--profile", choices=("cpu", "paper"), help="sizes to time (default: cpu on a CPU, paper on a GPU)")
    p.add_argument("--iterations", type=int, help="timed iterations per method (default 3 on CPU, 50 on GPU)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    profile = args.profile or ("paper" if gpu else "cpu")
    cell = load_cell(CELL, profile)
    cfg = igm.Config.from_cell(cell)
    n_images = cell.get("train_subset") or 50_000
    n_test = cell.get("test_subset") or 10_000
    iterations = args.iterations or (50 if gpu else 3)
    side = 32 // int(cell.get("downsample") or 1)
    result = measure(args.device, n_images, n_test, iterations, cfg.width_mult, cfg.batch_size, cfg.vae_batch_size,
                     cfg.warmup_batch_size, cfg.eval_batch_size, side, cfg.crop_padding, bf16=cfg.bf16)
    ssl_epochs = cfg.epochs - cfg.warmup_epochs
    warm = 2 * result["seconds_per_warmup_network_epoch"] + result["seconds_per_test_pass"]
    result["seconds_per_run"] = {
        "ce": cfg.epochs * result["seconds_per_ce_epoch"],
        "dividemix": cfg.warmup_epochs * warm + ssl_epochs * result["seconds_per_dividemix_epoch"],
        "instancegm": cfg.warmup_epochs * warm + ssl_epochs * result["seconds_per_instancegm_epoch"]}
    commit = git_commit() or "unknown"
    device = device_name() if gpu else \
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    record = {"benchmark": "instancegm_epoch", "profile": profile, "n_images": n_images, "n_test": n_test,
              "image_side": side,
              "arch": cfg.arch, "width_mult": cfg.width_mult, "batch_size": cfg.batch_size,
              "vae_batch_size": cfg.vae_batch_size, "epochs": cfg.epochs, "warmup_epochs": cfg.warmup_epochs,
              "iterations_timed": iterations, "bf16": bool(cfg.bf16 and gpu), "device": device,
              "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
              "torch": torch.__version__,
              "nlkit_version": __version__, "git_commit": commit,
              "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **result,
              "reference_original_code": REFERENCE}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device.split(" (")[0]).strip("-").lower()
    path = out / f"instancegm-{profile}-{slug}-{commit[:8]}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
