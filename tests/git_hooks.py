"""A project clone with the commit hooks installed as `make install` installs them, and commits made offline
(any network fetch would fail): shared by tests/test_ux.py and the browser test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRIP = (f"{Path(sys.prefix) / 'bin' / 'python'} -m nbstripout --keep-id --extra-keys 'metadata.language_info "
         "metadata.widgets metadata.papermill cell.metadata.execution cell.metadata.papermill'")


def offline_env(tmp: Path) -> dict:
    return {**os.environ, "PRE_COMMIT_HOME": str(tmp / "pc-cache"), "PYTHONPATH": str(ROOT),
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
            "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def git(repo: Path, env: dict, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True)


def install_hooks(repo: Path, env: dict, output_filter: bool = True) -> None:
    """pre-commit's hook (running this environment's tools through .venv) and, with `output_filter`, nbstripout's
    git filter, as `make hooks` sets them up."""
    if not (repo / ".venv").exists():
        (repo / ".venv").symlink_to(Path(sys.prefix))
    done = subprocess.run([str(Path(sys.prefix) / "bin" / "pre-commit"), "install"], cwd=repo, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    if output_filter:
        git(repo, env, "config", "filter.nbstripout.clean", STRIP)
        git(repo, env, "config", "filter.nbstripout.smudge", "cat")


def commit(repo: Path, env: dict, message: str) -> subprocess.CompletedProcess:
    """A commit; when a hook brings a file in sync (and so stops it, as usual), add and commit again."""
    first = git(repo, env, "commit", "-qm", message)
    if first.returncode == 0:
        return first
    git(repo, env, "add", "-A")
    return git(repo, env, "commit", "-qm", message)
