"""Ships the files the notebooks and the pipeline read beside the code (params/, notebooks/, docs/) inside the
package, under nlkit/_kit/, so that a plain `pip install .` (or from git, as the Colab badge does) brings the whole
kit. A checkout's own folders take precedence over this copy (nlkit.io.kit_path). Metadata is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

KIT_FOLDERS = ("params", "notebooks", "docs")
KIT_SUFFIXES = {".yaml", ".ipynb", ".md"}


class BuildPyWithKit(build_py):
    def run(self):
        super().run()
        here = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "nlkit" / "_kit"
        for folder in KIT_FOLDERS:
            for src in sorted((here / folder).rglob("*")):
                if src.is_file() and src.suffix in KIT_SUFFIXES and ".ipynb_checkpoints" not in src.parts:
                    dest = target / src.relative_to(here)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)


setup(cmdclass={"build_py": BuildPyWithKit})
