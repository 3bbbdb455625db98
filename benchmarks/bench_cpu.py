"""CPU speed of one training iteration per paper: the kit at fp32 NCHW, fp32 channels_last and bf16 channels_last
(and torch.compile with --compile), against the original code's network at fp32 NCHW where its checkout is given.

One iteration = forward, the loss, backward and an SGD step of the network each method trains, at the paper's
model and batch size, on random inputs (no dataset needed):

- sln:        WRN-28-2, CIFAR 32x32x3, batch 128, cross-entropy (original: SLN networks/wideresnet.py)
- dividemix:  DivideMix's PreAct ResNet-18, batch 128 (64 labelled + 64 unlabelled mixed), cross-entropy
              (original: DivideMix PreResNet.py); the same network InstanceGM trains
- instancegm: the PreAct ResNet-18 and the generative module (VAE, 32x32, z 25) with the VAE loss, batch 128
              (original: InstanceGM's PreResNet.py ResNet18 + mylib.models VAE_CIFAR10)
- lra:        LRA-Diffusion's CIFAR ResNet-34 image encoder and the conditional denoiser, batch 256, MSE on the
              noise (kit only: the original's model_diffusion.py needs its CLIP pipeline)
- dsm:        the DDPM++ SongUNet of TDSM's MNIST runs (ddpmpp_mnist, 32x32x1, label-conditioned), batch 64, a
              denoising loss (original: tdsm training/networks.py SongUNet); TDSM adds no-grad classifier passes

The `-cpu` cases are the cpu profile's models (kit only; params/*/_profiles.yaml): SLN's small CNN on 32x32 at
batch 64, DivideMix's PreAct ResNet-18 at 1/4 width on 16x16 at batch 64, the shrunk UNet (16 ch, [1, 2], one block,
attention at 4 px) on 8x8 at batch 64, LRA-Diffusion's cached-features variant (64-d SimCLR features, hidden 512)
at batch 200; run them with --threads 1 as the profile does.

The variants run interleaved in one process (A, B, C, A, B, C, ...) and each one's median is reported, so a
machine shared with other work loads every variant alike. One JSON per run under benchmarks/results/, with the
CPU's model and ISA flags:

    python benchmarks/bench_cpu.py --threads 2 --originals ORIGINALS_DIR     # DivideMix/, SLN/, InstanceGM/, tdsm/
    python benchmarks/bench_cpu.py --cases dividemix --rounds 5 --compile
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from nlkit import __version__
from nlkit.hardware import cpu_isa
from nlkit.pipeline.runner import git_commit

CASES = ("sln", "dividemix", "instancegm", "lra", "dsm", "sln-cpu", "dividemix-cpu", "dsm-cpu", "lra-cpu")


@contextlib.contextmanager
def on_path(checkout: Path):
    """Import from an original's checkout (its modules have generic names: forget them afterwards)."""
    before = set(sys.modules)
    sys.path.insert(0, str(checkout))
    try:
        yield
    finally:
        sys.path.remove(str(checkout))
        for name in set(sys.modules) - before:
            if not name.startswith(("nlkit", "torch", "numpy")):
                del sys.modules[name]


def _images(batch, channels=3, size=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(batch, channels, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g)


def case(name: str, originals: Path | None):
    """(kit model, original model or None, inputs, loss(model, inputs) -> scalar)."""
    from nlkit.models import build_model

    orig = None
    if name == "sln":
        kit = build_model("wrn28_2", num_classes=10, in_channels=3)
        if originals and (originals / "SLN").is_dir():
            with on_path(originals / "SLN"):
                orig = importlib.import_module("networks.wideresnet").Wide_ResNet(0, 28, 2, 10)
        x, y = _images(128)
        return kit, orig, (x, y), lambda m, inp: F.cross_entropy(m(inp[0]), inp[1])
    if name == "dividemix":
        kit = build_model("preact_resnet18_dividemix", num_classes=10, in_channels=3)
        if originals and (originals / "DivideMix").is_dir():
            with on_path(originals / "DivideMix"):
                orig = importlib.import_module("PreResNet").ResNet18(10)
        x, y = _images(128)
        return kit, orig, (x, y), lambda m, inp: F.cross_entropy(m(inp[0]), inp[1])
    if name == "instancegm":
        from nlkit.methods.instancegm.generative import GenerativeModule, vae_loss

        class KitInstanceGM(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = build_model("preact_resnet18_dividemix", num_classes=10, in_channels=3)
                self.vae = GenerativeModule(3, 32, 10, z_dim=25)

            def forward(self, x, x01, noisy):
                c = self.net(x01)
                with torch.autocast("cpu", enabled=False):  # the kit runs the generative module in fp32
                    out = self.vae(x01, c.float(), torch.Generator().manual_seed(0))
                    return vae_loss(out, x01, noisy)[0]

        kit = KitInstanceGM()
        if originals and (originals / "InstanceGM").is_dir():
            with on_path(originals / "InstanceGM"):
                net = importlib.import_module("PreResNet").ResNet18(10)
                vae = importlib.import_module("mylib.models").VAE_CIFAR10(z_dim=25, num_classes=10)

            class OrigInstanceGM(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.net, self.vae = net, vae

                def forward(self, x, x01, noisy):
                    # the original's VAE forward (its own loss is in instanceGM.py, a script): a comparable
                    # reconstruction + noisy-label cross-entropy on its outputs
                    x_hat, n_logits, mu, logvar, c_logits, y_hat = self.vae(x01, self.net)
                    return (F.binary_cross_entropy(x_hat.clamp(1e-4, 1 - 1e-4), x01)
                            + F.cross_entropy(n_logits, noisy) + (mu ** 2 + logvar.exp()).mean())

            orig = OrigInstanceGM()
        x, y = _images(128)
        x01 = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
        return kit, orig, (x, x01, y), lambda m, inp: m(*inp)
    if name in ("lra", "lra-cpu"):
        from nlkit.methods.lra_diffusion.model import LRAModel

        n, dim = (256, 512) if name == "lra" else (200, 64)
        kit = LRAModel(10, dim, image_encoder="resnet34" if name == "lra" else "none")
        x, y = _images(n)
        g = torch.Generator().manual_seed(2)
        fp, y_t, eps = torch.randn(n, dim, generator=g), torch.randn(n, 10, generator=g), torch.randn(n, 10)
        t = torch.randint(0, 1000, (n,), generator=g)

        def loss(m, inp):
            x, fp, y_t, t, eps = inp
            return F.mse_loss(m.denoiser(m.embed(x, fp), y_t, fp, t), eps)

        return kit, None, (x, fp, y_t, t, eps), loss
    if name == "dsm":
        from nlkit.diffusion.unet import UNET_PRESETS, build_unet

        kit = build_unet("ddpmpp_mnist", img_resolution=32, in_channels=1, label_dim=10)
        if originals and (originals / "tdsm").is_dir():
            p = UNET_PRESETS["ddpmpp_mnist"]
            with on_path(originals / "tdsm"):
                orig = importlib.import_module("training.networks").SongUNet(
                    32, 1, 1, label_dim=10, augment_dim=9, model_channels=p["model_channels"],
                    channel_mult=list(p["channel_mult"]), num_blocks=p["num_blocks"],
                    attn_resolutions=list(p["attn_resolutions"]), dropout=0.13)
        x, y = _images(64, channels=1)
        g = torch.Generator().manual_seed(3)
        sigma = (torch.randn(64, generator=g) * 1.2 - 1.2).exp()
        noisy = x + sigma[:, None, None, None] * torch.randn(x.shape, generator=g)
        labels = F.one_hot(y, 10).float()

        def loss(m, inp):
            noisy, sigma, labels, x = inp
            return F.mse_loss(m(noisy, sigma.log() / 4, labels), x)

        return kit, orig, (noisy, sigma, labels, x), loss
    if name == "sln-cpu":
        kit = build_model("small_cnn", num_classes=10, in_channels=3)
        x, y = _images(64)
        return kit, None, (x, y), lambda m, inp: F.cross_entropy(m(inp[0]), inp[1])
    if name == "dividemix-cpu":
        kit = build_model("preact_resnet18_dividemix", num_classes=10, in_channels=3, width_mult=0.25)
        x, y = _images(64, size=16)
        return kit, None, (x, y), lambda m, inp: F.cross_entropy(m(inp[0]), inp[1])
    if name == "dsm-cpu":
        from nlkit.diffusion.unet import build_unet

        kit = build_unet("ddpmpp_tiny", img_resolution=8, in_channels=1, label_dim=10, model_channels=16,
                         channel_mult=[1, 2], attn_resolutions=[4])
        x, y = _images(64, channels=1, size=8)
        sigma = torch.linspace(0.02, 20, 64)
        noisy = x + sigma[:, None, None, None] * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
        labels = F.one_hot(y, 10).float()
        return kit, None, (noisy, sigma, labels, x), lambda m, inp: F.mse_loss(m(inp[0], inp[1].log() / 4, inp[2]),
                                                                               inp[3])
    raise ValueError(name)


def make_step(model, inputs, loss, *, channels_last: bool, bf16: bool, compile: bool = False):
    """One training iteration as a closure; the model and its image inputs in the given layout."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        inputs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in inputs)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4, foreach=True)
    fwd = torch.compile(model) if compile else model
    model.train()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            value = loss(fwd, inputs)
        opt.zero_grad(set_to_none=True)
        value.float().backward()
        opt.step()

    return step


def run_case(name: str, originals: Path | None, rounds: int, with_compile: bool) -> dict:
    import copy

    kit, orig, inputs, loss = case(name, originals)
    variants = {"kit fp32 NCHW": (kit, False, False, False), "kit fp32 channels_last": (kit, True, False, False),
                "kit bf16 channels_last": (kit, True, True, False)}
    if with_compile:
        variants["kit bf16 channels_last compiled"] = (kit, True, True, True)
    if orig is not None:
        variants = {"original fp32 NCHW": (orig, False, False, False), **variants}
    steps, first = {}, {}
    for label, (model, cl, bf16, comp) in variants.items():
        steps[label] = make_step(copy.deepcopy(model), inputs, loss, channels_last=cl, bf16=bf16, compile=comp)
        t0 = time.perf_counter()
        steps[label]()  # warm-up (oneDNN primitive creation; compilation when compiled)
        first[label] = time.perf_counter() - t0
        steps[label]()
    times = {label: [] for label in steps}
    for _ in range(rounds):
        for label, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - t0)
    med = {label: statistics.median(v) for label, v in times.items()}
    base = med.get("original fp32 NCHW", med["kit fp32 NCHW"])
    out = {label: {"median_s": med[label], "all_s": times[label], "first_call_s": first[label],
                   "speedup_vs_" + ("original" if orig is not None else "kit_fp32_nchw"): base / med[label]}
           for label in steps}
    return {"case": name, "baseline": "original fp32 NCHW" if orig is not None else "kit fp32 NCHW",
            "variants": out}


def eval_batches(sizes, n_images: int = 2000, rounds: int = 3) -> dict:
    """Seconds per eval pass (DivideMix's eval_train: no-grad forward over every training image) of the cpu
    profile's network (PreAct ResNet-18 at 1/4 width, 16x16) at each batch size, fp32 NCHW and bf16 channels_last,
    interleaved; the fastest size is what the cpu profile's eval_batch_size should be."""
    from nlkit.models import build_model

    x = torch.randn(n_images, 3, 16, 16)
    nets = {"fp32 NCHW": (build_model("preact_resnet18_dividemix", num_classes=10, in_channels=3, width_mult=0.25)
                          .eval(), False)}
    cl = build_model("preact_resnet18_dividemix", num_classes=10, in_channels=3, width_mult=0.25).eval()
    nets["bf16 channels_last"] = (cl.to(memory_format=torch.channels_last), True)
    times = {(label, b): [] for label in nets for b in sizes}
    with torch.no_grad():
        for _ in range(rounds + 1):  # the first round warms oneDNN's kernels for each shape up
            for (label, b), t in times.items():
                net, bf16 = nets[label]
                xs = x.contiguous(memory_format=torch.channels_last) if bf16 else x
                t0 = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                    for i in range(0, n_images, b):
                        net(xs[i:i + b])
                t.append(time.perf_counter() - t0)
    return {label: {str(b): statistics.median(times[(label, b)][1:]) for b in sizes} for label in nets}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in
                  subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                  if line.startswith("Model name")), platform.processor())
    return {"cpu_model": model, **cpu_isa(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5, help="timed iterations per variant, interleaved")
    ap.add_argument("--originals", type=Path, help="a folder holding the originals' checkouts (DivideMix, SLN, ...)")
    ap.add_argument("--compile", action="store_true", help="also time the bf16 channels_last step under torch.compile")
    ap.add_argument("--eval-batches", type=int, nargs="*", default=[],
                    help="also time an eval pass at these batch sizes (e.g. 128 256 500 1000 2000)")
    ap.add_argument("--note", default="", help="recorded as is, e.g. 'machine shared with other work'")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine()
    record = {"benchmark": "cpu", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "commit": git_commit(), "nlkit": __version__, "machine": info, "rounds": args.rounds,
              "note": args.note, "results": []}
    args.out.mkdir(parents=True, exist_ok=True)
    commit = (record["commit"] or "nocommit")[:8]
    out = args.out / f"cpu-{info['isa']}-{args.threads}t-{'-'.join(args.cases)}-{commit}.json"

    def save(result):  # after every case: a long run cut short keeps what it measured
        record["results"].append(result)
        out.write_text(json.dumps(record, indent=1) + "\n")

    for name in args.cases:
        res = run_case(name, args.originals, args.rounds, args.compile)
        for label, v in res["variants"].items():
            speed = next(val for key, val in v.items() if key.startswith("speedup"))
            print(f"{name:11s} {label:34s} {v['median_s']:7.3f} s/iter  x{speed:5.2f} vs {res['baseline']}"
                  f"  (first call {v['first_call_s']:.1f} s)", flush=True)
        save(res)
    if args.eval_batches:
        ev = eval_batches(args.eval_batches)
        for label, per in ev.items():
            print("eval pass, 2000 images,", label, {b: round(s, 3) for b, s in per.items()}, flush=True)
        save({"case": "eval_batches", "seconds_per_pass": ev})
    print("wrote", out)


if __name__ == "__main__":
    main()
