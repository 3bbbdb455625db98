"""The prepared GPU check: the most evidence a few minutes of one GPU can give, in one command.

    PYTHONPATH=. python benchmarks/gpu_check.py --data-root .gpu-data --out gpu-check-out
    PYTHONPATH=. python benchmarks/gpu_check.py --dry-run --out /tmp/gpu-check   # CPU, digits, seconds

Steps, in order of value, each time-boxed (a hard timeout per step, and NLKIT_TIME_BUDGET_SECONDS so training
loops stop cleanly) and each in its own process, so a crash or hang in one step still leaves the others:

1. doctor    the environment report (`nlkit doctor`)
2. smoke     smoke cells of every paper folder of params/, on the GPU (CUDA-only bugs), chosen so that every
             method's CUDA path runs: SLN, LRA-Diffusion, SimCLR, InstanceGM (DivideMix and its generative
             module), the TDSM classifier and the TDSM diffusion model
3. engine    the kit's training step against a reference-style loop (torchvision DataLoader, CPU transforms) on
             the same model and data (CIFAR-10 train images when found, else random images): images/s and ratio
4. sln       CE vs SLN on CIFAR-10 sym-0.4 with the SLN paper's label file, quick profile, time-boxed
5. lra       SimCLR trained by the kit then LRA-Diffusion with cached features on 35% PMD, cpu profile
             (reduced budget, which a GPU finishes in about a minute), time-boxed

Only torch, torchvision, numpy, pandas, matplotlib, seaborn, scikit-learn, tqdm and pyyaml are needed: notebooks
run with the direct executor. `summary.json` is rewritten after every step and the run outputs and logs are packed
after every step, so a killed check still leaves what it finished. The output folder holds at most five files:
summary.json, doctor.txt, outputs.tar.gz, logs.tar.gz and (after a clean finish) done.txt. Unpack them into
outputs/gpu-check/<date>-<gpu>/ with

    PYTHONPATH=. python benchmarks/gpu_check.py --unpack gpu-check-out
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STEPS = ("doctor", "smoke", "engine", "sln", "lra")
# the cells each paper's smoke run uses on the GPU: those that touch the most code, so that every method's CUDA
# path runs: SLN with LC and EMA, LRA-Diffusion's diffusion head, InstanceGM (DivideMix's co-divide and MixMatch
# with the generative module), TDSM's noisy-label classifier and then the TDSM diffusion model that needs it. Cells
# run in the order listed (a cell another needs runs first, without a time budget, so that it finishes). A paper
# folder not listed here runs its first cell that needs neither CLIP nor another cell and that the smoke profile
# does not leave out
SMOKE_CELLS = {"sln": ("cifar10-sym-0.40-paper-slnmolc",), "lra_diffusion": ("cifar10-pmd-0.35-simclr-head31",),
               "simclr": ("cifar10",), "noise": ("cifar10-sym-0.40-paper",), "explore": ("noise_explorer",),
               "instancegm": ("cifar10-idn-0.20-instancegm",),
               "tdsm": ("mnist-sym-0.40-classifier", "mnist-sym-0.40-tdsm")}
SLN_CELLS = ("sln/cifar10-sym-0.40-paper-ce", "sln/cifar10-sym-0.40-paper-sln")
LRA_CELLS = ("simclr/cifar10", "lra_diffusion/cifar10-pmd-0.35-simclr")

# seconds: (hard timeout of the step's process, training-loop budget per run). Sum of timeouts <= 8 minutes.
GPU_BUDGETS = {"doctor": (30, None), "smoke": (110, 15), "engine": (80, None), "sln": (140, 60),
               "lra": (110, 60)}
DRY_BUDGETS = {"doctor": (60, None), "smoke": (90, 3), "engine": (60, None), "sln": (60, 2), "lra": (60, 2)}
TOTAL_SECONDS = 470  # the whole check, one H100: leaves a retry inside 15 minutes of GPU time


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- steps (child)

def _cells_for_smoke() -> list[str]:
    from nlkit.pipeline.deps import needs_of
    from nlkit.pipeline.params import load_cell

    cells = []
    for folder in sorted(p for p in (ROOT / "params").iterdir() if (p / "_defaults.yaml").is_file()):
        preferred = [folder / f"{name}.yaml" for name in SMOKE_CELLS.get(folder.name, ())]
        if preferred and all(p.is_file() for p in preferred):
            cells += [f"{folder.name}/{p.stem}" for p in preferred]
            continue
        candidates = sorted(p for p in folder.glob("*.yaml") if not p.name.startswith("_") and "clip" not in p.name)
        for path in candidates:
            try:
                resolved = load_cell(path, "smoke")
                if not needs_of(resolved) and not resolved.get("skip"):
                    cells.append(f"{folder.name}/{path.stem}")
                    break
            except Exception:  # a cell that does not resolve is skipped here; the params tests report it
                continue
    return cells


def _run_cells(cells, profile: str, args, result: dict, result_file: Path, finish_needed: bool = False) -> None:
    """Run cells in turn through the pipeline (direct executor), recording each as soon as it ends. With
    `finish_needed`, a cell that a later one needs runs without the training-loop budget: stopped early, it would
    leave its dependent not run (the smoke step's TDSM classifier, seconds at smoke size)."""
    from nlkit.pipeline.deps import needs_of
    from nlkit.pipeline.params import load_cell

    needed = set()
    for ref in cells if finish_needed else ():
        try:
            needed |= set(needs_of(load_cell(ROOT / "params" / f"{ref}.yaml", profile)).values())
        except Exception:  # reported when the cell itself runs
            continue
    for ref in cells:
        budget = os.environ.pop("NLKIT_TIME_BUDGET_SECONDS", None) if ref in needed else None
        try:
            _run_cell(ref, profile, args, result, result_file)
        finally:
            if budget is not None:
                os.environ["NLKIT_TIME_BUDGET_SECONDS"] = budget


def _run_cell(ref: str, profile: str, args, result: dict, result_file: Path) -> None:
    from nlkit.pipeline.params import load_cell
    from nlkit.pipeline.runner import run_one

    t0 = time.perf_counter()
    entry = {"cell": ref, "profile": profile, "status": "running"}
    result["runs"].append(entry)
    _write_json(result_file, result)
    try:
        resolved = load_cell(ROOT / "params" / f"{ref}.yaml", profile)
        seed = int((resolved.get("seeds") or [0])[0])
        r = run_one(resolved, seed, data_root=args.data_root, noise_root=args.noise_root, executor="direct",
                    force=True, root=Path(args.work) / "outputs")
        entry.update(status=r.status, message=r.message or None)
        out_dir = Path(r.out_dir)
        for name in ("metrics.json", "results.json"):  # results.json: a time-boxed run that stopped early
            if (out_dir / name).is_file():
                entry["metrics"] = _headline(json.loads((out_dir / name).read_text()))
                break
    except Exception as err:
        entry.update(status="failed", message=f"{type(err).__name__}: {err}")
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    _write_json(result_file, result)


def _headline(metrics: dict) -> dict:
    """Numbers worth reading in the summary (scalars only; the full metrics are in the outputs archive)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) and len(str(v)) < 80}


def step_doctor(args, result: dict, result_file: Path) -> None:
    from nlkit.doctor import format_report, report

    rep = report(args.data_root)
    (Path(args.out) / "doctor.txt").write_text(format_report(rep) + "\n")
    result["report"] = rep


def step_smoke(args, result: dict, result_file: Path) -> None:
    result["runs"] = []
    _run_cells(_cells_for_smoke(), "smoke", args, result, result_file, finish_needed=True)


def step_engine(args, result: dict, result_file: Path) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_engine import compare

    cuda = torch.cuda.is_available() and not args.dry_run
    images = labels = None
    source = "random uint8 images"
    if not args.dry_run:
        from nlkit.data import load_dataset

        try:
            ds = load_dataset("cifar10", data_root=args.data_root, download=False)
            images, labels, source = ds.train_images, ds.train_labels, "CIFAR-10 train images"
        except Exception as err:  # the ratio is still meaningful on random images of the same size
            result["data_note"] = f"CIFAR-10 not read ({type(err).__name__}: {err}); random images instead"
    steps = 150 if cuda else 2
    if images is None:
        rng = np.random.default_rng(0)
        n = 20_000 if cuda else 2 * 64 * 4
        images, labels = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)
    arch = "wrn28_2" if not args.dry_run else "small_cnn"
    result.update(data=source, device="cuda" if cuda else "cpu")
    result.update(compare("cuda" if cuda else "cpu", steps, 128 if cuda else 64, arch, images, labels,
                          workers=None if cuda else 0))


def step_sln(args, result: dict, result_file: Path) -> None:
    result["runs"] = []
    _run_cells(SLN_CELLS, "smoke" if args.dry_run else "quick", args, result, result_file)


def step_lra(args, result: dict, result_file: Path) -> None:
    result["runs"] = []
    _run_cells(LRA_CELLS, "smoke" if args.dry_run else "cpu", args, result, result_file)


def run_step(args) -> int:
    name = args.step
    result_file = Path(args.work) / "steps" / f"{name}.json"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result = {"step": name, "started": _now()}
    if args.dry_run:
        import torch

        torch.set_num_threads(1)
    globals()[f"step_{name}"](args, result, result_file)
    result["finished"] = _now()
    _write_json(result_file, result)
    return 0


# ---------------------------------------------------------------------------------------------- driver (parent)

def _pack(out: Path, work: Path) -> None:
    """outputs.tar.gz (run folders, checkpoints left out) and logs.tar.gz, each replaced atomically."""
    def skip_checkpoints(info: tarfile.TarInfo):
        return None if "/checkpoints" in info.name or info.name.endswith(".pt") else info

    for name, folder in (("outputs.tar.gz", work / "outputs"), ("logs.tar.gz", work / "logs")):
        if not folder.is_dir():
            continue
        tmp = out / f".{name}.tmp"
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=folder.name, filter=skip_checkpoints)
        os.replace(tmp, out / name)


def _step_status(rc, timed_out: bool, result: dict) -> str:
    if timed_out:
        return "timeout"
    if rc != 0:
        return "failed"
    runs = result.get("runs") or []
    if any(r.get("status") in ("failed", "running") for r in runs):
        return "failed"
    if any(r.get("status") == "not_run" for r in runs):
        return "not_run"
    return "ok"


def _child(cmd, env, log, timeout: float, result_file: Path, summary: dict, name: str, summary_file: Path):
    """Run a step's process; every few seconds copy what it has finished into summary.json (a check killed
    mid-step still reports the cells done so far). Returns (exit code or None, timed out)."""
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return proc.wait(timeout=min(5.0, max(deadline - time.monotonic(), 0.1))), False
        except subprocess.TimeoutExpired:
            if time.monotonic() >= deadline:
                proc.kill()
                proc.wait()
                return None, True
        try:
            partial = json.loads(result_file.read_text()) if result_file.is_file() else {}
        except ValueError:  # being replaced right now
            continue
        summary["steps"][name] = {**partial, "status": "running"}
        _write_json(summary_file, summary)


def _in_process(name: str, args, work: Path, env: dict, log) -> int:
    """Run one step in this process with the step's environment, its output going to `log`."""
    import contextlib
    import traceback

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("NLKIT_", "MPL"))})
    if "NLKIT_TIME_BUDGET_SECONDS" not in env:
        os.environ.pop("NLKIT_TIME_BUDGET_SECONDS", None)
    step_args = argparse.Namespace(**{**vars(args), "step": name, "work": str(work)})
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                return run_step(step_args)
            except Exception:
                traceback.print_exc()
                return 1
    finally:
        os.environ.clear()
        os.environ.update(saved)


def drive(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.work:
        return _drive(args, out, Path(args.work))
    # a scratch folder of its own (the runs' outputs, tens of MB): what matters is packed under --out, so it goes
    work = Path(tempfile.mkdtemp(prefix="nlkit-gpu-check-"))
    try:
        return _drive(args, out, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _drive(args, out: Path, work: Path) -> int:
    (work / "logs").mkdir(parents=True, exist_ok=True)
    budgets = DRY_BUDGETS if args.dry_run else GPU_BUDGETS
    steps = [s for s in STEPS if not args.only or s in args.only.split(",")]
    summary = {"check": "nlkit gpu check", "dry_run": args.dry_run, "started": _now(), "data_root": args.data_root,
               "noise_root": args.noise_root, "steps": {}}
    try:
        from nlkit.pipeline.runner import git_commit

        summary["git_commit"] = git_commit()
    except Exception:
        summary["git_commit"] = None
    _write_json(out / "summary.json", summary)
    t_start = time.monotonic()
    for name in steps:
        left = TOTAL_SECONDS * (args.budget_scale or 1) - (time.monotonic() - t_start)
        timeout, train_budget = budgets[name]
        timeout = min(timeout * (args.budget_scale or 1), max(left, 0))
        if timeout < 5:
            summary["steps"][name] = {"status": "skipped", "message": "no time left in the check's budget"}
            _write_json(out / "summary.json", summary)
            continue
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                   NLKIT_ROOT=str(ROOT), MPLBACKEND="Agg")
        if train_budget:
            env["NLKIT_TIME_BUDGET_SECONDS"] = str(train_budget * (args.budget_scale or 1))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--step", name, "--out", str(out), "--work", str(work)]
        cmd += ["--data-root", args.data_root] if args.data_root else []
        cmd += ["--noise-root", args.noise_root] if args.noise_root else []
        cmd += ["--dry-run"] if args.dry_run else []
        print(f"[gpu-check] {name}: up to {timeout:.0f} s", flush=True)
        t0 = time.perf_counter()
        timed_out, rc = False, None
        with open(work / "logs" / f"{name}.log", "w") as log:
            if args.dry_run:  # one process: the dry run checks the steps, not the CUDA isolation
                rc = _in_process(name, args, work, env, log)
            else:
                rc, timed_out = _child(cmd, env, log, timeout, work / "steps" / f"{name}.json", summary, name,
                                       out / "summary.json")
        result_file = work / "steps" / f"{name}.json"
        result = json.loads(result_file.read_text()) if result_file.is_file() else {}
        status = _step_status(rc, timed_out, result)
        result.update(status=status, seconds=round(time.perf_counter() - t0, 1), returncode=rc)
        if status in ("failed", "timeout"):
            log_text = (work / "logs" / f"{name}.log").read_text(errors="replace")
            result["log_tail"] = log_text[-1500:]
        summary["steps"][name] = result
        summary["elapsed_seconds"] = round(time.monotonic() - t_start, 1)
        _write_json(out / "summary.json", summary)
        _pack(out, work)
        print(f"[gpu-check] {name}: {status} ({result['seconds']} s)", flush=True)
    summary["finished"] = _now()
    _write_json(out / "summary.json", summary)
    (out / "done.txt").write_text(f"finished {summary['finished']} in {summary['elapsed_seconds']} s\n")
    failed = [n for n, s in summary["steps"].items() if s["status"] not in ("ok", "skipped")]
    print(f"[gpu-check] summary in {out / 'summary.json'}" + (f"; not ok: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


class UnpackRefused(ValueError):
    """A check's folder that would write outside its destination (a crafted archive or summary)."""


def unpack(folder, dest_root=None) -> Path:
    """Copy a check's summary and unpack its archives under outputs/gpu-check/<date>-<gpu>/. Nothing is written
    outside that folder: a summary whose date or GPU name is not plain, or an archive with a member that is absolute,
    climbs out with '..', or is a link or a device, is refused (UnpackRefused) before anything is written."""
    import shutil

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    report = (summary["steps"].get("doctor") or {}).get("report") or {}
    gpus = (report.get("torch") or {}).get("gpus") or []
    gpu = str(gpus[0]["name"]) if gpus else ("dry-run" if summary.get("dry_run") else "cpu")
    date = str(summary.get("started", ""))[:10]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise UnpackRefused(f"{folder / 'summary.json'}: 'started' does not begin with a date (got {date!r})")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower() or "gpu"
    root = Path(dest_root or ROOT / "outputs" / "gpu-check").resolve()
    dest = root / f"{date}-{slug}"
    archives = [folder / name for name in ("outputs.tar.gz", "logs.tar.gz") if (folder / name).is_file()]
    for archive in archives:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                _check_member(archive, member, dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "doctor.txt", "done.txt"):
        if (folder / name).is_file():
            shutil.copyfile(folder / name, dest / name)
    for archive in archives:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                target = dest / member.name
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    return dest


def _check_member(archive: Path, member: tarfile.TarInfo, dest: Path) -> None:
    name = member.name
    inside = (dest / name).resolve()
    if (not (member.isfile() or member.isdir()) or Path(name).is_absolute() or ".." in Path(name).parts
            or not inside.is_relative_to(dest.resolve())):
        kind = "a link" if member.issym() or member.islnk() else "a device or special file" \
            if not (member.isfile() or member.isdir()) else "a path outside the destination"
        raise UnpackRefused(f"{archive}: member {name!r} is {kind}; refusing to unpack (nothing written)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", help="folder with the CIFAR-10 archive and noise/sln/cifar10/sym0.4.csv")
    p.add_argument("--noise-root", help="published label files (default: <data-root>/noise)")
    p.add_argument("--out", help="folder for summary.json and the packed outputs (at most five files)")
    p.add_argument("--work", help="scratch folder for the runs (default: a new temporary folder)")
    p.add_argument("--dry-run", action="store_true", help="CPU, digits, tiny budgets: checks the check itself")
    p.add_argument("--only", help="comma-separated steps to run, of: " + ", ".join(STEPS))
    p.add_argument("--budget-scale", type=float, help="multiply every time budget (e.g. 2 on a slower GPU)")
    p.add_argument("--unpack", metavar="FOLDER", help="unpack a finished check into outputs/gpu-check/<date>-<gpu>/")
    p.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.unpack:
        try:
            print(unpack(args.unpack))
        except UnpackRefused as e:
            print(f"gpu_check: {e}", file=sys.stderr)
            return 2
        return 0
    if not args.out:
        p.error("--out is required")
    if args.step:
        return run_step(args)
    if not args.dry_run and not args.data_root:
        p.error("--data-root is required (a folder holding the CIFAR-10 archive); or use --dry-run")
    if args.only and set(args.only.split(",")) - set(STEPS):
        p.error(f"--only takes steps of: {', '.join(STEPS)}")
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
