"""The kit as Colab gets it: a wheel built from the tracked files, installed (not editable) into a virtual
environment of its own, and a notebook copied alone into an empty folder and run there with papermill. The new
environment sees this one's packages (torch, papermill ...) through a path file, not its editable nlkit."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(dest: Path) -> Path:
    """A wheel of the committed and working-tree files that git tracks. Built with this environment's setuptools
    when it can build wheels (offline), else in pip's isolated build environment (needs the package index)."""
    src = dest / "src"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    wheels = dest / "wheels"
    base = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)]
    errors = []
    for extra in (["--no-build-isolation"], []):
        done = subprocess.run(base + extra, capture_output=True, text=True, timeout=600)
        if done.returncode == 0:
            return next(wheels.glob("nlkit-*.whl"))
        errors.append(done.stderr[-300:])
    pytest.skip(f"cannot build the kit's wheel here (no wheel-capable setuptools, no index): {errors[-1]}")


def installed_env(dest: Path) -> Path:
    """The python of a fresh virtual environment with the kit's wheel installed, without dependencies."""
    wheel = build_wheel(dest)
    venv = dest / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # this environment's packages, as a plain path: its .pth files (the editable nlkit's finder) are not run
    Path(purelib, "host-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return python


def clean_env(**extra) -> dict:
    """No checkout in sight: neither PYTHONPATH nor NLKIT_ROOT; downloads off (smoke runs need none)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NLKIT_ROOT")}
    return {**env, "NLKIT_OFFLINE": "1", **extra}


def run_notebook_alone(python: Path, name: str, folder: Path, *parameters: str) -> subprocess.CompletedProcess:
    """Copy notebooks/<name>.ipynb alone into `folder` (empty) and run it there with papermill (its parameters'
    defaults: the smoke profile off Colab)."""
    folder.mkdir(parents=True)
    (folder / f"{name}.ipynb").write_bytes((ROOT / "notebooks" / f"{name}.ipynb").read_bytes())
    return subprocess.run([str(python), "-m", "papermill", f"{name}.ipynb", "executed.ipynb", "--cwd", ".",
                           "--no-progress-bar", *parameters], cwd=folder, env=clean_env(), capture_output=True,
                          text=True, timeout=1800)
