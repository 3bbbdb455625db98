"""TDSM training speed: kimg/s of DSM and TDSM on the same loop, and TDSM's extra no-grad passes per sample.

Runs `nlkit.methods.tdsm.train.train_diffusion` on scikit-learn's bundled digits resized to the benchmark's size and
tiled to the number of images needed (no download), with sym 40% noise. The TDSM weights come from a
noise-level-conditioned classifier trained for a few seconds on the same images (its confidence falls with sigma as a
real one's does), or with `--untrained` an untrained one (spread weights: about the most extra passes). Writes one
JSON per run to benchmarks/results/:

    python benchmarks/bench_tdsm.py                          # GPU when present: ddpmpp_mnist at 32x32, batch 512
    python benchmarks/bench_tdsm.py --device cpu             # a shrunk UNet at 8x8, batch 64 (the cpu profile)
    python benchmarks/bench_tdsm.py --device cpu --preset cifar32   # CIFAR-10's 3x32x32 at docs/tdsm.md §14's
                                                             # quick-c10 UNet (base 64, 2 blocks), bf16 where native
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nlkit import __version__
from nlkit.data import load_dataset
from nlkit.methods.tdsm.train import TDSMConfig, train_classifier, train_diffusion
from nlkit.methods.tdsm.weights import build_transition
from nlkit.noise import make_noise
from nlkit.pipeline.runner import device_name, git_commit

PRESETS = {  # name -> (UNet settings, image size, channels, batch)
    "cuda": (dict(arch="ddpmpp_mnist", precision="bf16"), 32, 1, 512),
    "cpu": (dict(arch="ddpmpp_tiny", model_channels=16, channel_mult=[1, 2], attn_resolutions=[4]), 8, 1, 64),
    # what TDSM's CIFAR-10 comparison at 32x32 would train at the least (docs/tdsm.md §14, quick-c10): the images'
    # content does not change the cost, so the digits stand in, copied to three channels
    "cifar32": (dict(arch="ddpmpp", model_channels=64, num_blocks=2, precision="auto"), 32, 3, 64),
}


def digits_at(size: int):
    """scikit-learn's digits (train split) at `size` x `size`, with sym 40% noisy labels."""
    ds = load_dataset("digits")
    images = ds.train_images
    if size != 8:
        x = torch.as_tensor(images).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
        images = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return images, make_noise(ds.train_labels, "sym", 0.4, 10, 0).noisy


def classifier_for(images, noisy, S: np.ndarray, cfg: TDSMConfig, device, untrained: bool):
    """A sigma-conditioned classifier (forward-corrected CE, 20 kimg; or untrained)."""
    c = replace(cfg, cls_batch_size=128, cls_warmup_kimg=1, cls_duration_kimg=0.128 if untrained else 20,
                kimg_per_tick=0.128 if untrained else 5, augment_p=0.0)
    return train_classifier(images, noisy, S, c, 0, device=device, progress=False).model


def measure(device: str, kimg: float, untrained: bool, preset: str | None = None) -> dict:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    net_settings, size, channels, batch = PRESETS[preset or kind]
    digits, digit_labels = digits_at(size)
    digits = np.repeat(digits, channels, axis=-1) if channels != digits.shape[-1] else digits
    n = max(4 * batch, int(kimg * 1000))
    reps = -(-n // len(digits))
    images, noisy = np.tile(digits, (reps, 1, 1, 1))[:n], np.tile(digit_labels, reps)[:n]
    S = build_transition("sym", 0.4, 10)
    cfg = TDSMConfig(**net_settings, batch_size=batch, warmup_kimg=1, duration_kimg=kimg, kimg_per_tick=kimg / 2,
                     augment_p=0.12, checkpoint_every_seconds=1e9)
    classifier = classifier_for(digits, digit_labels, S, cfg, device, untrained)
    from nlkit.hardware import precision_report

    out = {"hardware": precision_report(device, cfg.bf16), "preset": preset or kind, "image_size": size, "channels": channels, "batch_size": batch, **net_settings}
    for method in ("dsm", "tdsm"):
        t0 = time.perf_counter()
        run = train_diffusion(images, noisy, S, cfg, 0, method=method, classifier=classifier, device=device,
                              progress=False)
        if kind == "cuda":
            torch.cuda.synchronize()
        h = run.history
        # the first tick includes warm-up (allocation, cudnn autotuning): report the later ones
        steady = h.iloc[1:] if len(h) > 1 else h
        out[f"{method}_kimg_per_s"] = float(steady["kimg_per_s"].mean())
        out[f"{method}_seconds_total"] = time.perf_counter() - t0
        if method == "tdsm":
            out["tdsm_extra_passes_per_sample"] = float(steady["extra_passes_per_sample"].mean())
    out["tdsm_cost_vs_dsm"] = out["dsm_kimg_per_s"] / out["tdsm_kimg_per_s"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--kimg", type=float, help="images per model, thousands (default 100 on GPU, 3.2 on CPU)")
    p.add_argument("--untrained", action="store_true", help="an untrained classifier (about the most extra passes)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="the network and image size (default: the device's)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args()
    kimg = args.kimg or (100.0 if args.device.startswith("cuda") else 3.2)
    result = measure(args.device, kimg, args.untrained, args.preset)
    commit = git_commit() or "unknown"
    device = device_name() if args.device.startswith("cuda") else \
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    record = {"benchmark": "tdsm_train", "kimg": kimg, "data": "scikit-learn digits, tiled", "classifier": "untrained" if args.untrained
              else "forward-corrected CE, 20 kimg", "noise": "sym 0.4, K = 10", "device": device,
              "torch": torch.__version__, "nlkit_version": __version__, "git_commit": commit,
              "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device.split(" (")[0]).strip("-").lower()
    preset = f"-{args.preset}" if args.preset else ""
    path = out / f"tdsm-{slug}{preset}{'-untrained' if args.untrained else ''}-{commit[:8]}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
