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
# Colab (opened from the badge): installs the kit (params included) and what this notebook needs, leaving Colab's
# torch as it is, and picks the profile: quick on a GPU runtime, smoke otherwise. downloads=True lets runs fetch
# CIFAR-10 and the CLIP weights. Elsewhere this cell only sets the default profile.
import sys

default_profile = "smoke"
if "google.colab" in sys.modules:
    import subprocess

    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "nlkit @ git+https://github.com/nlkit/nlkit"])
    from nlkit.colab import setup

    default_profile = setup(extras=["notebooks"], downloads=False)

# %% tags=["parameters"]
profile = None        # None: every profile with results (committed cpu/quick runs first); or smoke, cpu, quick, paper
paper = None          # one paper (a folder of params/), or None for all

# %%
import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from nlkit.io import kit_path
from nlkit.pipeline.tables import (
    collect,
    plot_reproduced_vs_paper,
    profiles_with_results,
    reading,
    table_meta,
    to_markdown,
)

papers = [paper] if paper else sorted(p.name for p in kit_path("params").iterdir() if p.is_dir())
found = profiles_with_results()
profiles = [profile] if profile else [name for name, _ in found]
print("results found: " + (", ".join(f"{name} ({n} runs)" for name, n in found) or "none yet (run make reproduce)"))

# %% [markdown]
# ## What the runs show
# Each paper's reading of its runs, per profile, before the tables: the `cpu` profile runs every paper on real data
# at a reduced budget (2 CPU cores), `quick` on one GPU; `smoke` runs on digits stand-ins and only checks the
# pipeline.

# %%
for prof in profiles:
    for name in papers:
        df = collect(prof, name)
        if df.empty or not (df["n_seeds"] > 0).any():
            continue
        text = reading(name, prof)
        title = table_meta(name).get("title", name)
        display(Markdown(f"**{title}, `{prof}`:** " + (text or "no reading written for this profile.")))

# %% [markdown]
# ## The tables
# Reproduced numbers beside the paper's; tables with no result under a profile are named in one line, not drawn.

# %%
for prof in profiles:
    without = []
    for name in papers:
        df = collect(prof, name)
        if df.empty or not (df["n_seeds"] > 0).any():
            without.append(name)
            continue
        display(Markdown(to_markdown(df, name, prof, hide_empty=True)))
        fig = plot_reproduced_vs_paper(df, f"{table_meta(name).get('title', name)}, profile {prof}", paper=name)
        display(fig)
        plt.close(fig)
    if without:
        display(Markdown(f"*Profile `{prof}`: no results for {', '.join(without)}.*"))
