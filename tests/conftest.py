import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """Reference data beside a developer checkout; absent in a user's fresh clone (tests then skip)."""
    candidate = Path(os.environ.get("NLKIT_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture
def shared_data():
    d = shared_data_dir()
    if d is None:
        pytest.skip("reference data (../shared/data) not present")
    return d


@pytest.fixture(autouse=True)
def _offline_and_private_cache(monkeypatch, tmp_path_factory):
    # Tests never download and never write to the user's cache.
    monkeypatch.setenv("NLKIT_OFFLINE", "1")
    monkeypatch.setenv("NLKIT_CACHE", str(tmp_path_factory.getbasetemp() / "nlkit-cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")


@pytest.fixture
def kit_project(tmp_path, monkeypatch):
    """A throw-away project sharing the kit's params/ and notebooks/, so runs write outputs under tmp_path."""
    for name in ("params", "notebooks"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    return tmp_path
