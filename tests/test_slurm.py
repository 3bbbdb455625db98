"""The SLURM backend through submitit, exercised with submitit's local executor: every run a job, dependencies
first, the same tables as the local backend, job parameters from the profile's resources."""

import json

import pytest
import yaml

from nlkit.errors import UserError
from nlkit.pipeline import load_cell
from nlkit.pipeline.reproduce import reproduce
from nlkit.pipeline.runner import metrics_path

from test_ray import USER_CODE, VALUE_CODE, _tables
from test_pipeline import write_notebook

submitit = pytest.importorskip("submitit")


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "value.ipynb", VALUE_CODE)
    write_notebook(tmp_path / "notebooks" / "user.ipynb", USER_CODE)
    for paper, cells in (("demo", {"enc": {"value": 1, "artefact": True, "sleep": 1, "row": "enc"},
                                   "alpha": {"value": 5, "seeds": [0, 1], "row": "alpha"}}),
                         ("use", {"a": {"notebook": "user", "needs": {"encoder": "demo/enc"}, "row": "a"}})):
        folder = tmp_path / "params" / paper
        folder.mkdir(parents=True)
        (folder / "_profiles.yaml").write_text(yaml.safe_dump(
            {"smoke": {"resources": {"num_cpus": 1, "time_min": 5, "partition": "debug"}}}))
        for name, body in cells.items():
            body = {"table": "T", "column": "acc", "metric": "acc_last", "notebook": "value", "seeds": [0], **body}
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(body))
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    return tmp_path


@pytest.mark.slow
@pytest.mark.extended
def test_slurm_jobs_give_the_local_tables_dependencies_first(project, monkeypatch):
    from nlkit.pipeline import slurm_backend

    submitted = []
    original = slurm_backend.run_on_slurm

    def local_cluster(*args, **kwargs):  # submitit's local executor stands in for sbatch
        return original(*args, cluster="local", **kwargs)

    monkeypatch.setattr(slurm_backend, "run_on_slurm", local_cluster)
    real_update = submitit.AutoExecutor.update_parameters

    def spy(self, **params):
        submitted.append(params)
        return real_update(self, **params)

    monkeypatch.setattr(submitit.AutoExecutor, "update_parameters", spy)
    assert reproduce("smoke", executor="direct", root=project / "local") == 0
    assert reproduce("smoke", executor="direct", root=project / "slurm", backend="slurm", jobs=2) == 0
    assert _tables(project / "slurm") == _tables(project / "local") and len(_tables(project / "slurm")) == 2
    enc = json.loads(metrics_path(load_cell(project / "params/demo/enc.yaml", "smoke"), 0,
                                  project / "slurm").read_text())
    use = json.loads(metrics_path(load_cell(project / "params/use/a.yaml", "smoke"), 0,
                                  project / "slurm").read_text())
    assert use["started"] > enc["finished"] and use["weights_seen"] == "weights 1"
    assert len(submitted) == 4 and all(p["timeout_min"] == 5 and p["cpus_per_task"] == 1
                                       and p["slurm_partition"] == "debug" for p in submitted)
    assert list((project / "slurm" / ".slurm").iterdir())  # submitit's job folders (scripts, logs)


def test_without_slurm_the_backend_says_so(project, monkeypatch):
    monkeypatch.setenv("PATH", str(project))  # no sbatch anywhere
    with pytest.raises(UserError, match="no SLURM"):
        reproduce("smoke", executor="direct", root=project / "x", backend="slurm")
