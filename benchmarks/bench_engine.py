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


def random_images(n_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n_images, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n_images)


def measure(device: str, steps: int, batch_size: int, n_images: int, compile: bool, arch: str,
            images: np.ndarray | None = None, labels: np.ndarray | None = None) -> dict:
    """The kit's step. `images` (N x 32 x 32 x 3 uint8) and `labels` default to random ones of `n_images`."""
    if images is None:
        images, labels = random_images(n_images)
    images = images[:n_images]
    labels = torch.as_tensor(np.asarray(labels[:n_images], dtype=np.int64))
    torch.manual_seed(0)
    trainer = Trainer(build_model(arch, num_classes=10, in_channels=3), lr=0.001, weight_decay=5e-4, ema_decay=0.999,
                      device=device, bf16=torch.device(device).type == "cuda", compile=compile)
    dev = trainer.device
    mean, std = NORMALISATION["cifar10"]
    batcher = DeviceBatcher(images, batch_size=batch_size, device=dev, crop_padding=4, flip=True, mean=mean,
                            std=std, channels_last=trainer.channels_last)
    targets = torch.nn.functional.one_hot(labels.to(dev), 10).float()
    gen = torch.Generator(device=dev).manual_seed(1)

    def loss_fn(logits, batch):
        return soft_cross_entropy(logits, sln_targets(targets.index_select(0, batch.idx), 1.0, gen))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # warm-up (compilation, cudnn autotuning), then time whole passes over `steps` batches
    subset = DeviceBatcher(images[: steps * batch_size], batch_size=batch_size, device=dev, crop_padding=4,
                           flip=True, mean=mean, std=std, channels_last=trainer.channels_last)
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


class _ArrayDataset(torch.utils.data.Dataset):
    """uint8 HWC images through PIL and torchvision transforms, one sample at a time (the papers' pipeline)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i]), i


def measure_reference(device: str, steps: int, batch_size: int, arch: str, images: np.ndarray, labels: np.ndarray,
                      workers: int) -> dict:
    """The same model, loss and optimiser driven the way the papers' code does it: a torchvision DataLoader with CPU
    transforms (RandomCrop, flip, ToTensor, Normalize) in worker processes, fp32, NCHW, a per-parameter EMA loop
    and `loss.item()` every step for logging."""
    import torchvision.transforms as T

    dev = torch.device(device)
    mean, std = NORMALISATION["cifar10"]
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    loader = torch.utils.data.DataLoader(
        _ArrayDataset(images, labels, transform), batch_size=batch_size, shuffle=True, num_workers=workers,
        pin_memory=dev.type == "cuda", drop_last=True, persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = build_model(arch, num_classes=10, in_channels=3).to(dev)
    ema = build_model(arch, num_classes=10, in_channels=3).to(dev)
    ema.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    all_targets = torch.nn.functional.one_hot(torch.as_tensor(np.asarray(labels, dtype=np.int64)), 10).float().to(dev)
    gen = torch.Generator(device=dev).manual_seed(1)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def run(n_steps: int) -> int:
        done = 0
        while done < n_steps:
            for x, _, idx in loader:
                x, idx = x.to(dev, non_blocking=True), idx.to(dev, non_blocking=True)
                loss = soft_cross_entropy(model(x), sln_targets(all_targets.index_select(0, idx), 1.0, gen)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for pe, p in zip(ema.parameters(), model.parameters()):
                        pe.mul_(0.999).add_(p, alpha=0.001)
                loss.item()
                done += 1
                if done == n_steps:
                    break
        return done

    model.train()
    run(min(steps, 5))  # warm-up: worker start, cudnn autotuning
    sync()
    t0 = time.perf_counter()
    run(steps)
    sync()
    per_step = (time.perf_counter() - t0) / steps
    return {"images_per_second": batch_size / per_step, "seconds_per_step": per_step,
            "seconds_per_epoch_50k": per_step * int(np.ceil(50_000 / batch_size)), "workers": workers}


def compare(device: str, steps: int, batch_size: int, arch: str, images: np.ndarray | None = None,
            labels: np.ndarray | None = None, workers: int | None = None) -> dict:
    """Kit step vs reference-style loop on the same model and data: images/s of both and their ratio."""
    import os

    if images is None:
        images, labels = random_images(max(steps, 5) * batch_size * 2)
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    kit = measure(device, steps, batch_size, len(images), False, arch, images=images, labels=labels)
    ref = measure_reference(device, steps, batch_size, arch, images, labels, workers)
    return {"arch": arch, "batch_size": batch_size, "steps": steps, "n_images": int(len(images)), "kit": kit,
            "reference": ref, "speedup": kit["images_per_second"] / ref["images_per_second"]}


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
