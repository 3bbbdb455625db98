"""Cell dependencies (`needs:`): resolved to the needed run's artefact, folded into the run key, scheduled first."""

import json
from pathlib import Path

import pytest
import yaml

from nlkit.pipeline import load_cell, run_cell
from nlkit.pipeline.reproduce import reproduce
from nlkit.pipeline.runner import current_metrics, is_current, metrics_path

from test_pipeline import write_notebook

PARAMS = "params_file = None\nprofile = 'smoke'\nseed = 0\nout_dir = 'x'\ndata_root = None\nnoise_root = None\nneeds = {}"

ENCODER_CODE = [PARAMS, (
    "import json, time\nfrom pathlib import Path\nfrom nlkit.pipeline import load_cell\n"
    "cfg = load_cell(params_file, profile)\ntime.sleep(cfg.get('sleep', 0))\n"
    "Path(out_dir, 'weights.bin').write_text(f\"weights {cfg['value']}\")\n"
    "Path(out_dir, 'results.json').write_text(json.dumps({'acc_last': cfg['value'], "
    "'artefacts': {'encoder': 'weights.bin'}, 'finished': time.time()}))")]

USER_CODE = [PARAMS, (
    "import json, time\nfrom pathlib import Path\n"
    "started = time.time()\nweights = Path(needs['encoder']).read_text()\n"
    "Path(out_dir, 'results.json').write_text(json.dumps({'acc_last': 1.0, 'weights_seen': weights, "
    "'started': started}))")]


@pytest.fixture
def dep_project(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "encoder.ipynb", ENCODER_CODE)
    write_notebook(tmp_path / "notebooks" / "user.ipynb", USER_CODE)
    for paper, cells in (("enc", {"base": {"notebook": "encoder", "value": 1, "sleep": 0}}),
                         ("use", {"a": {"notebook": "user", "needs": {"encoder": "enc/base"}},
                                  "b": {"notebook": "user", "needs": {"encoder": "enc/base"}}})):
        folder = tmp_path / "params" / paper
        folder.mkdir(parents=True)
        for name, body in cells.items():
            body = {"table": "T", "metric": "acc_last", "seeds": [0], **body}
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(body))
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    return tmp_path


def _set_encoder(project: Path, **changes):
    path = project / "params" / "enc" / "base.yaml"
    body = yaml.safe_load(path.read_text())
    body.update(changes)
    path.write_text(yaml.safe_dump(body))


def test_missing_dependency_is_not_run_with_a_reason(dep_project):
    [result] = run_cell(dep_project / "params/use/a.yaml", "smoke", executor="direct")
    assert result.status == "not_run" and "enc/base" in result.message
    assert not metrics_path(load_cell(dep_project / "params/use/a.yaml", "smoke"), 0).exists()


def test_reproduce_runs_what_a_cell_needs_first_and_passes_the_artefact(dep_project):
    assert reproduce("smoke", paper="use", executor="direct") == 0  # enc/base is pulled into the plan
    use = load_cell(dep_project / "params/use/a.yaml", "smoke")
    m = json.loads(metrics_path(use, 0).read_text())
    assert m["weights_seen"] == "weights 1" and m["needs"]["encoder"]["cell"] == "enc/base"
    assert is_current(use, 0)


def test_retraining_the_dependency_makes_its_users_stale(dep_project):
    assert reproduce("smoke", executor="direct") == 0
    use = load_cell(dep_project / "params/use/a.yaml", "smoke")
    assert is_current(use, 0)
    _set_encoder(dep_project, value=2)            # other params: the dependency is no longer done ...
    assert not is_current(use, 0)
    assert reproduce("smoke", executor="direct") == 0  # ... and a reproduce retrains it, then its users
    assert json.loads(metrics_path(use, 0).read_text())["weights_seen"] == "weights 2"
    assert is_current(use, 0)
    enc = load_cell(dep_project / "params/enc/base.yaml", "smoke")
    weights = metrics_path(enc, 0).parent / "weights.bin"
    weights.write_text("weights retrained elsewhere")  # same params, other content: stale too
    assert is_current(enc, 0) and not is_current(use, 0)


@pytest.mark.slow
def test_parallel_reproduce_never_starts_a_dependent_before_its_dependency(dep_project):
    _set_encoder(dep_project, sleep=3)
    assert reproduce("smoke", executor="direct", jobs=2) == 0
    enc = json.loads(metrics_path(load_cell(dep_project / "params/enc/base.yaml", "smoke"), 0).read_text())
    for cell in ("a", "b"):
        m = json.loads(metrics_path(load_cell(dep_project / f"params/use/{cell}.yaml", "smoke"), 0).read_text())
        assert m["started"] > enc["finished"] and m["weights_seen"] == "weights 1"


def test_a_null_need_is_no_dependency(dep_project):
    path = dep_project / "params/use/a.yaml"
    body = yaml.safe_load(path.read_text())
    body["profiles"] = {"smoke": {"needs": {"encoder": None}}}
    path.write_text(yaml.safe_dump(body))
    from nlkit.pipeline.deps import needs_of

    assert needs_of(load_cell(path, "smoke")) == {}
    assert needs_of(load_cell(path, "quick")) == {"encoder": "enc/base"}


# A bad `needs:` stops exactly the cells that depend on it (before: a missing, invalid or unknown-paper dependency
# aborted the whole reproduce, a cycle raised RecursionError); the others run and the tables are rebuilt.
BAD_NEEDS = {
    "missing cell": ({"a": "enc/zzz"}, {"use/a": "needed cell enc/zzz has no params file (params/enc/zzz.yaml)"}),
    "unknown paper": ({"a": "nopaper/x"}, {"use/a": "needed cell nopaper/x names an unknown paper 'nopaper'"}),
    "invalid cell": ({"a": "enc/bad"}, {"use/a": "needed cell enc/bad is invalid: params/enc/bad.yaml [smoke "
                                                 "profile]: invalid params: seeds"}),
    "self cycle": ({"a": "use/a"}, {"use/a": "its needs form a cycle: use/a → use/a"}),
    "two-cell cycle": ({"a": "use/b", "b": "use/a"}, {"use/a": "its needs form a cycle: use/a → use/b → use/a",
                                                      "use/b": "its needs form a cycle: use/a → use/b → use/a"}),
    "needs a cell in a cycle": ({"a": "use/b", "b": "use/b"},
                                {"use/b": "its needs form a cycle: use/b → use/b",
                                 "use/a": "needs use/b, which cannot run (its needs form a cycle: use/b → use/b)"}),
}


@pytest.mark.parametrize("ran_before", [False, True], ids=["fresh", "after-a-finished-reproduce"])
@pytest.mark.parametrize("case", sorted(BAD_NEEDS))
def test_a_bad_need_stops_only_the_cells_that_depend_on_it(dep_project, case, ran_before):
    import io

    if ran_before:   # finished runs whose needs then break (their run keys must not recurse or raise)
        assert reproduce("smoke", executor="direct", stream=io.StringIO()) == 0
    needs, reasons = BAD_NEEDS[case]
    if case == "invalid cell":
        (dep_project / "params/enc/bad.yaml").write_text("notebook: encoder\ntable: T\nmetric: acc_last\nseeds: [-1]\n")
    for cell, ref in needs.items():
        path = dep_project / f"params/use/{cell}.yaml"
        path.write_text(path.read_text().replace("enc/base", ref))
    out = io.StringIO()
    assert reproduce("smoke", executor="direct", stream=out) == 1
    log = out.getvalue()
    for cell in ("use/a", "use/b"):
        current = is_current(load_cell(dep_project / f"params/{cell}.yaml", "smoke"), 0)
        if cell in reasons:
            assert not current and f"not run: {cell} seed 0: {reasons[cell]}" in log, log
        else:
            assert current, log
    assert metrics_path(load_cell(dep_project / "params/enc/base.yaml", "smoke"), 0).exists()
    assert f"{len(reasons)} not run" in log and "table: " in log
    assert (dep_project / "outputs/smoke/tables/enc.md").is_file()


def test_nlkit_run_of_a_cell_in_a_cycle_is_not_run(dep_project):
    for cell, ref in (("a", "use/b"), ("b", "use/a")):
        path = dep_project / f"params/use/{cell}.yaml"
        path.write_text(path.read_text().replace("enc/base", ref))
    [result] = run_cell(dep_project / "params/use/a.yaml", "smoke", executor="direct")
    assert result.status == "not_run" and "use/b" in result.message


THREADS_CODE = [PARAMS, (
    "import json, os, time\nimport torch\nfrom pathlib import Path\nfrom nlkit.pipeline import load_cell\n"
    "cfg = load_cell(params_file, profile)\nstarted = time.time()\ntime.sleep(cfg['sleep'])\n"
    "Path(out_dir, 'results.json').write_text(json.dumps({'acc_last': cfg['value'], 'threads': "
    "torch.get_num_threads(), 'pid': os.getpid(), 'started': started, 'finished': time.time()}))")]


@pytest.mark.extended  # 7 s; make test runs --jobs 2 reproduces in test_faults.py and test_containment.py
def test_parallel_runs_each_drive_a_kernel_with_the_profiles_threads(tmp_path, monkeypatch):
    """`--jobs 2`: two worker kernels run at once, each run computes with `resources.num_cpus` threads (so its
    numbers do not depend on how many runs share the machine), and a cell with the same settings as one under
    way waits for it and records its result instead of computing it again."""
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "threads.ipynb", THREADS_CODE)
    folder = tmp_path / "params" / "thr"
    folder.mkdir(parents=True)
    for name, value in (("a", 1), ("b", 2), ("c", 1)):  # c computes what a computes
        (folder / f"{name}.yaml").write_text(yaml.safe_dump({
            "notebook": "threads", "value": value, "sleep": 3, "seeds": [0], "resources": {"num_cpus": 1},
            "tables": [{"table": "T", "row": name, "column": "x", "metric": "acc_last"}]}))
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    assert reproduce("smoke", paper="thr", executor="papermill", jobs=2) == 0
    m = {name: json.loads(metrics_path(load_cell(folder / f"{name}.yaml", "smoke"), 0).read_text())
         for name in "abc"}
    assert m["a"]["threads"] == m["b"]["threads"] == 1
    assert m["a"]["pid"] != m["b"]["pid"]  # one kernel per worker ...
    assert m["a"]["started"] < m["b"]["finished"] and m["b"]["started"] < m["a"]["finished"]  # ... at the same time
    assert m["c"]["same_run_as"] == "thr/a seed 0" and m["c"]["acc_last"] == 1


def test_auto_jobs_follow_the_cores_and_each_runs_threads(monkeypatch):
    import os

    from nlkit.pipeline.reproduce import auto_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    runs = [({"resources": {"num_cpus": 2}}, 0)] * 10
    assert auto_jobs(runs) == 4
    assert auto_jobs(runs[:3]) == 3  # never more workers than runs
    assert auto_jobs([({"resources": {"num_cpus": 1}}, 0)] * 20) == 8
    assert auto_jobs([({}, 0)] * 20) == 1  # a run that states no num_cpus computes with every core


def _publish_need(project: Path, cell: str = "a"):
    path = project / "params" / "use" / f"{cell}.yaml"
    body = yaml.safe_load(path.read_text())
    body["needs"] = {"encoder": {"cell": "enc/base", "published": "authors.bin"}}
    path.write_text(yaml.safe_dump(body))
    return path


def test_a_published_file_meets_the_need_in_place_of_the_cell(dep_project, tmp_path, monkeypatch):
    """`needs: {encoder: {cell, published}}`: the published file in <data root>/weights is used and the cell is not
    needed; its content is part of the run key; without it the cell's artefact is used again."""
    from nlkit.pipeline.deps import needs_of, resolve_needs, run_key

    monkeypatch.delenv("NLKIT_WEIGHTS_ROOT", raising=False)
    monkeypatch.setenv("NLKIT_DATA_ROOT", str(tmp_path / "default-data"))
    data_root = tmp_path / "data"
    path = _publish_need(dep_project)
    use = load_cell(path, "smoke")
    assert needs_of(use, data_root) == {"encoder": "enc/base"}  # not published yet: the cell is needed
    (data_root / "weights").mkdir(parents=True)
    published = data_root / "weights" / "authors.bin"
    published.write_text("weights of the authors")
    assert needs_of(use, data_root) == {} and needs_of(use) == {"encoder": "enc/base"}
    [result] = run_cell(path, "smoke", executor="direct", data_root=data_root)  # enc/base never ran
    assert result.status == "done", result.message
    m = json.loads(metrics_path(use, 0).read_text())
    assert m["weights_seen"] == "weights of the authors" and m["needs"]["encoder"]["published"] == "authors.bin"
    assert is_current(use, 0, data_root=data_root) and not is_current(use, 0)  # another data root: not these
    key = run_key(use, 0, data_root=data_root)
    published.write_text("other weights")  # replaced: stale
    assert run_key(use, 0, data_root=data_root) != key and not is_current(use, 0, data_root=data_root)
    published.unlink()  # removed: the kit's cell provides the artefact again
    assert reproduce("smoke", paper="use", executor="direct", data_root=data_root) == 0
    assert json.loads(metrics_path(use, 0).read_text())["weights_seen"] == "weights 1"
    assert resolve_needs(use, data_root=data_root).fingerprint["encoder"]["cell"] == "enc/base"


def test_the_weights_root_variable_is_searched_first(tmp_path, monkeypatch):
    from nlkit.pipeline.deps import published_file, weights_roots

    monkeypatch.setenv("NLKIT_WEIGHTS_ROOT", str(tmp_path / "w"))
    monkeypatch.setenv("NLKIT_DATA_ROOT", str(tmp_path / "d"))
    assert weights_roots(tmp_path / "x") == [tmp_path / "w", tmp_path / "x" / "weights", tmp_path / "d" / "weights"]
    for folder in (tmp_path / "w", tmp_path / "d" / "weights"):
        folder.mkdir(parents=True)
        (folder / "f.pt").write_text(str(folder))
    assert published_file("f.pt") == tmp_path / "w" / "f.pt" and published_file("g.pt") is None


TORCH_ENCODER_CODE = [PARAMS, (
    "import json, tempfile, torch\nfrom pathlib import Path\nfrom nlkit.pipeline import load_cell\n"
    "cfg = load_cell(params_file, profile)\n"
    "tmp = Path(tempfile.NamedTemporaryFile(dir=out_dir, suffix='.pt', delete=False).name)\n"  # as atomic_write
    "torch.save({'w': torch.arange(6.0).reshape(2, 3) * cfg['value'], 'step': 3}, tmp)\n"
    "tmp.replace(Path(out_dir, 'weights.pt'))\n"
    "Path(out_dir, 'results.json').write_text(json.dumps({'acc_last': cfg['value'], "
    "'artefacts': {'encoder': 'weights.pt'}}))")]

TORCH_USER_CODE = [PARAMS, (
    "import json, torch\nfrom pathlib import Path\nfrom nlkit.safeload import torch_load\n"
    "w = torch_load(needs['encoder'], 'the encoder')['w']\n"
    "Path(out_dir, 'results.json').write_text(json.dumps({'acc_last': float(w.sum())}))")]


@pytest.fixture
def torch_dep_project(dep_project):
    write_notebook(dep_project / "notebooks" / "encoder.ipynb", TORCH_ENCODER_CODE)
    write_notebook(dep_project / "notebooks" / "user.ipynb", TORCH_USER_CODE)
    return dep_project


def test_a_damaged_artefact_makes_its_cell_run_again_and_its_users_heal(torch_dep_project):
    """A truncated classifier.pt used to leave its cell current, so every dependent failed on every run."""
    assert reproduce("smoke", executor="direct") == 0
    enc = load_cell(torch_dep_project / "params/enc/base.yaml", "smoke")
    use = load_cell(torch_dep_project / "params/use/a.yaml", "smoke")
    weights = metrics_path(enc, 0).parent / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-200])
    with pytest.warns(UserWarning, match="weights.pt does not read back"):
        assert current_metrics(enc, 0, warn=True) is None
    assert not is_current(use, 0)
    assert reproduce("smoke", executor="direct") == 0   # the dependency runs again, then its users
    assert is_current(enc, 0) and is_current(use, 0)
    assert json.loads(metrics_path(use, 0).read_text())["acc_last"] == 15.0


def test_a_bit_identical_retrain_keeps_the_users_current(torch_dep_project):
    """torch.save records the file name it wrote to: the artefact's hash is of its tensors, not its bytes."""
    from nlkit.pipeline.deps import content_hash

    assert reproduce("smoke", executor="direct") == 0
    enc = load_cell(torch_dep_project / "params/enc/base.yaml", "smoke")
    use = load_cell(torch_dep_project / "params/use/a.yaml", "smoke")
    before = (metrics_path(enc, 0).parent / "weights.pt").read_bytes()
    [result] = run_cell(torch_dep_project / "params/enc/base.yaml", "smoke", executor="direct", force=True)
    after = (metrics_path(enc, 0).parent / "weights.pt").read_bytes()
    assert result.status == "done" and before != after       # the bytes differ (another temporary name) ...
    assert is_current(use, 0)                                # ... the tensors do not
    other = torch_dep_project / "other.pt"
    import torch

    torch.save({"w": torch.arange(6.0).reshape(2, 3) * 2, "step": 3}, other)  # other tensors: another hash
    assert content_hash(other) != content_hash(metrics_path(enc, 0).parent / "weights.pt")
