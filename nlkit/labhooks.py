"""Git stays clean around notebooks: a JupyterLab save hook (`make install` registers it for the project's
environment: `.venv/etc/jupyter/jupyter_server_config.json`), and the commit hook (`main`, run by pre-commit) that
checks the staged notebooks hold no outputs without touching the files on disk.

After Lab saves a notebook, git's index is refreshed for it when its content, with outputs stripped by the
project's nbstripout filter, is what git already has: `git status` then stays clean after open, Run All, save,
close. Git judges a file whose size changed as modified without reading it, so without this a saved notebook shows
as modified while `git diff` shows nothing. A notebook whose cells were edited stays modified, as it should."""

from __future__ import annotations

import subprocess
from pathlib import Path


def refresh_git_index(model, os_path, contents_manager=None, **kwargs) -> None:
    if model.get("type") != "notebook":
        return
    path = Path(os_path)
    git = ["git", "-C", str(path.parent)]
    try:
        if subprocess.run(git + ["ls-files", "--error-unmatch", path.name], capture_output=True).returncode:
            return  # not tracked by git
        if subprocess.run(git + ["config", "filter.nbstripout.clean"], capture_output=True).returncode:
            return  # no output filter here: the outputs are a real change
        if subprocess.run(git + ["diff", "--quiet", "--", path.name], capture_output=True).returncode == 0:
            subprocess.run(git + ["add", "--", path.name], capture_output=True)  # the stat only: same blob
    except OSError:  # no git on this machine: nothing to keep clean
        pass


def staged_outputs(paths) -> list[str]:
    """The notebooks among `paths` whose staged content (git's index, what a commit takes) still holds outputs or
    execution counts; [] when all are clean."""
    import json

    dirty = []
    for name in paths:
        shown = subprocess.run(["git", "show", f":{name}"], capture_output=True, text=True)
        if shown.returncode:
            continue  # not staged (deleted): nothing to commit for it
        try:
            cells = json.loads(shown.stdout).get("cells") or []
        except ValueError:
            dirty.append(f"{name} (not a JSON notebook)")
            continue
        if any(c.get("outputs") or c.get("execution_count") is not None for c in cells if c.get("cell_type") == "code"):
            dirty.append(name)
    return dirty


def main(argv=None) -> int:
    """The commit hook (.pre-commit-config.yaml): check, never rewrite. nbstripout's git filter (`make hooks`) strips
    outputs on their way into the index, so the notebook on disk keeps its outputs and `git status` stays clean
    after the commit; this only refuses a commit whose staged notebooks still carry outputs (no filter set up)."""
    import sys

    dirty = staged_outputs(sys.argv[1:] if argv is None else argv)
    for name in dirty:
        print(f"{name}: the staged notebook holds outputs; set up the output filter with `make hooks`, then "
              f"`git add --renormalize {name}` (or clear its outputs)")
    return 1 if dirty else 0


if __name__ == "__main__":
    raise SystemExit(main())
