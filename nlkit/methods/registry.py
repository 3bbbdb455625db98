"""Methods by name: the papers' homes, the plug-ins the kit ships, and plug-ins of installed packages.

A plug-in is a module that follows the contract of `nlkit.methods.contract` (SPEC, Config.from_cell, prepare,
run). An installed package declares its plug-ins in its pyproject, name -> module:

    [project.entry-points."nlkit.methods"]
    mymethod = "mypackage.mymethod"

and the kit finds them without any change to its own code: `available_methods()` lists every name,
`get_method(name)` returns the module. A params folder `params/<name>/` or a benchmark row names a method this way.
A plug-in that fails to import (any exception, `sys.exit()` included), does not finish importing within
IMPORT_TIMEOUT_S seconds, or lacks a piece of the contract is reported in one line and skipped; the others stay
usable and no command stops or hangs because of it.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from importlib.metadata import entry_points

from ..errors import UserError

ENTRY_POINT_GROUP = "nlkit.methods"

# params/<paper>/ folder -> the module that implements the paper
PAPER_MODULES = {
    "sln": "nlkit.methods.sln",
    "instancegm": "nlkit.methods.instancegm",
    "lra_diffusion": "nlkit.methods.lra_diffusion",
    "simclr": "nlkit.methods.simclr",
    "tdsm": "nlkit.methods.tdsm",
    "noise": "nlkit.methods.noise_study",
    "explore": "nlkit.methods.noise_study",
    "bench": "nlkit.methods.bench",          # the benchmark study: every classifier method on the same data
}

# Plug-ins shipped with the kit: one file each, listed here so that a source checkout finds them without a
# reinstall (installed packages use the entry-point group instead).
BUILTIN_PLUGINS = {
    "gce": "nlkit.methods.gce",
    "coteaching": "nlkit.methods.coteaching",
}

# What a plug-in must provide to run as a benchmark row (papers may lack Config, e.g. the noise study).
PLUGIN_CONTRACT = ("SPEC", "Config", "prepare", "run")

_reported: set[str] = set()   # broken plug-ins already reported (one line each, not one per look-up)

# How long one plug-in may take to import before it is skipped ($NLKIT_PLUGIN_IMPORT_TIMEOUT overrides it).
IMPORT_TIMEOUT_S = 30.0
_stuck: dict[str, str] = {}   # entry point value -> why: an import still blocked is not waited for again


def _import_timeout() -> float:
    try:
        value = float(os.environ.get("NLKIT_PLUGIN_IMPORT_TIMEOUT", IMPORT_TIMEOUT_S))
    except ValueError:
        value = IMPORT_TIMEOUT_S
    return value if value > 0 else IMPORT_TIMEOUT_S


def _load_guarded(ep):
    """`ep.load()` in a daemon thread, waited for at most the import time limit: (module, None) or (None, why).
    SystemExit and KeyboardInterrupt raised by the plug-in's code are contained like any exception; an import
    that blocks is left behind in its thread (daemon: it never holds up the command's exit)."""
    if ep.value in _stuck:
        return None, _stuck[ep.value]
    box: dict = {}

    def load():
        try:
            box["module"] = ep.load()
        except BaseException as e:  # noqa: BLE001 - sys.exit() in a plug-in must not end the command
            box["error"] = e

    thread = threading.Thread(target=load, name=f"nlkit-plugin-{ep.name}", daemon=True)
    thread.start()
    limit = _import_timeout()
    thread.join(limit)
    if thread.is_alive():
        _stuck[ep.value] = f"did not finish importing within {limit:g} s"
        return None, _stuck[ep.value]
    if "error" in box:
        e = box["error"]
        if isinstance(e, SystemExit):
            return None, f"its import called sys.exit({'' if e.code is None else repr(e.code)})"
        first_line = (str(e).splitlines() or [""])[0]
        return None, f"{type(e).__name__}: {first_line}"
    return box["module"], None


def _builtin() -> dict[str, str]:
    return {**PAPER_MODULES, **BUILTIN_PLUGINS}


def _missing_contract(module) -> list[str]:
    missing = [name for name in PLUGIN_CONTRACT if not hasattr(module, name)]
    if "Config" not in missing and not hasattr(module.Config, "from_cell"):
        missing.append("Config.from_cell")
    return missing


def _installed() -> tuple[dict, dict[str, str]]:
    """The entry points of installed packages: ({name: loaded module}, {name: why it was skipped})."""
    loaded, broken = {}, {}
    builtin = _builtin()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        where = f"{ep.value}" + (f" from {ep.dist.name}" if getattr(ep, "dist", None) else "")
        if ep.name in builtin:
            if ep.value != builtin[ep.name]:  # the kit's own name declared again with the same module is harmless
                broken[ep.name] = f"{where}: the name is the kit's own method ({builtin[ep.name]})"
            continue
        if ep.name in loaded:
            broken[ep.name] = f"{where}: another installed package already provides {ep.name!r}"
            continue
        module, why = _load_guarded(ep)   # any import failure of a plug-in is its own problem, not the kit's
        if why:
            broken[ep.name] = f"{where}: {why}"
            continue
        missing = _missing_contract(module)
        if missing:
            broken[ep.name] = f"{where}: not a method (lacks {', '.join(missing)})"
            continue
        loaded[ep.name] = module
    for name, reason in broken.items():
        if name not in _reported:
            _reported.add(name)
            print(f"nlkit: skipped method plug-in {name!r} ({reason})", file=sys.stderr)
    return loaded, broken


def available_methods() -> list[str]:
    """Every method name, sorted: the papers, the kit's plug-ins and those of installed packages that load."""
    return sorted({*_builtin(), *_installed()[0]})


def broken_plugins() -> dict[str, str]:
    """Installed plug-ins that were skipped, with the reason (e.g. for a benchmark's report)."""
    return dict(_installed()[1])


def get_method(name: str):
    """The module implementing method `name` (a paper's is imported on first use: torch-heavy papers cost
    nothing until asked for)."""
    builtin = _builtin()
    if name in builtin:
        return importlib.import_module(builtin[name])
    loaded, broken = _installed()
    if name in loaded:
        return loaded[name]
    if name in broken:
        raise UserError(f"method plug-in {name!r} cannot be used: {broken[name]}")
    raise UserError(f"no method is registered under {name!r}; known: "
                    f"{', '.join(sorted({*builtin, *loaded}))}")
