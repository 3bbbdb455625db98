"""JupyterLab started from the project folder loads this file (Jupyter reads the working directory's config).

After Lab saves a notebook, git's index is refreshed for it when its content, with outputs stripped by the
project's nbstripout filter (set up by `make install`), is what git already has: `git status` then stays clean
after open, Run All, save, close. (Git decides "modified" from the file's size alone when the size changed, so
without this a saved notebook shows as modified while `git diff` shows nothing.) A notebook whose cells were
edited is left as modified, as it should be."""

import subprocess
from pathlib import Path


def _refresh_git_index(model, os_path, contents_manager, **kwargs):
    if model.get("type") != "notebook":
        return
    path = Path(os_path)
    git = ["git", "-C", str(path.parent)]
    try:
        if subprocess.run(git + ["ls-files", "--error-unmatch", path.name], capture_output=True).returncode:
            return  # not tracked
        if subprocess.run(git + ["config", "filter.nbstripout.clean"], capture_output=True).returncode:
            return  # no output filter: the outputs are a real change
        if subprocess.run(git + ["diff", "--quiet", "--", path.name], capture_output=True).returncode == 0:
            subprocess.run(git + ["add", "--", path.name], capture_output=True)  # stat only: the blob is unchanged
    except OSError:  # no git on this machine: nothing to keep clean
        pass


c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file
c.FileContentsManager.post_save_hook = _refresh_git_index
