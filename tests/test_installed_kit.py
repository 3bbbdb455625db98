"""A non-editable install brings the whole kit (params, notebooks, docs): a notebook copied alone into an empty
folder runs there, as from its Colab badge, and its run is the pipeline's. The Colab set-up keeps the runtime's
torch. The other notebooks run this way in the browser job (browser_tests/test_installed_notebooks.py)."""

import json
import os
import subprocess

import pytest

from installed_kit import clean_env, installed_env, run_notebook_alone


@pytest.mark.slow
@pytest.mark.extended
def test_paper_notebook_runs_from_an_installed_kit_in_an_empty_folder(tmp_path):
    python = installed_env(tmp_path / "kit")
    found = subprocess.run([str(python), "-c", "import nlkit, nlkit.io as io; print(nlkit.__file__); "
                            "print(io.kit_path('params/sln/_profiles.yaml'))"], cwd=tmp_path, env=clean_env(),
                           capture_output=True, text=True, check=True).stdout.split()
    assert all("/venv/" in line and "site-packages" in line for line in found), found   # no checkout used
    folder = tmp_path / "colab"
    done = run_notebook_alone(python, "sln", folder, "-p", "compare_with_ce", "False")
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((folder / "outputs/smoke/sln/cifar10-sym-0.40-paper-sln/seed0/metrics.json").read_text())
    assert metrics["params"]["params_file"] == "params/sln/cifar10-sym-0.40-paper-sln.yaml" and metrics["acc_last"] is not None
    # the installed kit's pipeline counts the notebook's run as current: nothing to rerun
    again = subprocess.run([str(python), "-m", "nlkit", "run", "params/sln/cifar10-sym-0.40-paper-sln.yaml",
                            "--profile", "smoke", "--seed", "0"], cwd=folder, env=clean_env(), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "skipped" in again.stdout + again.stderr, again.stdout + again.stderr


def test_colab_setup_keeps_the_runtime_torch(monkeypatch):
    from nlkit import colab

    wanted = colab.requirements(["notebooks", "clip"])
    assert "open_clip_torch>=2.24" in wanted and "papermill>=2.5" in wanted and "numpy>=1.24" in wanted
    assert not any(";" in r for r in wanted)   # markers evaluated here: pip would drop `extra == ...` ones
    assert "ray>=2.9" in colab.requirements(["all"]) and not any(r.startswith("nlkit") for r in colab.requirements(["all"]))
    from importlib.metadata import version

    assert f"torch=={version('torch')}" in colab.torch_pins()
    command = colab.install_command(["notebooks"], "pins.txt")
    assert command[command.index("--constraint") + 1] == "pins.txt" and "--upgrade" not in command
    calls = []
    monkeypatch.setattr(colab.subprocess, "check_call", calls.append)
    for name in ("NLKIT_OFFLINE", "HF_HUB_OFFLINE"):   # restored after the test whatever setup sets
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    assert colab.setup(["notebooks"], downloads=False, install=True) in ("smoke", "quick")
    assert calls and calls[0][:4] == command[:4] and os.environ["NLKIT_OFFLINE"] == "1"
    colab.setup(downloads=True, install=False)
    assert "NLKIT_OFFLINE" not in os.environ


def test_checkout_params_take_precedence_over_the_installed_copy(tmp_path, monkeypatch):
    from nlkit import io

    packaged = tmp_path / "site" / "_kit"
    (packaged / "params" / "p").mkdir(parents=True)
    (packaged / "params" / "p" / "c.yaml").write_text("x: 1\n")
    monkeypatch.setattr(io, "PACKAGED_KIT", packaged)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.setenv("NLKIT_ROOT", str(project))
    assert io.kit_path("params/p/c.yaml") == packaged / "params/p/c.yaml"   # no checkout: the installed copy
    (project / "params" / "p").mkdir(parents=True)
    (project / "params" / "p" / "c.yaml").write_text("x: 2\n")
    assert io.kit_path("params/p/c.yaml") == project / "params/p/c.yaml"    # a checkout's own wins
