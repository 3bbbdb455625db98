"""The runs committed under outputs/cpu and outputs/quick are the kit's evidence: in a fresh clone each must still
be current (its params unchanged, and for a dependent cell the artefact it was computed from present), or the
regenerated tables would silently lose its numbers."""

import json
import subprocess
from pathlib import Path

import pytest

from nlkit.pipeline.params import load_cell, repo_root
from nlkit.pipeline.runner import is_current

ROOT = repo_root()


def _committed_metrics():
    try:
        listed = subprocess.run(["git", "ls-files", "outputs/cpu", "outputs/quick"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist): nothing to check
        return []
    return [ROOT / p for p in listed if p.endswith("/metrics.json")]


@pytest.mark.parametrize("metrics_file", _committed_metrics(), ids=lambda p: str(p.relative_to(ROOT / "outputs")))
def test_committed_run_is_current(metrics_file: Path):
    metrics = json.loads(metrics_file.read_text())
    resolved = load_cell(ROOT / metrics["params"]["params_file"], metrics["profile"])
    assert is_current(resolved, metrics["seed"]), (
        f"{metrics_file} is no longer current: its params changed, or a dependency's artefact is missing "
        "(commit the artefact, or run the cell again)")
