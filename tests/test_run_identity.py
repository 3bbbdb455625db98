"""A run is identified by what it computes: a checkpoint left in a folder by one run (cell, seed, settings, data) is
never resumed by another. A notebook whose parameters cell changes from cell A to cell B and seed 1 must produce
B's own numbers, for every paper (they all train through the one loop)."""

import math
from pathlib import Path

import pytest
import torch

from nlkit.methods import Roots, instancegm, lra_diffusion, sln, tdsm
from nlkit.pipeline import load_cell
from nlkit.pipeline.describe import output_dir
from nlkit.pipeline.params import repo_root
from nlkit.train import TrainLoop, run_identity

ROOT = repo_root()


def _loop(folder, identity, epochs=3):
    weights = torch.zeros(1)

    def epoch_fn(epoch):
        weights.add_(1.0)
        return {"w": float(weights)}

    def set_state(state):
        weights.copy_(state["w"])

    loop = TrainLoop(folder, epochs=epochs, progress=False, identity=identity)
    return loop.run(epoch_fn, lambda: {"w": weights.clone()}, set_state)


def test_loop_resumes_only_its_own_checkpoint(tmp_path, capsys):
    first = _loop(tmp_path, "a" * 16, epochs=2)
    assert first.resumed_from == 0
    again = _loop(tmp_path, "a" * 16, epochs=3)           # same run, one more epoch: continues
    assert again.resumed_from == 2 and [r["w"] for r in again.history] == [1.0, 2.0, 3.0]
    other = _loop(tmp_path, "b" * 16, epochs=3)           # another run in the same folder: starts fresh
    assert other.resumed_from == 0 and [r["w"] for r in other.history] == [1.0, 2.0, 3.0]
    assert len(list((tmp_path / "checkpoints").glob("last.pt.other-*"))) == 1
    assert "belongs to another run" in capsys.readouterr().out


def test_identity_depends_on_settings_seed_and_data_not_on_checkpoint_timing():
    import numpy as np

    labels = np.arange(10) % 3
    base = run_identity({"lr": 0.1, "checkpoint_every_seconds": 60}, 0, labels)
    assert base == run_identity({"lr": 0.1, "checkpoint_every_seconds": 600}, 0, labels)
    assert base != run_identity({"lr": 0.2, "checkpoint_every_seconds": 60}, 0, labels)
    assert base != run_identity({"lr": 0.1, "checkpoint_every_seconds": 60}, 1, labels)
    assert base != run_identity({"lr": 0.1, "checkpoint_every_seconds": 60}, 0, labels[::-1].copy())


def test_notebook_default_folder_is_per_cell_seed_and_settings():
    a = load_cell(ROOT / "params/sln/cifar10-sym-0.40-paper-sln.yaml", "smoke")
    b = load_cell(ROOT / "params/sln/cifar10-sym-0.40-paper-ce.yaml", "smoke")
    folders = {output_dir(None, a, 0), output_dir(None, a, 1), output_dir(None, b, 0)}
    assert len(folders) == 3
    assert all(f.is_relative_to(ROOT / "outputs" / "explore" / "sln") for f in folders)
    assert output_dir("outputs/x", a, 0) == ROOT / "outputs" / "x"   # an explicit folder is kept


def _numbers(metrics: dict) -> dict:
    """The computed numbers of a run (timings left out)."""
    return {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)
            and "second" not in k and not k.endswith("_per_s")}


def _run(module, path: str, seed: int, workdir: Path, roots=None):
    cell = load_cell(ROOT / path, "smoke")
    data = module.prepare(cell, seed, roots or Roots())
    output = module.run(data, module.Config.from_cell(cell), seed, workdir, progress=False)
    return _numbers(output.metrics)


CASES = {
    "sln": (sln, "params/sln/cifar10-sym-0.40-paper-sln.yaml", "params/sln/cifar10-sym-0.40-paper-ce.yaml"),
    "instancegm": (instancegm, "params/instancegm/cifar10-idn-0.50-dividemix.yaml",
                   "params/instancegm/cifar10-idn-0.50-ce.yaml"),
    "lra_diffusion": (lra_diffusion, "params/lra_diffusion/cifar10-pmd-0.35-clip.yaml",
                      "params/lra_diffusion/cifar10-pmd-0.70-clip.yaml"),
    "tdsm": (tdsm, "params/tdsm/mnist-sym-0.40-classifier.yaml", "params/tdsm/mnist-sym-0.40-dsm.yaml"),
}


@pytest.mark.slow
@pytest.mark.parametrize("paper", sorted(CASES))
def test_switching_the_cell_in_one_folder_gives_the_new_cells_own_numbers(paper, tmp_path, monkeypatch):
    """What a notebook did when its out_dir stayed fixed: cell A seed 0, then cell B seed 1 in the same folder.
    B's numbers must equal B run alone in a fresh folder (before, B resumed A's finished checkpoint)."""
    monkeypatch.setenv("NLKIT_CACHE", str(tmp_path / "cache"))
    module, cell_a, cell_b = CASES[paper]
    shared = tmp_path / "explore"
    _run(module, cell_a, 0, shared)
    switched = _run(module, cell_b, 1, shared)
    alone = _run(module, cell_b, 1, tmp_path / "alone")
    assert switched and switched == alone


# ------------------------------------------------------------------ what a notebook needs, and where paths point

def test_notebook_resolves_its_cells_needs_by_running_the_needed_cell_first(kit_project, capsys):
    """tdsm.ipynb on a fresh clone: the TDSM cell needs the classifier cell's weights; Run All runs it first."""
    from nlkit.pipeline.notebook import notebook_roots
    from nlkit.pipeline.runner import is_current

    cell = load_cell(kit_project / "params/tdsm/mnist-sym-0.40-tdsm.yaml", "smoke")
    classifier = load_cell(kit_project / "params/tdsm/mnist-sym-0.40-classifier.yaml", "smoke")
    assert not is_current(classifier, 0)
    roots = notebook_roots(cell, executor="direct")
    assert is_current(classifier, 0)
    assert Path(roots.needs["classifier"]).is_file()
    assert Path(roots.needs["classifier"]).is_relative_to(kit_project / "outputs/smoke/tdsm/mnist-sym-0.40-classifier")
    assert "running it first" in capsys.readouterr().out
    again = notebook_roots(cell, executor="direct")          # now found, nothing rerun
    assert again.needs == roots.needs and "running it first" not in capsys.readouterr().out


def test_notebook_needs_given_by_hand_are_taken_from_the_project_folder(kit_project, monkeypatch):
    from nlkit.pipeline.notebook import notebook_roots

    monkeypatch.chdir(kit_project / "notebooks")              # where JupyterLab starts kernels
    cell = load_cell(kit_project / "params/tdsm/mnist-sym-0.40-tdsm.yaml", "smoke")
    roots = notebook_roots(cell, "data", "noise", {"classifier": "outputs/x/classifier.pt"})
    assert roots.data_root == str(kit_project / "data") and roots.noise_root == str(kit_project / "noise")
    assert roots.artefact("classifier") == kit_project / "outputs/x/classifier.pt"


def test_relative_data_root_means_the_same_from_notebooks_and_the_root(kit_project, monkeypatch):
    import numpy as np

    from nlkit.data import default_data_root
    from nlkit.data import load_dataset
    from nlkit.io import project_path
    from nlkit.noise.labelfiles import resolve_noise_file
    from nlkit.noise.setting import apply_noise_model

    digits = load_dataset("digits")
    np.save(kit_project / "labels.npy", (digits.train_labels + 1) % digits.num_classes)

    (kit_project / "data" / "noise" / "sln").mkdir(parents=True)
    (kit_project / "data" / "noise" / "sln" / "x.csv").write_text("label\n1\n")
    seen = set()
    for cwd in (kit_project, kit_project / "notebooks"):
        monkeypatch.chdir(cwd)
        monkeypatch.setenv("NLKIT_DATA_ROOT", "data")
        seen.add(default_data_root())
        seen.add(project_path(resolve_noise_file("sln/x.csv", noise_root="data/noise")))
        seen.add(project_path(resolve_noise_file("sln/x.csv", data_root="data")))
        assert not resolve_noise_file("sln/x.csv", data_root="data").is_absolute()   # recorded without this machine
        flipped = apply_noise_model(digits, "file", 0.0, 0, label_file="labels.npy")   # the explorer's label file
        assert (flipped.noisy != digits.train_labels).all()
    assert seen == {kit_project / "data", kit_project / "data/noise/sln/x.csv"}


def test_command_line_roots_are_taken_from_the_working_directory_and_recorded_project_relative(kit_project,
                                                                                                monkeypatch):
    from nlkit.io import project_path
    from nlkit.pipeline.cli import _from_cwd

    (kit_project / "sub").mkdir()
    monkeypatch.chdir(kit_project / "sub")
    assert _from_cwd("data") == "sub/data" and project_path(_from_cwd("data")) == kit_project / "sub/data"
    assert project_path(_from_cwd("../../x")).resolve() == (kit_project.parent / "x").resolve()
    assert _from_cwd("/abs/data") == "/abs/data"
