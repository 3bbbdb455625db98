"""The reproduce pipeline: params overlays, runs and metrics, skip/resume, tables."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from nlkit.errors import UserError
from nlkit.pipeline import find_cells, load_cell, params_hash, run_cell
from nlkit.pipeline.reproduce import reproduce
from nlkit.pipeline.runner import metrics_path
from nlkit.pipeline.tables import build_tables, collect

ROOT = Path(__file__).resolve().parents[1]

FAKE_NOTEBOOK_CODE = [
    # parameters cell
    "params_file = None\nprofile = 'smoke'\nseed = 0\nout_dir = 'x'\ndata_root = None\nnoise_root = None",
    # body: optionally sleep (to be killed), then write results.json
    "import json, os, time\nfrom pathlib import Path\nfrom nlkit.pipeline import load_cell\n"
    "cfg = load_cell(params_file, profile)\n"
    "time.sleep(float(os.environ.get('FAKE_SLEEP', '0')))\n"
    "Path(out_dir, 'results.json').write_text(json.dumps({'acc_last': cfg['value'] + seed, 'acc_best_test': 1.0}))",
]


def write_notebook(path: Path, sources):
    cells = []
    for i, src in enumerate(sources):
        cells.append({"cell_type": "code", "execution_count": None, "id": f"c{i}", "outputs": [],
                      "metadata": {"tags": ["parameters"]} if i == 0 else {}, "source": src})
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}
    path.write_text(json.dumps(nb))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A throw-away project: params/demo/*.yaml and a notebook that echoes a value from its params."""
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "fake.ipynb", FAKE_NOTEBOOK_CODE)
    demo = tmp_path / "params" / "demo"
    demo.mkdir(parents=True)
    (demo / "_profiles.yaml").write_text(yaml.safe_dump({
        "smoke": {"value": 10, "epochs": 1, "nested": {"a": 1}}, "quick": {"epochs": 5}, "paper": {}}))
    (demo / "_tables.yaml").write_text(yaml.safe_dump({"title": "Demo", "tables": {"D1": {"title": "demo table"}}}))
    for name, value, expected in (("alpha", 50, 52.0), ("beta", 70, None)):
        body = {"table": "D1", "row": name, "column": "acc", "notebook": "fake", "metric": "acc_last",
                "value": value, "epochs": 300, "nested": {"a": 0, "b": 2}, "seeds": [0, 1],
                "expected": {"value": expected, "source": "demo"} if expected else {},
                "profiles": {"smoke": {"value": value / 10}}}
        (demo / f"{name}.yaml").write_text(yaml.safe_dump(body))
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    return tmp_path


def test_overlays_apply_in_order(project):
    paper = load_cell(project / "params/demo/alpha.yaml", "paper")
    assert paper["epochs"] == 300 and paper["value"] == 50 and paper["nested"] == {"a": 0, "b": 2}
    smoke = load_cell(project / "params/demo/alpha.yaml", "smoke")
    # profile overlay (epochs, nested.a) then the cell's own smoke overlay (value); nested dicts merge
    assert smoke["epochs"] == 1 and smoke["value"] == 5.0 and smoke["nested"] == {"a": 1, "b": 2}
    assert smoke["paper"] == "demo" and smoke["cell_id"] == "alpha" and "profiles" not in smoke
    assert load_cell(project / "params/demo/alpha.yaml", "quick")["epochs"] == 5
    with pytest.raises(UserError, match="profile"):
        load_cell(project / "params/demo/alpha.yaml", "huge")


def test_params_hash_and_cell_discovery(project):
    a = load_cell(project / "params/demo/alpha.yaml", "smoke")
    assert params_hash(a, 0) != params_hash(a, 1)
    assert params_hash(a, 0) != params_hash(load_cell(project / "params/demo/alpha.yaml", "quick"), 0)
    assert [p.stem for p in find_cells()] == ["alpha", "beta"]
    assert [p.stem for p in find_cells("demo", "b*")] == ["beta"]
    with pytest.raises(UserError, match="paper"):
        find_cells("nope")


def test_run_writes_metrics_and_skips_when_current(project):
    results = run_cell(project / "params/demo/alpha.yaml", "smoke", executor="direct")
    assert [r.status for r in results] == ["done", "done"]
    m = json.loads((project / "outputs/smoke/demo/alpha/seed1/metrics.json").read_text())
    assert m["acc_last"] == 6.0 and m["acc_best_test"] == 1.0 and m["acc_val_selected"] is None
    for key in ("paper", "cell", "profile", "seed", "params", "wall_seconds", "device", "git_commit",
                "nlkit_version", "started_at", "finished_at", "params_hash", "hardware"):
        assert key in m
    # the CPU's ISA and what the run's precision switches resolved to (the demo cell sets none: fp32 NCHW on a CPU)
    assert m["hardware"]["cpu_isa"] and isinstance(m["hardware"]["native_bf16"], bool)
    if m["hardware"]["device_type"] == "cpu":
        assert m["hardware"]["bf16"] is False and m["hardware"]["channels_last"] is False
    assert m["params"]["value"] == 5.0
    again = run_cell(project / "params/demo/alpha.yaml", "smoke", executor="direct")
    assert [r.status for r in again] == ["skipped", "skipped"]
    # changed params make the old metrics stale
    f = project / "params/demo/alpha.yaml"
    f.write_text(f.read_text().replace("b: 2", "b: 3"))
    assert run_cell(f, "smoke", seed=0, executor="direct")[0].status == "done"


def test_failed_run_leaves_no_metrics_and_others_go_on(project, capsys):
    write_notebook(project / "notebooks" / "broken.ipynb", [FAKE_NOTEBOOK_CODE[0], "raise ValueError('boom')"])
    f = project / "params/demo/beta.yaml"
    f.write_text(f.read_text().replace("notebook: fake", "notebook: broken"))
    code = reproduce("smoke", executor="direct")
    assert code == 1
    assert not (project / "outputs/smoke/demo/beta/seed0/metrics.json").exists()
    assert "boom" in (project / "outputs/smoke/demo/beta/seed0/error.txt").read_text()
    assert (project / "outputs/smoke/demo/alpha/seed0/metrics.json").exists()
    assert "FAILED demo/beta seed 0: ValueError: boom" in capsys.readouterr().err


def test_killed_run_leaves_no_metrics_and_is_redone(project):
    env = {**os.environ, "FAKE_SLEEP": "60", "NLKIT_ROOT": str(project)}
    proc = subprocess.Popen([sys.executable, "-m", "nlkit", "run", str(project / "params/demo/alpha.yaml"),
                             "--seed", "0", "--executor", "direct"], env=env, start_new_session=True)
    out = project / "outputs/smoke/demo/alpha/seed0"
    for _ in range(200):  # wait until the run has started
        if out.is_dir():
            break
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.is_dir() and not (out / "metrics.json").exists()
    # the next reproduce redoes only what is missing
    done_before = run_cell(project / "params/demo/alpha.yaml", "smoke", seed=1, executor="direct")
    assert done_before[0].status == "done"
    assert reproduce("smoke", paper="demo", executor="direct") == 0
    assert (out / "metrics.json").exists()
    m1 = (project / "outputs/smoke/demo/alpha/seed1/metrics.json").stat().st_mtime_ns
    assert reproduce("smoke", paper="demo", executor="direct") == 0
    assert (project / "outputs/smoke/demo/alpha/seed1/metrics.json").stat().st_mtime_ns == m1


def test_tables_from_fixture_metrics(project):
    cell = load_cell(project / "params/demo/alpha.yaml", "smoke")
    for seed, acc in ((0, 50.0), (1, 54.0)):
        path = metrics_path(cell, seed)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"acc_last": acc, "params_hash": params_hash(cell, seed), "wall_seconds": 2.0,
                                    "device": "fake-gpu"}))
    # a metrics file for other params does not count
    beta = load_cell(project / "params/demo/beta.yaml", "smoke")
    stale = metrics_path(beta, 0)
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"acc_last": 99.0, "params_hash": "other"}))
    df = collect("smoke", "demo").set_index("row")
    assert df.loc["alpha", "reproduced_mean"] == 52.0
    assert df.loc["alpha", "reproduced_std"] == pytest.approx(np.std([50, 54], ddof=1))
    assert df.loc["alpha", "n_seeds"] == 2 and df.loc["alpha", "delta"] == 0.0
    assert df.loc["alpha", "wall_seconds"] == 4.0 and df.loc["alpha", "device"] == "fake-gpu"
    assert df.loc["beta", "n_seeds"] == 0 and np.isnan(df.loc["beta", "reproduced_mean"])
    paths = build_tables("smoke", "demo")
    md = (project / "outputs/smoke/tables/demo.md").read_text()
    csv = (project / "outputs/smoke/tables/demo.csv").read_text().splitlines()
    assert csv[0] == ("paper,table,row,column,reproduced_mean_pct,reproduced_std_pct,n_seeds,paper_value_pct,"
                      "delta_pct,ran_on_stand_in,reduced_budget,wall_seconds,device")
    assert "| alpha | acc | 52.00 ± 2.83 | 2 | 52.00 | 0.00 |" in md
    assert "| beta | acc | — | 0 | — | — |" in md
    assert any(p.suffix == ".png" for p in paths)


def test_run_command_reports_missing_data_with_exit_2(project, capsys):
    from nlkit.cli import main

    write_notebook(project / "notebooks" / "needsdata.ipynb", [
        FAKE_NOTEBOOK_CODE[0],
        "from nlkit.data import load_dataset\nload_dataset('cifar10', data_root=data_root)"])
    f = project / "params/demo/alpha.yaml"
    f.write_text(f.read_text().replace("notebook: fake", "notebook: needsdata"))
    code = main(["run", str(f), "--seed", "0", "--executor", "direct", "--data-root", str(project / "nodata")])
    out = capsys.readouterr().out
    assert code == 2 and "not_run" in out and "cifar10" in out
    assert not (project / "outputs/smoke/demo/alpha/seed0/metrics.json").exists()


@pytest.mark.slow
def test_smoke_reproduce_of_the_noise_study(kit_project):
    """The real noise-study notebook through papermill for two cells, then the table."""
    tmp_path = kit_project
    code = reproduce("smoke", paper="noise", only="cifar10-*sym-0.40-paper", executor="papermill")
    assert code == 0
    run = tmp_path / "outputs/smoke/noise/cifar10-sym-0.40-paper/seed0"
    m = json.loads((run / "metrics.json").read_text())
    assert abs(m["realised_rate"] - 0.4) < 0.06 and m["top_confusion"]
    assert (run / "notebook.ipynb").is_file() and (run / "grid.png").is_file()
    md = (tmp_path / "outputs/smoke/tables/noise.md").read_text()
    assert "cifar10 sym p=0.4, paper file" in md and "40.03" in md
    assert "**Profile `smoke`:**" in md


def test_ctrl_c_stops_after_the_current_run_and_reproduce_resumes(project):
    env = {**os.environ, "FAKE_SLEEP": "3", "NLKIT_ROOT": str(project)}
    proc = subprocess.Popen([sys.executable, "-m", "nlkit", "reproduce", "--paper", "demo", "--executor", "direct"],
                            env=env, stderr=subprocess.PIPE, text=True)
    first = project / "outputs/smoke/demo/alpha/seed0"
    for _ in range(300):
        if first.is_dir():
            break
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run it again to resume" in err
    finished = sorted(p.parent.name for p in (project / "outputs/smoke/demo").glob("*/seed*/metrics.json"))
    assert len(finished) == 1  # the run under way finished; no other started
    assert reproduce("smoke", paper="demo", executor="direct") == 0
    assert len(list((project / "outputs/smoke/demo").glob("*/seed*/metrics.json"))) == 4


def test_one_run_can_fill_several_table_cells(project):
    f = project / "params/demo/gamma.yaml"
    f.write_text(yaml.safe_dump({"notebook": "fake", "value": 1, "seeds": [0], "tables": [
        {"table": "D1", "row": "live", "column": "sym", "metric": "acc_last", "expected": {"value": 1.0}},
        {"table": "D2", "row": "ema", "column": "sym", "metric": "acc_best_test"}]}))
    assert run_cell(f, "smoke", executor="direct")[0].status == "done"
    df = collect("smoke", "demo").set_index("row")
    assert df.loc["live", "reproduced_mean"] == 10.0 and df.loc["live", "table"] == "D1"
    assert df.loc["ema", "reproduced_mean"] == 1.0 and df.loc["ema", "table"] == "D2"


def test_checkpoints_of_other_params_are_discarded(project):
    out = project / "outputs/smoke/demo/alpha/seed0/checkpoints"
    out.mkdir(parents=True)
    (out / "last.pt").write_text("from a run with other settings")
    assert run_cell(project / "params/demo/alpha.yaml", "smoke", seed=0, executor="direct")[0].status == "done"
    assert not (out / "last.pt").exists() and (out / "params_hash").is_file()
    # a checkpoint written under the current params survives a re-run (that is how runs resume)
    (out / "last.pt").write_text("current")
    (project / "outputs/smoke/demo/alpha/seed0/metrics.json").unlink()
    assert run_cell(project / "params/demo/alpha.yaml", "smoke", seed=0, executor="direct")[0].status == "done"
    assert (out / "last.pt").read_text() == "current"


def test_presentation_edits_keep_runs_current(project):
    f = project / "params/demo/alpha.yaml"
    assert run_cell(f, "smoke", seed=0, executor="direct")[0].status == "done"
    text = f.read_text()
    f.write_text(text.replace("value: 52.0", "value: 53.5").replace("row: alpha", "row: alpha (renamed)"))
    assert run_cell(f, "smoke", seed=0, executor="direct")[0].status == "skipped"
    f.write_text(text.replace("b: 2", "b: 5"))  # a setting: the run is redone
    assert run_cell(f, "smoke", seed=0, executor="direct")[0].status == "done"


def test_cells_with_identical_settings_are_computed_once(project):
    """A profile can map several cells to one computation (smoke swaps CIFAR-10 and CIFAR-100 for digits): the
    second records the first one's result, naming it, instead of running again."""
    demo = project / "params/demo"
    (demo / "gamma.yaml").write_text((demo / "alpha.yaml").read_text().replace("row: alpha", "row: gamma"))
    assert reproduce("smoke", paper="demo", executor="direct") == 0
    alpha = json.loads((project / "outputs/smoke/demo/alpha/seed1/metrics.json").read_text())
    gamma = json.loads((project / "outputs/smoke/demo/gamma/seed1/metrics.json").read_text())
    assert "same_run_as" not in alpha and gamma["same_run_as"] == "demo/alpha seed 1"
    assert gamma["acc_last"] == alpha["acc_last"] and gamma["cell"] == "gamma"
    assert not (project / "outputs/smoke/demo/gamma/seed1/results.json").exists()  # nothing was computed
    table = collect("smoke", "demo")
    assert table.set_index("row").loc["gamma", "reproduced_mean"] == table.set_index("row").loc["alpha",
                                                                                                "reproduced_mean"]
    assert reproduce("smoke", paper="demo", executor="direct") == 0  # both current now


@pytest.mark.slow
def test_reproduce_runs_papermill_notebooks_on_one_shared_kernel(project):
    pytest.importorskip("papermill")
    code = FAKE_NOTEBOOK_CODE[1] + "\nimport os\nPath(out_dir, 'pid').write_text(str(os.getpid()))"
    write_notebook(project / "notebooks" / "fake.ipynb", [FAKE_NOTEBOOK_CODE[0], "leftover = 1", code,
                                                            "assert 'stale' not in globals()\nstale = 1"])
    assert reproduce("smoke", paper="demo", executor="papermill") == 0
    pids = {(project / f"outputs/smoke/demo/{c}/seed{s}/pid").read_text() for c in ("alpha", "beta") for s in (0, 1)}
    assert len(pids) == 1  # one kernel ran all four notebooks, with a fresh namespace each time
    for c in ("alpha", "beta"):
        nb = json.loads((project / f"outputs/smoke/demo/{c}/seed0/notebook.ipynb").read_text())
        assert nb["metadata"]["papermill"]["parameters"]["params_file"].endswith(f"{c}.yaml")
        assert not list((project / f"outputs/smoke/demo/{c}/seed0").glob(".notebook*"))


def test_a_paper_with_no_run_under_a_profile_gets_no_table_and_mixed_units_name_none(project):
    assert build_tables("quick") == []  # nothing ran under quick: no table of dashes
    assert run_cell(project / "params/demo/alpha.yaml", "smoke", seed=0, executor="direct")[0].status == "done"
    meta = project / "params/demo/_tables.yaml"
    meta.write_text(yaml.safe_dump({**yaml.safe_load(meta.read_text()), "unit": ""}))
    md = next(p for p in build_tables("smoke") if p.suffix == ".md").read_text()
    assert "| reproduced | n seeds | paper |" in md and "Units as each column names them." in md
    assert "(%)" not in md


def test_a_reduced_budget_run_shows_no_delta_against_the_full_recipe(project):
    f = project / "params/demo/alpha.yaml"
    body = yaml.safe_load(f.read_text())
    body["profiles"]["smoke"]["train_subset"] = 100   # the cpu profile's kind of cut
    f.write_text(yaml.safe_dump(body))
    assert run_cell(f, "smoke", seed=0, executor="direct")[0].status == "done"
    row = collect("smoke", "demo").set_index("row").loc["alpha"]
    assert row["reduced"] == "100 training images" and np.isnan(row["delta"]) and row["n_seeds"] == 1
    md = next(p for p in build_tables("smoke") if p.suffix == ".md").read_text()
    assert "‡" in md and "— (reduced)" in md and "100 training images" in md


def test_a_metric_that_is_not_a_number_is_reported_and_counted_as_not_run(project):
    """`"acc_last": "high"` in a metrics.json used to crash the tables (float('high'))."""
    cell = load_cell(project / "params/demo/alpha.yaml", "smoke")
    for seed, acc in ((0, "high"), (1, 54.0)):
        path = metrics_path(cell, seed)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"acc_last": acc, "params_hash": params_hash(cell, seed)}))
    with pytest.warns(UserWarning, match=r"seed0/metrics.json as not run: metric values must be numbers or null: "
                                         r"acc_last = 'high'"):
        df = collect("smoke", "demo").set_index("row")
    assert df.loc["alpha", "n_seeds"] == 1 and df.loc["alpha", "reproduced_mean"] == 54.0
    [first, _] = run_cell(project / "params/demo/alpha.yaml", "smoke", executor="direct")
    assert first.status == "done"    # not current: run again, and the file now holds a number
    assert json.loads(metrics_path(cell, 0).read_text())["acc_last"] == 5.0


def test_a_resource_of_the_wrong_type_is_one_line(project, capsys):
    from nlkit.cli import main

    f = project / "params/demo/alpha.yaml"
    f.write_text(f.read_text() + "resources: {num_cpus: two}\n")
    code = main(["run", str(f), "--seed", "0", "--executor", "direct"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "resources.num_cpus" in err and "'two'" in err
