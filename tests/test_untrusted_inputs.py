"""Inputs that must not exhaust the machine or corrupt results: YAML alias bombs in params files, odd values in a
metrics.json that parses, results a notebook recorded for another cell, artefacts that do not load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from test_deps import dep_project, torch_dep_project  # noqa: F401 - a cell whose weights.pt another needs
from test_pipeline import project  # noqa: F401 - the demo project: params/demo/{alpha,beta}.yaml, fake notebook

ROOT = Path(__file__).resolve().parents[1]


def alias_bomb(levels: int = 9) -> str:
    """A params file of well under a kilobyte whose `row:` expands to 9**levels strings ("billion laughs"), the
    anchors hidden under `sources:`, which the schema takes."""
    lines = ["table: D1", "notebook: fake", "sources:", '  - &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", '
             '"lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"  - &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    lines.append(f"row: *l{levels - 1}")
    return "\n".join(lines) + "\n"


def run_limited(code: str, project_dir: Path, memory_mb: int = 1024, timeout: float = 60):
    """Run `code` in a fresh interpreter limited to `memory_mb` of heap (RLIMIT_DATA; shared libraries such as
    torch's are not counted) and `timeout` seconds: an input that expands past it fails there (MemoryError, or the
    timeout), not in this process."""
    prologue = ("import resource\n"
                f"resource.setrlimit(resource.RLIMIT_DATA, ({memory_mb << 20}, {memory_mb << 20}))\n")
    return subprocess.run([sys.executable, "-c", prologue + textwrap.dedent(code)], cwd=project_dir,
                          env={**os.environ, "NLKIT_ROOT": str(project_dir), "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=timeout)


def test_alias_bomb_is_refused_before_it_expands(project):  # noqa: F811
    bomb = project / "params/demo/bomb.yaml"
    bomb.write_text(alias_bomb())
    assert len(bomb.read_bytes()) < 700
    proc = run_limited("""
        from nlkit.errors import UserError
        from nlkit.pipeline import load_cell
        try:
            load_cell("params/demo/bomb.yaml", "smoke")
        except UserError as e:
            print(e)
    """, project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = proc.stdout.splitlines()
    assert "bomb.yaml" in line and "anchors and aliases are not allowed" in line and len(line) < 300


def test_a_deeply_nested_params_file_is_refused_in_one_line(project):  # noqa: F811
    """700 levels of mappings (250 kB) used to end in a RecursionError while the cell was copied."""
    from nlkit.errors import UserError
    from nlkit.pipeline import load_cell

    deep = project / "params/demo/deep.yaml"
    deep.write_text("table: D1\nnotebook: fake\nsources:\n" + "".join(" " * (i + 2) + "a:\n" for i in range(700))
                    + " " * 702 + "b: 1\n")
    with pytest.raises(UserError, match="deep.yaml: nested deeper than 32 levels"):
        load_cell(deep, "smoke")


@pytest.mark.parametrize("where", ["_defaults.yaml", "_profiles.yaml", "_tables.yaml"])
def test_anchors_are_refused_in_every_yaml_the_kit_reads(project, where):  # noqa: F811
    from nlkit.errors import UserError
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.tables import table_meta

    path = project / "params/demo" / where
    path.write_text("smoke: &s {value: 1}\npaper: *s\n")
    if where == "_tables.yaml":  # titles are presentation: ignored with a warning, the table is still written
        with pytest.warns(UserWarning, match="anchors and aliases are not allowed"):
            assert table_meta("demo") == {}
        return
    with pytest.raises(UserError, match=f"{where}: anchors and aliases are not allowed"):
        load_cell(project / "params/demo/alpha.yaml", "smoke")


def test_a_bomb_stops_neither_the_other_cells_nor_the_tables(project):  # noqa: F811
    (project / "params/demo/bomb.yaml").write_text(alias_bomb())
    proc = run_limited("""
        import sys
        from nlkit.pipeline.reproduce import reproduce
        sys.exit(reproduce("smoke", paper="demo", executor="direct"))
    """, project, memory_mb=1024, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]                 # the bomb is an invalid cell ...
    assert "bomb.yaml: anchors and aliases are not allowed" in proc.stderr
    for cell in ("alpha", "beta"):                                     # ... and the others ran
        for seed in (0, 1):
            assert (project / f"outputs/smoke/demo/{cell}/seed{seed}/metrics.json").is_file()
    assert (project / "outputs/smoke/tables/demo.md").is_file()


def test_error_messages_are_short_whatever_the_value():
    import time

    from nlkit.errors import short_repr

    nested = ["x" * 10**6]
    for _ in range(30):
        nested = [nested] * 1000           # 1000**30 strings if expanded
    t0 = time.perf_counter()
    text = short_repr({"a": nested, "b": 10**400, "c": "y" * 10**7})
    assert len(text) <= 63 and time.perf_counter() - t0 < 0.5


# ------------------------------------------------------------------ a notebook recording another cell's result

def _notebook(project: Path, *later_cells: str) -> None:
    """notebooks/fake.ipynb storing its result through write_results, as the kit's notebooks do; `later_cells` go
    between the parameters cell and the body (a cell a person added)."""
    from test_pipeline import FAKE_NOTEBOOK_CODE, write_notebook

    body = ("import pandas as pd\nfrom nlkit.methods import RunOutput, write_results\n"
            "from nlkit.pipeline import load_cell\ncell = load_cell(params_file, profile)\n"
            "write_results(out_dir, RunOutput(pd.DataFrame({'epoch': [1]}), {'acc_last': cell['value'] + seed, "
            "'acc_best_test': 1.0}), cell=cell, seed=seed)")
    write_notebook(project / "notebooks" / "fake.ipynb", [FAKE_NOTEBOOK_CODE[0], *later_cells, body])


def test_a_notebook_that_ran_another_cell_fails_that_run_in_one_line(project, capsys):  # noqa: F811
    from nlkit.cli import main
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.runner import is_current, metrics_path

    _notebook(project, "params_file = 'params/demo/beta.yaml'   # a cell added after the parameters")
    code = main(["run", "params/demo/alpha.yaml", "--seed", "0", "--executor", "direct"])
    out = capsys.readouterr().out
    alpha = load_cell(project / "params/demo/alpha.yaml", "smoke")
    assert code == 1 and out.count("\n") == 1
    assert "failed: demo/alpha seed 0" in out
    assert "the notebook ran params/demo/beta.yaml seed 0, not params/demo/alpha.yaml seed 0" in out
    assert not metrics_path(alpha, 0).exists() and not is_current(alpha, 0)

    _notebook(project)                                   # the notebook fixed: the run records its own cell
    assert main(["run", "params/demo/alpha.yaml", "--seed", "0", "--executor", "direct"]) == 0
    metrics = json.loads(metrics_path(alpha, 0).read_text())
    assert metrics["ran"] == {"params_file": "params/demo/alpha.yaml", "profile": "smoke", "seed": 0}
    assert metrics["acc_last"] == 5.0


def test_currency_checks_the_recorded_identity(project):  # noqa: F811
    from nlkit.pipeline import load_cell, run_cell
    from nlkit.pipeline.currency import current_metrics
    from nlkit.pipeline.runner import metrics_path

    _notebook(project)
    assert run_cell(project / "params/demo/alpha.yaml", "smoke", seed=0, executor="direct")[0].status == "done"
    alpha = load_cell(project / "params/demo/alpha.yaml", "smoke")
    path = metrics_path(alpha, 0)
    metrics = json.loads(path.read_text())
    path.write_text(json.dumps({**metrics, "ran": {**metrics["ran"], "params_file": "params/demo/beta.yaml"}}))
    with pytest.warns(UserWarning, match="as not run: the notebook ran params/demo/beta.yaml seed 0, not "
                                         "params/demo/alpha.yaml seed 0"):
        assert current_metrics(alpha, 0, warn=True) is None


def test_one_cell_spelt_two_ways_is_one_run(project, tmp_path_factory, monkeypatch):  # noqa: F811
    """params/ a symlink (as in a project sharing the kit's params): a cell run as params/demo/alpha.yaml from the
    project folder and looked up by its absolute path (as a dependent's needs do) is the same run."""
    from nlkit.pipeline import load_cell, run_cell
    from nlkit.pipeline.currency import current_metrics

    real = tmp_path_factory.mktemp("elsewhere") / "params"
    (project / "params").rename(real)
    (project / "params").symlink_to(real)
    monkeypatch.chdir(project)
    _notebook(project)
    assert run_cell("params/demo/alpha.yaml", "smoke", seed=0, executor="direct")[0].status == "done"
    assert current_metrics(load_cell(project / "params/demo/alpha.yaml", "smoke"), 0, warn=True) is not None


def test_every_kit_notebook_records_the_cell_and_seed_it_ran():
    import re

    calls = {nb.name: re.findall(r"write_results\(([^)]*)\)", nb.read_text())
             for nb in (ROOT / "notebooks").glob("*.py")}
    calls = {name: found for name, found in calls.items() if found}
    assert len(calls) >= 6
    assert all(all("cell=cell" in c and "seed=seed" in c for c in found) for found in calls.values()), calls


# ------------------------------------------------------------------ odd values in a metrics.json that parses

ODD_VALUES = {  # case: (field, its value as written in the file, what the warning says)
    "wall_seconds": ("wall_seconds", '"x"', "wall_seconds must be a number of seconds"),
    "huge int": ("acc_last", "9" * 400, "acc_last: an integer of 400 digits"),
    "needs": ("needs", '"x"', "needs must map each artefact"),
    "NaN": ("acc_last", "NaN", "acc_last: NaN is not a number"),
    "Infinity": ("acc_best_test", "-Infinity", "acc_best_test: -Infinity is not a number"),
    "overflow": ("acc_last", "1e999", "acc_last: 1e999 overflows"),
    "artefacts": ("artefacts", '["w.pt"]', "artefacts must map each artefact"),
    "nested NaN": ("needs", '{"enc": {"sha256": NaN}}', "needs.enc.sha256: NaN is not a number"),
}


@pytest.mark.parametrize("case", sorted(ODD_VALUES))
def test_an_odd_value_in_metrics_makes_that_run_not_run_and_the_tables_are_written(project, case):  # noqa: F811
    import warnings

    from nlkit.pipeline import load_cell, run_cell
    from nlkit.pipeline.runner import metrics_path
    from nlkit.pipeline.tables import build_tables, collect

    for seed in (0, 1):
        assert run_cell(project / "params/demo/alpha.yaml", "smoke", seed=seed, executor="direct")[0].status == "done"
    path = metrics_path(load_cell(project / "params/demo/alpha.yaml", "smoke"), 0)
    field, raw, expected = ODD_VALUES[case]
    metrics = json.loads(path.read_text())
    metrics[field] = "@odd@"
    path.write_text(json.dumps(metrics).replace('"@odd@"', raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = collect("smoke", "demo").set_index("row")
        written = build_tables("smoke", "demo")
    # the kit's own warnings (ResourceWarnings of sockets that an earlier test's kernel left may land here too)
    lines = [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)]
    assert lines and all(str(path) in line and expected in line and "\n" not in line for line in lines), lines
    assert table.loc["alpha", "n_seeds"] == 1 and table.loc["alpha", "reproduced_mean"] == 6.0   # seed 1's value
    assert any(p.suffix == ".md" for p in written)


def test_a_result_that_is_not_a_number_fails_its_run(project, capsys):  # noqa: F811
    from nlkit.cli import main

    cell = project / "params/demo/alpha.yaml"
    cell.write_text(cell.read_text().replace("value: 5.0", "value: .nan"))
    assert main(["run", str(cell), "--seed", "0", "--executor", "direct"]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "the run's acc_last is nan, not a result" in out
    assert not (project / "outputs/smoke/demo/alpha/seed0/metrics.json").exists()


# ------------------------------------------------------------------ a dependency's artefact that does not load

def _readable_zip_that_does_not_load(path: Path, kind: str) -> None:
    import zipfile

    import torch

    from test_faults import Payload

    if kind == "payload":   # a torch file whose pickle calls os.system: weights_only refuses it
        torch.save({"w": Payload(os.system, (f"touch {path.parent / 'MARKER'}",))}, path)
    else:                   # a sound zip, not laid out as torch writes it
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("weights/data.txt", "not a torch file")


@pytest.mark.parametrize("kind", ["payload", "layout"])
def test_an_artefact_that_does_not_load_makes_its_cell_stale_and_nothing_finished_is_lost(torch_dep_project, kind):
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.reproduce import reproduce
    from nlkit.pipeline.runner import current_metrics, is_current, metrics_path

    project = torch_dep_project
    assert reproduce("smoke", executor="direct") == 0
    enc = load_cell(project / "params/enc/base.yaml", "smoke")
    use = load_cell(project / "params/use/a.yaml", "smoke")
    weights = metrics_path(enc, 0).parent / "weights.pt"
    _readable_zip_that_does_not_load(weights, kind)
    with pytest.warns(UserWarning, match="weights.pt does not load"):
        assert current_metrics(enc, 0, warn=True) is None
    finished = metrics_path(use, 0).read_text()

    notebook = project / "notebooks/encoder.ipynb"         # the encoder's rerun fails: nothing finished is lost
    good = notebook.read_text()
    notebook.write_text(good.replace("import json, tempfile", "raise RuntimeError('no GPU')\\nimport json, tempfile"))
    assert reproduce("smoke", executor="direct") == 1
    assert metrics_path(use, 0).read_text() == finished and metrics_path(enc, 0).is_file()
    assert not is_current(enc, 0) and not is_current(use, 0)

    notebook.write_text(good)                               # it runs again, then its users
    assert reproduce("smoke", executor="direct") == 0
    assert is_current(enc, 0) and is_current(use, 0)
    assert json.loads(metrics_path(use, 0).read_text())["acc_last"] == 15.0
    assert not (weights.parent / "MARKER").exists()


# ------------------------------------------------------------------ --force keeps the evidence when it fails

def test_a_failed_force_puts_the_finished_run_back(project, monkeypatch):  # noqa: F811
    from nlkit.pipeline import load_cell, run_cell
    from nlkit.pipeline.runner import ASIDE, is_current

    cell = project / "params/demo/alpha.yaml"
    assert run_cell(cell, "smoke", seed=0, executor="direct")[0].status == "done"
    folder = project / "outputs/smoke/demo/alpha/seed0"
    (folder / "notebook.ipynb").write_text("{}")            # as papermill leaves it (the direct executor writes none)
    evidence = {name: (folder / name).read_bytes() for name in ("metrics.json", "results.json", "notebook.ipynb")}

    monkeypatch.setenv("FAKE_SLEEP", "not a number")        # the forced rerun fails in the notebook
    [failed] = run_cell(cell, "smoke", seed=0, executor="direct", force=True)
    assert failed.status == "failed"
    assert {name: (folder / name).read_bytes() for name in evidence} == evidence
    assert not (folder / ASIDE).exists() and is_current(load_cell(cell, "smoke"), 0)
    assert "not a number" in (folder / "error.txt").read_text()

    monkeypatch.delenv("FAKE_SLEEP")                       # a forced rerun that finishes replaces it: the old
    assert run_cell(cell, "smoke", seed=0, executor="direct", force=True)[0].status == "done"   # notebook is gone
    assert (folder / "metrics.json").is_file() and not (folder / "notebook.ipynb").exists()
    assert not (folder / ASIDE).exists()


def test_a_rerun_killed_midway_gives_the_finished_run_back(project):  # noqa: F811
    from nlkit.pipeline import run_cell
    from nlkit.pipeline.runner import ASIDE

    cell = project / "params/demo/alpha.yaml"
    assert run_cell(cell, "smoke", seed=0, executor="direct")[0].status == "done"
    folder = project / "outputs/smoke/demo/alpha/seed0"
    metrics = (folder / "metrics.json").read_bytes()
    (folder / "notebook.ipynb").write_text("{}")
    (folder / ASIDE).mkdir()                                 # where a killed --force left it
    for name in ("metrics.json", "results.json", "notebook.ipynb"):
        (folder / name).replace(folder / ASIDE / name)
    assert run_cell(cell, "smoke", seed=0, executor="direct")[0].status == "skipped"
    assert (folder / "metrics.json").read_bytes() == metrics and (folder / "notebook.ipynb").is_file()
    assert not (folder / ASIDE).exists()


# ------------------------------------------------------------------ a refused label file is bad input

def test_a_label_file_failing_its_checksum_is_bad_input_for_nlkit_run(project, capsys):  # noqa: F811
    from test_pipeline import FAKE_NOTEBOOK_CODE, write_notebook

    from nlkit.cli import main
    from nlkit.pipeline.reproduce import reproduce

    write_notebook(project / "notebooks" / "fake.ipynb", [FAKE_NOTEBOOK_CODE[0], (
        "from pathlib import Path\nfrom nlkit.noise.labelfiles import PUBLISHED_SHA256, verify_published\n"
        "name = sorted(PUBLISHED_SHA256)[0]\nPath(out_dir, 'labels.npy').write_bytes(b'not the published file')\n"
        "verify_published(Path(out_dir, 'labels.npy'), name)")])
    assert main(["run", "params/demo/alpha.yaml", "--seed", "0", "--executor", "direct"]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("failed: demo/alpha seed 0")
    assert "does not match the published" in out
    assert "Traceback" not in out
    assert reproduce("smoke", paper="demo", only="alpha", executor="direct") == 1   # a failed run in reproduce


def test_a_refused_rerun_keeps_its_results_apart_from_the_finished_run(project):  # noqa: F811
    from nlkit.pipeline import load_cell, run_cell
    from nlkit.pipeline.runner import is_current

    cell = project / "params/demo/alpha.yaml"
    _notebook(project)
    assert run_cell(cell, "smoke", seed=0, executor="direct")[0].status == "done"
    folder = project / "outputs/smoke/demo/alpha/seed0"
    finished = (folder / "results.json").read_bytes()
    _notebook(project, "params_file = 'params/demo/beta.yaml'")
    assert run_cell(cell, "smoke", seed=0, executor="direct", force=True)[0].status == "failed"
    assert (folder / "results.json").read_bytes() == finished and is_current(load_cell(cell, "smoke"), 0)
    assert json.loads((folder / "results.failed.json").read_text())["ran"]["params_file"] == "params/demo/beta.yaml"
