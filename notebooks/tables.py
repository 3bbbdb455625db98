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
import pandas as pd
from IPython.display import Markdown, display

from nlkit.io import kit_path
from nlkit.pipeline.report import reading, summary, summary_line
from nlkit.pipeline.tables import collect, profiles_with_results, table_figure, table_meta, to_markdown
from nlkit.pipeline.tables import reading as profile_note

papers = [paper] if paper else sorted(p.name for p in kit_path("params").iterdir() if p.is_dir())
found = profiles_with_results()
profiles = [profile] if profile else [name for name, _ in found]
print("results found: " + (", ".join(f"{name} ({n} runs)" for name, n in found) or "none yet (run make reproduce)"))
results = {(prof, name): df for prof in profiles for name in papers
           if not (df := collect(prof, name)).empty and (df["n_seeds"] > 0).any()}

# %% [markdown]
# ## Summary
# Per profile and paper: the cells with results, those comparable with the paper (same data and budget) and within
# tolerance of it (1 point, or two seed std where larger), and those that ran on a stand-in (other data or
# features) or at a reduced budget, whose paper value is a reference only. `cpu` runs every paper on real data at a
# reduced budget (2 CPU cores), `quick` on one GPU; `smoke` runs on digits stand-ins and only checks the pipeline.

# %%
display(pd.DataFrame([summary(prof, name, df) for (prof, name), df in results.items()]).set_index(["profile", "paper"])
        if results else Markdown("*No results yet: run `make reproduce`.*"))

# %% [markdown]
# ## Per paper
# What the numbers show (computed from them), the tables of the cells that ran (the cells not run in one line per
# table) and the table figure. The full tables, with every source, are in `outputs/<profile>/tables/<paper>.md`.

# %%
for (prof, name), df in results.items():
    title = table_meta(name).get("title", name)
    text = [f"### {title} — `{prof}`", "", f"**{summary_line(summary(prof, name, df))}**", ""]
    text += [f"- {line}" for line in reading(df, name)] + [""]
    if note := profile_note(name, prof):
        text += [f"<details><summary>what ran under <code>{prof}</code></summary>", "", note, "", "</details>", ""]
    display(Markdown("\n".join(text) + "\n" + to_markdown(df, name, prof, hide_empty=True, brief=True)))
    fig = table_figure(df, name, prof)
    display(fig)
    plt.close(fig)
without = [f"{name} ({prof})" for prof in profiles for name in papers if (prof, name) not in results]
if without:
    display(Markdown(f"*No results for {', '.join(without)}.*"))
