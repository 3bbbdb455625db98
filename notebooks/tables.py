# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Reproduced tables
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/nlkit/nlkit/blob/main/notebooks/tables.ipynb)
#
# Every table the kit regenerates, rebuilt from the runs' `metrics.json` files under `outputs/<profile>/`: each
# reproduced number (mean ± std over seeds) beside the paper's value and its source. A cell that was never run is
# shown as missing, never filled. `make reproduce` writes the same tables as Markdown and CSV to
# `outputs/<profile>/tables/`.

# %%
# Colab: install the kit without touching Colab's own torch. Elsewhere this cell does nothing.
import importlib.util
import subprocess
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("nlkit") is None:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                           "nlkit[notebooks] @ git+https://github.com/nlkit/nlkit"])

# %% tags=["parameters"]
profile = "smoke"     # smoke, quick or paper
paper = None          # one paper (a folder of params/), or None for all

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from nlkit.pipeline.params import repo_root
from nlkit.pipeline.tables import (
    collect,
    plot_reproduced_vs_paper,
    table_meta,
    to_markdown,
)

papers = [paper] if paper else sorted(p.name for p in (repo_root() / "params").iterdir() if p.is_dir())
print(f"profile {profile!r}: {', '.join(papers)}")

# %%
for name in papers:
    df = collect(profile, name)
    if df.empty:
        continue
    display(Markdown(to_markdown(df, name, profile)))
    fig = plot_reproduced_vs_paper(df, f"{table_meta(name).get('title', name)}, profile {profile}", paper=name)
    display(fig)
    plt.close(fig)
