"""One home per paper, and plug-in methods in one file each, all following the contract of
`nlkit.methods.contract` (SPEC, Config.from_cell, prepare, run). The pipeline knows a method only through
`method_for(name)`; `nlkit.methods.registry` finds the papers, the kit's plug-ins and those of installed packages
(entry-point group `nlkit.methods`)."""

from __future__ import annotations

from .contract import (
    PROTOCOL_METRICS,
    MethodSpec,
    Roots,
    RunOutput,
    config_from_cell,
    write_results,
)
from .registry import PAPER_MODULES, available_methods, get_method


def method_for(paper: str):
    """The module implementing a paper or a plug-in method (see `registry.get_method`)."""
    return get_method(paper)


def spec_for(paper: str) -> MethodSpec:
    return method_for(paper).SPEC


__all__ = ["PAPER_MODULES", "PROTOCOL_METRICS", "MethodSpec", "Roots", "RunOutput", "available_methods",
           "config_from_cell", "get_method", "method_for", "spec_for", "write_results"]
