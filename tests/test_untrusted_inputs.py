"""Inputs that must not exhaust the machine or corrupt results: YAML alias bombs in params files, odd values in a
metrics.json that parses, results a notebook recorded for another cell, artefacts that do not load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_pipeline import project  # noqa: F401 - the demo project: params/demo/{alpha,beta}.yaml, fake notebook

ROOT = Path(__file__).resolve().parents[1]


def alias_bomb(levels: int = 9) -> str:
    """A params file of well under a kilobyte whose `row:` expands to 9**levels strings ("billion laughs"), the
    anchors hidden under `sources:`, which the schema takes."""
    lines = ["table: D1", "notebook: fake", "sources:", '  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", '
             '"lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    lines.append(f"row: *l{levels - 1}")
    return "\n".join(lines) + "\n"


def run_limited(code: str, project_dir: Path, memory_mb: int = 1024, timeout: float = 60):
    """Run `code` in a fresh interpreter limited to `memory_mb` of heap (RLIMIT_DATA; shared libraries such as torch's are not counted) and `timeout` seconds: an input
    that expands past it fails there (MemoryError, or the timeout), not in this process."""
    prologue = ("import resource\n"
                f"resource.setrlimit(resource.RLIMIT_DATA, ({memory_mb << 20}, {memory_mb << 20}))\n")
    return subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)], cwd=project_dir,
                          env={**os.environ, "NLKIT_ROOT": str(project_dir), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)


def test_alias_bomb_is_refused_before_it_expands(project):  # noqa: F811
    bomb = project / "params/demo/bomb.yaml"
    bomb.write_text(alias_bomb())
    assert len(bomb.read_bytes()) < 700
    proc = run_limited("""
        from nlkit.errors import UserError
        from nlkit.pipeline import load_cell
        try:
            load_cell("params/demo/bomb.yaml", "smoke")
        except UserError as e:
            print(e)
    """, project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = proc.stdout.splitlines()
    assert "bomb.yaml" in line and "anchors and aliases are not allowed" in line and len(line) < 300


@pytest.mark.parametrize("where", ["_defaults.yaml", "_profiles.yaml", "_tables.yaml"])
def test_anchors_are_refused_in_every_yaml_the_kit_reads(project, where):  # noqa: F811
    from nlkit.errors import UserError
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.tables import table_meta

    path = project / "params/demo" / where
    path.write_text("smoke: &s {value: 1}\npaper: *s\n")
    if where == "_tables.yaml":  # titles are presentation: ignored with a warning, the table is still written
        with pytest.warns(UserWarning, match="anchors and aliases are not allowed"):
            assert table_meta("demo") == {}
        return
    with pytest.raises(UserError, match=f"{where}: anchors and aliases are not allowed"):
        load_cell(project / "params/demo/alpha.yaml", "smoke")


def test_a_bomb_stops_neither_the_other_cells_nor_the_tables(project):  # noqa: F811
    (project / "params/demo/bomb.yaml").write_text(alias_bomb())
    proc = run_limited("""
        import sys
        from nlkit.pipeline.reproduce import reproduce
        sys.exit(reproduce("smoke", paper="demo", executor="direct"))
    """, project, memory_mb=1024, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]                 # the bomb is an invalid cell ...
    assert "bomb.yaml: anchors and aliases are not allowed" in proc.stderr
    for cell in ("alpha", "beta"):                                     # ... and the others ran
        for seed in (0, 1):
            assert (project / f"outputs/smoke/demo/{cell}/seed{seed}/metrics.json").is_file()
    assert (project / "outputs/smoke/tables/demo.md").is_file()


def test_error_messages_are_short_whatever_the_value():
    import time

    from nlkit.errors import short_repr

    nested = ["x" * 10**6]
    for _ in range(30):
        nested = [nested] * 1000           # 1000**30 strings if expanded
    t0 = time.perf_counter()
    text = short_repr({"a": nested, "b": 10**400, "c": "y" * 10**7})
    assert len(text) <= 63 and time.perf_counter() - t0 < 0.5
