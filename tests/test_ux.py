"""The kit as a researcher meets it: honest titles and tables, clean notebooks in git, the explorer's redraws, quiet
runs, install paths. (The explorer in a real browser: browser_tests/, `make test-browser`.)"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# ------------------------------------------------------------------------------------------- what actually ran

def test_run_label_names_the_stand_in_and_never_none():
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.describe import is_stand_in, run_label

    sln = ROOT / "params/sln/cifar10-sym-0.40-paper-sln.yaml"
    smoke, paper = load_cell(sln, "smoke"), load_cell(sln, "paper")
    assert run_label(smoke) == "digits stand-in for cifar10-sym-0.40-paper-sln, smoke"
    assert run_label(paper) == "cifar10-sym-0.40-paper-sln, paper" and not is_stand_in(paper)
    cpu = load_cell(sln, "cpu")   # real data at a cut size: the label says what was cut
    assert run_label(cpu) == "cifar10-sym-0.40-paper-sln, reduced: 2000 training images, 1000 test images, cpu"
    lra = load_cell(ROOT / "params/lra_diffusion/cifar10-pmd-0.35-clip.yaml", "smoke")
    assert run_label(lra) == "digits stand-in for cifar10-pmd-0.35-clip, pca features instead of clip, smoke"
    for params in sorted((ROOT / "params").glob("*/*.yaml")):
        if params.name.startswith("_"):
            continue
        for profile in ("smoke", "quick"):
            assert "None" not in run_label(load_cell(params, profile)), params


@pytest.fixture
def stand_in_project(tmp_path, monkeypatch):
    """A cell on cifar10 whose smoke profile swaps in digits, and one whose smoke run keeps its data."""
    demo = tmp_path / "params" / "demo"
    demo.mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    (demo / "_tables.yaml").write_text(yaml.safe_dump({
        "title": "Demo", "display_scale": 100, "digits": 1,
        "tables": {"D1": {"title": "accuracy"}, "D2": {"title": "rates"}}}))
    cells = {"swapped": ("D1", {"dataset": "cifar10", "profiles": {"smoke": {"dataset": "digits"}}}, 0.80),
             "same": ("D2", {"dataset": "digits"}, 0.30)}
    for name, (table, body, paper_value) in cells.items():
        (demo / f"{name}.yaml").write_text(yaml.safe_dump({
            "notebook": "fake", "seeds": [0], **body,
            "tables": [{"table": table, "row": name, "column": "acc", "metric": "acc_last",
                        "expected": {"value": paper_value, "source": "demo"}}]}))
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.params import params_hash
    from nlkit.pipeline.runner import metrics_path

    for name, value in (("swapped", 0.95), ("same", 0.32)):
        cell = load_cell(demo / f"{name}.yaml", "smoke")
        path = metrics_path(cell, 0)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"acc_last": value, "params_hash": params_hash(cell, 0), "device": "cpu"}))
    return tmp_path


def test_stand_in_cells_get_no_delta_and_units_agree(stand_in_project):
    import matplotlib.image

    from nlkit.pipeline.tables import build_tables, collect

    df = collect("smoke", "demo").set_index("row")
    assert df.loc["swapped", "stand_in"] and math.isnan(df.loc["swapped", "delta"])
    assert df.loc["swapped", "paper_value"] == 0.80  # kept as the reference
    assert not df.loc["same", "stand_in"] and df.loc["same", "delta"] == pytest.approx(0.02)
    paths = build_tables("smoke", "demo")
    out = stand_in_project / "outputs/smoke/tables"
    md = (out / "demo.md").read_text()
    assert "| swapped | acc | 95.0 † (digits stand-in for swapped, smoke) | 1 | 80.0 | — (stand-in) |" in md
    assert "| same | acc | 32.0 | 1 | 30.0 | 2.0 |" in md
    assert "reproduced (%)" in md
    import pandas as pd

    csv = pd.read_csv(out / "demo.csv").set_index("row")
    # the .csv holds what the .md shows (percent), and says so in its column names
    assert csv.loc["same", "reproduced_mean_pct"] == pytest.approx(32.0)
    assert csv.loc["same", "delta_pct"] == pytest.approx(2.0)
    assert math.isnan(csv.loc["swapped", "delta_pct"]) and csv.loc["swapped", "paper_value_pct"] == 80.0
    assert csv.loc["swapped", "ran_on_stand_in"] == "digits stand-in for swapped, smoke"
    png = next(p for p in paths if p.suffix == ".png")
    assert matplotlib.image.imread(png).shape[1] > 1000  # two panels side by side


def test_tables_figure_has_one_titled_panel_per_table(stand_in_project):
    from nlkit.pipeline.tables import collect, plot_reproduced_vs_paper

    fig = plot_reproduced_vs_paper(collect("smoke", "demo"), "Demo", paper="demo")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert [ax.get_title() for ax in panels] == ["D1: accuracy", "D2: rates"]
    for ax in panels:
        assert ax.get_xlabel() == "paper value (%)" and ax.get_ylabel().endswith("(%)")
        identity = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert identity, "identity line missing"
    # values drawn in percent, the unit of the axes
    d2 = panels[1]
    points = [line for line in d2.get_lines() if line.get_linestyle() != "--"]
    assert any(np.allclose(line.get_xydata(), [[30.0, 32.0]]) for line in points)
    stand = [line for line in panels[0].get_lines() if line.get_linestyle() != "--"]
    assert any(line.get_markerfacecolor() == "none" for line in stand), "stand-in runs are drawn hollow"


# ------------------------------------------------------------------------------------------- notebooks in git

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_no_outputs_and_matches_its_script(path):
    import jupytext
    from jupytext.compare import compare_notebooks

    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{path.name} holds outputs"
    assert "widgets" not in nb["metadata"], f"{path.name} holds widget state"
    script = path.with_suffix(".py")
    # markdown and code, cell by cell, as jupytext compares pairs
    compare_notebooks(jupytext.read(script), jupytext.read(path), fmt="py:percent")
    assert not re.search(r"^#\s+jupytext_version:", script.read_text(), re.M), f"{script.name}: no version stamp"


def test_notebook_tooling_is_configured():
    toml = tomllib.loads((ROOT / "jupytext.toml").read_text())
    assert "jupytext_version" in toml["notebook_metadata_filter"] and toml["formats"] == "ipynb,py:percent"
    hooks = {h["id"] for r in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
             for h in r["hooks"]}
    assert {"no-notebook-outputs", "jupytext"} <= hooks
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/outputs/explore/" in ignored and "/outputs/smoke/" in ignored


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_write_under_the_project_and_end_with_a_table(path):
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "display(" in code[-1], f"{path.name}: the last cell shows the result table"
    if any("out_dir" in c for c in code):
        assert any("output_dir(out_dir" in c or "run_folder(out_dir" in c for c in code), \
            f"{path.name}: out_dir resolved against the project"
    assert not any(".set_title(f\"{cell['cell_id']}" in c for c in code), "titles come from run_label"


def test_output_dir_is_relative_to_the_project_not_the_working_directory(tmp_path, monkeypatch):
    from nlkit.pipeline.describe import output_dir

    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    monkeypatch.chdir(ROOT / "notebooks")  # where JupyterLab starts a notebook's kernel
    assert output_dir("outputs/explore/sln") == tmp_path / "outputs/explore/sln"
    assert output_dir(tmp_path / "x") == tmp_path / "x"


# ------------------------------------------------------------------------------------------- explorer

def _controls(ui):
    c = ui.children[0]
    return {"dataset": c.children[0].children[0], "seed": c.children[0].children[1], "noise": c.children[1],
            "rate": c.children[2].children[0], "map": c.children[2].children[1], "classes": c.children[4]}


def test_explorer_shows_effective_values_and_names_the_setting():
    from nlkit.viz.explorer import explorer_widget

    ui = explorer_widget(datasets=("digits",), initial={"noise": "asym", "rate": 0.2, "seed": 3})
    ui.explorer.wait()
    box = _controls(ui)
    assert box["map"].value == "default" and box["map"].label == "default (asym_c10)"
    status = ui.children[1].value
    assert "digits, asym/asym_c10 p=0.2, seed 3" in status and "realised rate" in status
    svgs = [o["data"]["image/svg+xml"] for o in ui.children[2].outputs]
    assert len(svgs) == 3 and all("digits, asym/asym_c10 p=0.2, seed 3" in s for s in svgs)
    assert "realised rate 10." in svgs[1]  # asym_c10 at p = 0.2 flips half the classes
    # each figure scales down to the output area (never wider than it, so never clipped), up to its natural size
    assert all('<svg' in s and 'width="100%" style="max-width: ' in s.split("<svg", 1)[1].split(">", 1)[0]
               for s in svgs)


def test_explorer_seed_box_takes_whole_numbers_only():
    """Typing 3.7 once gave seed 37 without a word (an integer widget); now it is one clear line."""
    from nlkit.viz.explorer import explorer_widget

    ui = explorer_widget(datasets=("digits",), initial={"noise": "sym", "rate": 0.4, "seed": 3}, background=False)
    box = _controls(ui)
    box["seed"].value = "3.7"
    assert "the seed must be a whole number" in ui.children[1].value and "3.7" in ui.children[1].value
    box["seed"].value = "12"
    assert "seed 12" in ui.children[1].value


def test_explorer_titles_name_the_asym_map_and_the_label_file(tmp_path):
    from nlkit.viz.explorer import noise_name

    assert noise_name({"noise": "asym", "asym_map": None}, 10) == "asym/asym_c10"
    assert noise_name({"noise": "asym", "asym_map": "mnist"}, 10) == "asym/mnist"
    assert noise_name({"noise": "file", "label_file": "x/y/CIFAR-10_human.pt:worse_label"}, 10) == \
        "file CIFAR-10_human.pt:worse_label"
    assert noise_name({"noise": "sym"}, 10) == "sym"


def test_explorer_redraws_are_serialised_and_cached(monkeypatch):
    import nlkit.viz.explorer as explorer
    from nlkit.viz.explorer import explorer_widget

    calls = []
    real = explorer.apply_noise_model
    monkeypatch.setattr(explorer, "apply_noise_model", lambda *a, **k: calls.append(a[1:4]) or real(*a, **k))
    ui = explorer_widget(datasets=("digits",), initial={"noise": "sym", "rate": 0.4})
    box, state = _controls(ui), ui.explorer
    for seed in range(1, 8):  # changes arriving while a drawing is in flight
        box["seed"].value = str(seed)
    state.wait()
    assert state.drawn["seed"] == 7 and "seed 7" in ui.children[1].value
    assert all("seed 7" in o["data"]["image/svg+xml"] for o in ui.children[2].outputs)
    assert len(calls) < 8, "superseded settings are skipped, not all drawn"
    n = len(calls)
    box["classes"].value = ("3",)  # only the grid depends on the class filter
    state.wait()
    assert len(calls) == n and "clean classes 3" in ui.children[1].value
    box["classes"].value = ()
    box["seed"].value = str(1)
    box["seed"].value = str(7)
    state.wait()
    assert sum(c == ("sym", 0.4, 7) for c in calls) == 1, "noisy labels are cached per setting"


def test_explorer_reports_bad_settings_in_the_status_line():
    from nlkit.viz.explorer import explorer_widget

    ui = explorer_widget(datasets=("digits",), initial={"noise": "file"}, background=False)
    assert "cannot draw this setting" in ui.children[1].value and ui.children[2].outputs == ()


def test_available_datasets_offers_what_loads(tmp_path):
    from nlkit.viz.explorer import available_datasets

    assert available_datasets(tmp_path) == ["digits"]


# ------------------------------------------------------------------------------------------- quiet runs

def test_run_log_takes_library_chatter_off_the_terminal(tmp_path, capsys):
    import warnings

    from nlkit.pipeline.executors import run_log

    with run_log(tmp_path / "run.log"):
        logging.getLogger("papermill").warning("Kernel is running over TCP without encryption")
        logging.getLogger("nbclient").info("executing cell 3")
        warnings.warn("a library's warning", UserWarning, stacklevel=1)
    captured = capsys.readouterr()
    assert "encryption" not in captured.err + captured.out
    log = (tmp_path / "run.log").read_text()
    assert "encryption" in log and "a library's warning" in log
    logging.getLogger("papermill").warning("after the run")
    assert "after the run" not in (tmp_path / "run.log").read_text()


def test_parallel_runs_log_to_their_own_files_and_never_to_a_closed_one(tmp_path, capsys):
    """`--jobs 2`: two runs' logs open and close out of order in two threads. Each record lands in the log of the
    thread that emitted it, and a record emitted after both closed (a kernel client collected late) is no
    'Logging error' on the terminal."""
    import threading

    from nlkit.pipeline.executors import run_log

    a_open, b_open, a_closed = threading.Event(), threading.Event(), threading.Event()

    def run_a():
        with run_log(tmp_path / "a.log"):
            a_open.set()
            b_open.wait(10)
            logging.getLogger("jupyter_client").warning("from run a")
        a_closed.set()

    def run_b():
        a_open.wait(10)
        with run_log(tmp_path / "b.log"):
            b_open.set()
            a_closed.wait(10)  # a closes first, while b is still open
            logging.getLogger("jupyter_client").warning("from run b")

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(20)
    logging.getLogger("jupyter_client").warning("a client collected after both runs")
    a, b = (tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text()
    assert "from run a" in a and "from run b" not in a
    assert "from run b" in b and "from run a" not in b
    assert "Logging error" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- install paths

def test_gpu_extra_keeps_the_fallback():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    gpu = project["optional-dependencies"]["gpu"]
    assert any(req.startswith("faiss-gpu") and "platform_machine" in req for req in gpu)
    retrieval = (ROOT / "nlkit/methods/lra_diffusion/retrieval.py").read_text()
    assert "def faiss_available" in retrieval  # torch neighbours where no faiss is installed
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/jupyter lab" in readme and "--allow-root" in readme and "Colab" in readme
    assert "pip has only faiss-cpu" not in (ROOT / "environment.yml").read_text()
    assert os.access(ROOT / ".ci/run", os.X_OK) and "make test-browser" in (ROOT / ".ci/run").read_text()


def test_committed_scripts_are_exactly_what_jupytext_writes():
    """Saving a notebook from JupyterLab rewrites its paired script; with the project's jupytext.toml that must give
    the committed bytes back, or every Lab session leaves the scripts modified."""
    import jupytext
    from jupytext.config import load_jupytext_configuration_file

    config = load_jupytext_configuration_file(str(ROOT / "jupytext.toml"))
    for path in NOTEBOOKS:
        nb = jupytext.read(path)
        config.set_default_format_options(fmt := {"extension": ".py", "format_name": "percent"})
        text = jupytext.writes(nb, fmt=fmt, config=config)
        assert text == path.with_suffix(".py").read_text(), f"{path.stem}.py differs from what jupytext writes"


def test_hooks_need_no_network():
    repos = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    assert all(r["repo"] == "local" for r in repos), "a hook fetched from a remote repository fails offline"


@pytest.mark.extended  # 19 s: installs the hooks and commits in a fresh clone
def test_commit_with_hooks_installed_works_offline_and_keeps_the_outputs_on_disk(tmp_path):
    """`make install` sets up the output filter and pre-commit; a commit then runs the local hooks (no network): a
    notebook saved with outputs is committed without them, its script is brought in sync, and the file on disk
    keeps its outputs with `git status` clean. Without the filter, the hook refuses the commit (outputs staged)."""
    import shutil

    from git_hooks import commit, git, install_hooks, offline_env

    repo = tmp_path / "clone"
    (repo / "notebooks").mkdir(parents=True)
    for name in (".pre-commit-config.yaml", "jupytext.toml", ".gitattributes"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copy(ROOT / "notebooks/tsne.ipynb", repo / "notebooks")
    shutil.copy(ROOT / "notebooks/tsne.py", repo / "notebooks")
    env = offline_env(tmp_path)
    git(repo, env, "init", "-q")
    install_hooks(repo, env, output_filter=False)
    git(repo, env, "add", "-A")
    assert git(repo, env, "commit", "-qm", "notebooks").returncode == 0
    nb = json.loads((repo / "notebooks/tsne.ipynb").read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hello\n"]}]
    code["execution_count"] = 3
    code["source"] = ["# a new first line\n"] + code["source"]
    (repo / "notebooks/tsne.ipynb").write_text(json.dumps(nb, indent=1) + "\n")

    git(repo, env, "add", "-A")   # no output filter set up: the outputs are staged and the hook refuses them
    refused = commit(repo, env, "edited in Lab")
    assert refused.returncode != 0 and "make hooks" in refused.stdout + refused.stderr
    kept = json.loads((repo / "notebooks/tsne.ipynb").read_text())   # checked, not stripped (jupytext may reorder keys)
    assert next(c for c in kept["cells"] if c["cell_type"] == "code")["outputs"] == code["outputs"]

    install_hooks(repo, env)   # now with the output filter, as `make hooks` sets it up
    git(repo, env, "add", "--renormalize", ".")   # as the hook's message says
    done = commit(repo, env, "edited in Lab")
    assert done.returncode == 0, done.stdout + done.stderr
    committed = json.loads(git(repo, env, "show", "HEAD:notebooks/tsne.ipynb").stdout)
    cell = next(c for c in committed["cells"] if c["cell_type"] == "code")
    assert not cell["outputs"] and cell["execution_count"] is None and cell["source"][0] == "# a new first line\n"
    assert "# a new first line" in git(repo, env, "show", "HEAD:notebooks/tsne.py").stdout
    on_disk = next(c for c in json.loads((repo / "notebooks/tsne.ipynb").read_text())["cells"]
                   if c["cell_type"] == "code")
    assert on_disk["outputs"] and on_disk["execution_count"] == 3   # the notebook keeps what it showed
    assert git(repo, env, "status", "--porcelain").stdout == ""


def test_tables_notebook_opens_on_the_committed_results_with_their_readings(tmp_path):
    """A fresh clone has no smoke outputs: the tables notebook shows the committed real-data profiles, readings
    first, and hides the tables with no result behind one line."""
    from nlkit.pipeline.tables import collect, profiles_with_results, reading, to_markdown

    found = [name for name, n in profiles_with_results()]
    assert found and found[0] in ("paper", "quick", "cpu") and (found[-1] == "smoke" or "smoke" not in found)
    assert "CE memorises" in reading("sln", "cpu")
    text = to_markdown(collect("cpu", "sln"), "sln", "cpu", hide_empty=True)
    assert "Not shown, no results under `cpu`:" in text and text.count("\n## ") < 7
    (tmp_path / "smoke" / "sln" / "c" / "seed0").mkdir(parents=True)
    (tmp_path / "smoke" / "sln" / "c" / "seed0" / "metrics.json").write_text("{}")
    assert [n for n, _ in profiles_with_results(tmp_path)] == ["smoke"]
    nb = json.loads((ROOT / "notebooks/tables.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assert "profile = None" in "".join(params["source"])


def test_smoke_runs_say_they_are_a_pipeline_check_and_notebooks_open_on_the_committed_results():
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.describe import run_banner
    from nlkit.pipeline.tables import committed_results

    smoke = load_cell(ROOT / "params/sln/cifar10-sym-0.40-paper-sln.yaml", "smoke")
    cpu = load_cell(ROOT / "params/sln/cifar10-sym-0.40-paper-sln.yaml", "cpu")
    assert "PIPELINE CHECK" in run_banner(smoke) and "digits stand-in" in run_banner(smoke)
    assert run_banner(cpu) is None
    sln_cpu = next(r for r in committed_results("sln") if r["profile"] == "cpu")
    assert "CE memorises" in sln_cpu["reading"] and sln_cpu["png"] is not None
    for path in NOTEBOOKS:
        code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        if "notebook_roots" in code:   # the paper notebooks
            assert "run_banner(cell)" in code and "show_committed_results(" in code, path.name
            assert "value - paper" not in code or "not_comparable" in code, f"{path.name}: a Δ for a stand-in"


def test_tables_figure_shows_reproduced_values_that_have_no_paper_value():
    """The committed LRA and SimCLR cpu runs have no paper value to compare with: their panels draw the reproduced
    numbers as bars instead of an empty box."""
    import matplotlib.pyplot as plt

    from nlkit.pipeline.tables import collect, plot_reproduced_vs_paper

    for paper in ("lra_diffusion", "simclr"):
        fig = plot_reproduced_vs_paper(collect("cpu", paper), paper, paper=paper)
        bars = [p for ax in fig.axes for p in ax.patches if p.get_width() > 0]
        assert bars, f"{paper}: the cpu figure draws no reproduced value"
        assert not any("no cell with both" in t.get_text() for ax in fig.axes for t in ax.texts)
        plt.close(fig)


def test_a_run_at_reduced_resolution_is_marked_reduced_and_gets_no_delta():
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.tables import reduced_budget

    assert reduced_budget(load_cell(ROOT / "params/tdsm/mnist-sym-0.40-tdsm.yaml", "cpu")) == \
        "8x8 images instead of 32x32"
    assert reduced_budget(load_cell(ROOT / "params/tdsm/mnist-sym-0.40-tdsm.yaml", "quick")) == ""
    assert reduced_budget(load_cell(ROOT / "params/tdsm/toy-sym-0.40.yaml", "cpu")) == ""


def test_explorer_reads_a_label_file_rewritten_at_the_same_path_again(tmp_path):
    """The noisy labels were cached by the file's path alone: a rewritten file kept showing its old labels."""
    from nlkit.viz.explorer import Explorer

    state = Explorer(background=False)
    clean = state.dataset("digits").train_labels
    path = tmp_path / "labels.npy"
    setting = {"dataset": "digits", "noise": "file", "rate": 0.0, "seed": 0, "asym_map": None,
               "label_file": str(path)}
    np.save(path, clean)
    assert (state.noise(setting).noisy == clean).all()
    np.save(path, (clean + 1) % 10)   # same path, new labels
    assert (state.noise(setting).noisy == (clean + 1) % 10).all()


def test_run_log_never_writes_through_a_symlink(tmp_path):
    """A run.log that links out of the run folder had the run's chatter appended to the file it points to."""
    from nlkit.pipeline.executors import run_log

    outside = tmp_path / "outside.txt"
    outside.write_text("the user's file\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.log").symlink_to(outside)
    with run_log(run / "run.log"):
        logging.getLogger("papermill").warning("chatter of the run")
    assert outside.read_text() == "the user's file\n"
    assert not (run / "run.log").is_symlink() and "chatter of the run" in (run / "run.log").read_text()


def test_a_real_data_stand_in_outside_smoke_is_named_as_such_not_as_a_toy_run():
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.describe import is_stand_in, run_banner

    cell = load_cell(ROOT / "params/bench/sym-0.8-ce.yaml", "cpu")
    if is_stand_in(cell):   # MNIST in place of the setting's CIFAR-10
        assert run_banner(cell).startswith("STAND-IN") and "toy" not in run_banner(cell)
