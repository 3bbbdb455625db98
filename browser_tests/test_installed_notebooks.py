"""Every notebook as from its Colab badge: the kit installed from its wheel (not editable) into a fresh
environment, the notebook copied alone into an empty folder and run there with papermill (smoke profile, no
downloads). Slow (minutes each), so it runs in the browser job; tests/test_installed_kit.py runs the SLN notebook
this way in `make test`. Needs no browser."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from installed_kit import installed_env, run_notebook_alone  # noqa: E402

NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb") if p.stem != "sln")


@pytest.fixture(scope="module")
def kit_python(tmp_path_factory):
    return installed_env(tmp_path_factory.mktemp("kit"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_alone_from_the_installed_kit(kit_python, name, tmp_path):
    done = run_notebook_alone(kit_python, name, tmp_path / "colab")
    assert done.returncode == 0, done.stderr[-3000:]
