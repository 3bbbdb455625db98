"""One home per paper, each following the contract of `nlkit.methods.contract` (SPEC, Config.from_cell, prepare,
run). The pipeline knows a paper's method only through `method_for(paper)`."""

from __future__ import annotations

import importlib

from .contract import (
    PROTOCOL_METRICS,
    MethodSpec,
    Roots,
    RunOutput,
    config_from_cell,
    write_results,
)

# params/<paper>/ folder -> the module that implements it
PAPER_MODULES = {
    "sln": "nlkit.methods.sln",
    "instancegm": "nlkit.methods.instancegm",
    "lra_diffusion": "nlkit.methods.lra_diffusion",
    "simclr": "nlkit.methods.simclr",
    "tdsm": "nlkit.methods.tdsm",
    "noise": "nlkit.methods.noise_study",
    "explore": "nlkit.methods.noise_study",
}


def method_for(paper: str):
    """The module implementing a paper (imported on first use: torch-heavy papers cost nothing until asked for)."""
    if paper not in PAPER_MODULES:
        from ..errors import UserError

        raise UserError(f"no method is registered for paper {paper!r}; known: {', '.join(sorted(PAPER_MODULES))}")
    return importlib.import_module(PAPER_MODULES[paper])


def spec_for(paper: str) -> MethodSpec:
    return method_for(paper).SPEC


__all__ = ["PAPER_MODULES", "PROTOCOL_METRICS", "MethodSpec", "Roots", "RunOutput", "config_from_cell",
           "method_for", "spec_for", "write_results"]
