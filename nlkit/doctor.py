"""`nlkit doctor`: what this machine can run, in one screen (or one JSON object with --json).

Nothing is downloaded, trained or decoded: packages are looked up, the GPU is queried, and data roots are
searched by file name (`nlkit.data.locate`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
from pathlib import Path

from .data.locate import LOCATABLE, locate_dataset
from .io import expand_home

# the published label files the params name, by folder under <noise root>
NOISE_FOLDERS = ("sln/cifar10", "sln/cifar100", "lra-pmd", "cifar-n")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def torch_report() -> dict:
    import torch

    rep = {"version": torch.__version__, "cuda_available": bool(torch.cuda.is_available()),
           "cuda_version": torch.version.cuda, "cudnn": None, "cpu_threads": torch.get_num_threads(), "gpus": []}
    if rep["cuda_available"]:
        rep["cudnn"] = torch.backends.cudnn.version()
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rep["gpus"].append({"index": i, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                                "capability": f"{props.major}.{props.minor}"})
        rep["bf16"] = bool(torch.cuda.is_bf16_supported())
    else:
        rep["bf16"] = False
    return rep


# one training step in fp32 channels_last over the same step in bf16 channels_last on a CPU with AMX: 1.3x (the cpu
# profile's 1/4-width PreAct ResNet-18) to 2.4x (its small CNN) and 3.2x (DivideMix's full PreAct ResNet-18, 2 threads)
# (docs/README.md, "Speed on CPUs"; benchmarks/bench_cpu.py)
AMX_SPEEDUP_OVER_FP32 = "1.3-3"


def cpu_report() -> dict:
    """The CPU's ISA (nlkit.hardware.cpu_isa) and whether the switch bf16 'auto' turns bf16 on."""
    from .hardware import cpu_isa, use_bf16

    return {**cpu_isa(), "auto_bf16": use_bf16("auto", "cpu")}


def cpu_expectation(cpu: dict) -> str:
    """What a run with bf16 'auto' and channels_last computes in on this CPU."""
    if cpu["auto_bf16"]:
        return f"bf16 autocast + channels_last ({cpu['isa']} computes bf16 natively)"
    return (f"fp32 + channels_last (no native bf16 on {cpu['isa']}"
            + (f", capped by ONEDNN_MAX_CPU_ISA={cpu['onednn_max_cpu_isa']}" if cpu["onednn_max_cpu_isa"] else "")
            + f"); about {AMX_SPEEDUP_OVER_FP32}x slower than a CPU with AMX")


def faiss_report() -> dict:
    if not _has("faiss"):
        return {"installed": False, "gpu": False}
    try:
        import faiss

        gpu = bool(hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0)
    except Exception as err:  # a broken build (e.g. a missing BLAS) is worth reporting, not crashing on
        return {"installed": True, "gpu": False, "error": f"{type(err).__name__}: {err}"}
    return {"installed": True, "gpu": gpu, "version": getattr(faiss, "__version__", None)}


def data_roots(data_root=None) -> list[dict]:
    """The roots the kit would read, in the order it prefers them, each with the datasets found there."""
    candidates = []
    if data_root:
        candidates.append(("--data-root", expand_home(data_root)))
    if os.environ.get("NLKIT_DATA_ROOT"):
        candidates.append(("$NLKIT_DATA_ROOT", expand_home(os.environ["NLKIT_DATA_ROOT"])))
    candidates.append(("./data", Path("data")))
    roots, seen = [], set()
    for origin, path in candidates:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        entry = {"origin": origin, "path": str(path), "exists": path.is_dir(), "datasets": {}, "noise": {}}
        if entry["exists"]:
            for name in LOCATABLE:
                if name != "digits":
                    found = locate_dataset(name, path)
                    if found:
                        entry["datasets"][name] = found
            for folder in NOISE_FOLDERS:
                files = sorted(p.name for p in (path / "noise" / folder).glob("*") if p.is_file())
                if files:
                    entry["noise"][folder] = files
        roots.append(entry)
    return roots


def limitations(rep: dict) -> list[str]:
    """What this machine cannot do, one line each."""
    out = []
    t = rep["torch"]
    if not t["cuda_available"]:
        out.append("no CUDA GPU: the quick and paper profiles would run on the CPU (days); smoke and cpu run")
    elif not t["bf16"]:
        out.append("the GPU has no bf16: training runs in fp32 (slower, more memory)")
    if not rep["packages"]["papermill"] or not rep["packages"]["ipykernel"]:
        out.append("no papermill/ipykernel: runs need --executor direct (no executed notebook is saved)")
    if not rep["packages"]["open_clip"]:
        out.append("no open_clip: the CLIP-feature cells (LRA-Diffusion *-clip, t-SNE with CLIP) cannot run")
    if not rep["faiss"]["installed"]:
        out.append("no faiss: neighbour search falls back to exact torch kNN (same result, slower on large sets)")
    elif not rep["faiss"]["gpu"] and t["cuda_available"]:
        out.append("faiss without GPU support: neighbour search runs on the CPU index")
    found = {name for root in rep["data_roots"] for name in root["datasets"]}
    missing = [n for n in ("cifar10", "cifar100", "mnist") if n not in found]
    if missing:
        out.append(f"not found in any data root: {', '.join(missing)} (downloaded on first use when online; "
                   "otherwise pass --data-root)")
    if not any(root["noise"] for root in rep["data_roots"]):
        out.append("no published label files under <data root>/noise: cells that read them need --noise-root")
    return out


def report(data_root=None) -> dict:
    from . import __version__

    rep = {
        "nlkit": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch_report(),
        "cpu": cpu_report(),
        "packages": {
            "torchvision": _version("torchvision"),
            "numpy": _version("numpy"),
            "pandas": _version("pandas"),
            "scikit-learn": _version("scikit-learn"),
            "matplotlib": _version("matplotlib"),
            "papermill": _version("papermill"),
            "ipykernel": _version("ipykernel"),
            "jupytext": _version("jupytext"),
            "open_clip": _version("open_clip_torch") or ("installed" if _has("open_clip") else None),
        },
        "faiss": faiss_report(),
        "time_budget_seconds": os.environ.get("NLKIT_TIME_BUDGET_SECONDS") or None,
        "data_roots": data_roots(data_root),
    }
    rep["cannot"] = limitations(rep)
    return rep


def _yes(value) -> str:
    return value if isinstance(value, str) else ("yes" if value else "no")


def format_report(rep: dict) -> str:
    t = rep["torch"]
    cuda = f"CUDA {t['cuda_version']}, cuDNN {t['cudnn']}" if t["cuda_available"] else "no CUDA device"
    lines = [f"nlkit {rep['nlkit']}  Python {rep['python']}  ({rep['platform']}, {rep['cpu_count']} CPUs)",
             f"torch {t['version']}: {cuda}; {t['cpu_threads']} CPU threads"]
    cpu = rep["cpu"]
    lines.append(f"CPU: {cpu['isa']} (amx_bf16 {_yes(cpu['amx_bf16'])}, avx512_bf16 {_yes(cpu['avx512_bf16'])}, "
                 f"avx512f {_yes(cpu['avx512f'])})")
    lines.append(f"  with bf16 'auto' + channels_last (SLN, DivideMix, InstanceGM): {cpu_expectation(cpu)}; "
                 "the profiles as committed compute in fp32 NCHW on the CPU")
    for g in t["gpus"]:
        lines.append(f"  GPU {g['index']}: {g['name']}, {g['memory_gib']} GiB, compute {g['capability']}, "
                     f"bf16 {_yes(t['bf16'])}")
    pk = rep["packages"]
    lines.append("packages: " + ", ".join(f"{k} {v or 'missing'}" for k, v in pk.items()))
    fa = rep["faiss"]
    lines.append(f"faiss: {'missing' if not fa['installed'] else ('GPU' if fa['gpu'] else 'CPU only')}"
                 + (f" ({fa['error']})" if fa.get("error") else ""))
    if rep["time_budget_seconds"]:
        lines.append(f"time budget per training loop: {rep['time_budget_seconds']} s (NLKIT_TIME_BUDGET_SECONDS)")
    lines.append("data roots:")
    for root in rep["data_roots"]:
        if not root["exists"]:
            lines.append(f"  {root['origin']}: {root['path']} (no such folder)")
            continue
        found = ", ".join(f"{k} [{v}]" for k, v in root["datasets"].items()) or "no datasets"
        lines.append(f"  {root['origin']}: {root['path']}: {found}")
        for folder, files in root["noise"].items():
            lines.append(f"    noise/{folder}: {', '.join(files[:6])}{' ...' if len(files) > 6 else ''}")
    lines.append("digits (bundled with scikit-learn) always resolves: the smoke profile needs no data")
    if rep["cannot"]:
        lines.append("cannot:")
        lines += [f"  - {line}" for line in rep["cannot"]]
    else:
        lines.append("cannot: nothing found missing")
    return "\n".join(lines)


def cmd_doctor(args) -> int:
    import json

    rep = report(args.data_root)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("doctor", help="what this machine can run: Python, torch/CUDA, GPU, packages, data found")
    p.add_argument("--data-root", help="also look in this folder for datasets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_doctor)
