"""A JupyterLab save hook that keeps git clean (`make install` registers it for the project's environment:
`.venv/etc/jupyter/jupyter_server_config.json`).

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
