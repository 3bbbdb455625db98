"""Set-up of a Colab runtime, called by the first cell of every notebook opened from its badge.

That cell installs the kit itself without dependencies (`pip install --no-deps "nlkit @ git+…"`: the package carries
params/, notebooks/ and docs/, see setup.py), then calls `setup`, which installs what the kit and the notebook's
extras need while pinning the torch build Colab ships (a constraints file: pip never replaces it, also not for a
torch-bound package such as open_clip_torch), decides whether CIFAR-10 and the CLIP weights may be downloaded, and
picks the profile: `quick` on a GPU runtime, `smoke` otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from importlib import metadata

# Colab's own builds: kept as installed (pinned to their installed versions while the kit's requirements install)
TORCH_PACKAGES = ("torch", "torchvision", "torchaudio")


def on_colab() -> bool:
    return "google.colab" in sys.modules


def requirements(extras=(), dist: str = "nlkit") -> list[str]:
    """The requirements of the installed kit with `extras` (self-references such as nlkit[all] expanded), as
    pip arguments."""
    from packaging.requirements import Requirement

    wanted, found, todo = set(), [], list(dict.fromkeys(["", *extras]))
    while todo:
        extra = todo.pop()
        if extra in wanted:
            continue
        wanted.add(extra)
        for text in metadata.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            if req.marker is None and extra:   # a base requirement, listed once under extra ""
                continue
            if req.name == dist:
                todo += sorted(req.extras)
            else:   # the marker was evaluated here, against this runtime: pip gets the bare requirement
                found.append(f"{req.name}{'[' + ','.join(sorted(req.extras)) + ']' if req.extras else ''}{req.specifier}")
    return list(dict.fromkeys(found))


def torch_pins() -> list[str]:
    """`name==version` for each of Colab's torch packages that is installed."""
    pins = []
    for name in TORCH_PACKAGES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return pins


def install_command(extras=(), constraints: str = "constraints.txt") -> list[str]:
    """The pip command installing the kit's requirements with `extras`, torch held at its installed build."""
    return [sys.executable, "-m", "pip", "install", "-q", "--constraint", constraints, *requirements(extras)]


def pick_profile() -> str:
    """quick on a GPU runtime, smoke (digits on the CPU) otherwise."""
    import torch

    return "quick" if torch.cuda.is_available() else "smoke"


def setup(extras=("notebooks",), downloads: bool = False, install: bool | None = None) -> str:
    """Make this runtime ready for the notebook and return its profile. `downloads`: let runs fetch CIFAR-10 and
    the CLIP weights (off: a run that needs them stops with a message naming the file to provide). `install`:
    install the requirements (default: on Colab only)."""
    if install is None:
        install = on_colab()
    if install:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            f.write("\n".join(torch_pins()) + "\n")
        try:
            subprocess.check_call(install_command(extras, f.name))
        finally:
            os.unlink(f.name)
    if downloads:
        os.environ.pop("NLKIT_OFFLINE", None)
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["NLKIT_OFFLINE"] = "1"
        os.environ["HF_HUB_OFFLINE"] = "1"   # open_clip fetches its weights through the Hugging Face hub
    profile = pick_profile()
    print(f"nlkit ready: profile {profile}, downloads {'allowed' if downloads else 'off'}; outputs go to "
          f"{os.getcwd()}/outputs")
    return profile
