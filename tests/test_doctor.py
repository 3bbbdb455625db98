"""`nlkit doctor`: the environment report and the dataset lookup by file name."""

import json
import pickle

import pytest

from nlkit.cli import main
from nlkit.data.locate import locate_dataset
from nlkit.doctor import format_report, report
from nlkit.errors import UserError


def _fake_cifar10_pickles(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({}))


def test_locate_finds_each_layout_by_name_only(tmp_path):
    assert locate_dataset("cifar10", tmp_path) is None
    assert locate_dataset("mnist", tmp_path / "absent") is None
    assert locate_dataset("digits", tmp_path) == "bundled with scikit-learn"
    _fake_cifar10_pickles(tmp_path)  # empty pickles: the lookup must not read them
    assert "pickles" in locate_dataset("cifar10", tmp_path)
    (tmp_path / "cifar100-jpeg.tar.gz").write_bytes(b"")
    assert "archive" in locate_dataset("cifar100", tmp_path)
    tree = tmp_path / "mnist-png" / "train" / "3"
    tree.mkdir(parents=True)
    assert "image folders" in locate_dataset("mnist", tmp_path)
    (tmp_path / "animal10n" / "training").mkdir(parents=True)
    assert locate_dataset("animal10n", tmp_path) is None  # testing/ is missing too
    (tmp_path / "animal10n" / "testing").mkdir()
    assert locate_dataset("animal10n", tmp_path) == str(tmp_path / "animal10n")
    with pytest.raises(UserError):
        locate_dataset("imagenet", tmp_path)


def test_report_lists_roots_datasets_noise_files_and_limits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NLKIT_DATA_ROOT", raising=False)
    root = tmp_path / "mine"
    _fake_cifar10_pickles(root)
    (root / "noise" / "sln" / "cifar10").mkdir(parents=True)
    (root / "noise" / "sln" / "cifar10" / "sym0.4.csv").write_text("label_noisy\n1\n")
    rep = report(root)
    assert [r["origin"] for r in rep["data_roots"]] == ["--data-root", "./data"]
    mine = rep["data_roots"][0]
    assert list(mine["datasets"]) == ["cifar10"] and mine["noise"] == {"sln/cifar10": ["sym0.4.csv"]}
    assert rep["data_roots"][1]["exists"] is False
    assert any("cifar100" in line for line in rep["cannot"])
    assert not any("published label files" in line for line in rep["cannot"])
    assert rep["torch"]["cuda_available"] in (True, False)
    if not rep["torch"]["cuda_available"]:
        assert any("no CUDA GPU" in line for line in rep["cannot"])
    text = format_report(rep)
    assert "cifar10 [" in text and "noise/sln/cifar10: sym0.4.csv" in text and "None" not in text
    assert len(text.splitlines()) <= 30  # one screen


def test_env_root_and_cli_json(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "envroot" / "MNIST" / "raw").mkdir(parents=True)
    monkeypatch.setenv("NLKIT_DATA_ROOT", str(tmp_path / "envroot"))
    assert main(["doctor", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["data_roots"][0]["origin"] == "$NLKIT_DATA_ROOT"
    assert rep["data_roots"][0]["datasets"] == {}  # the idx files themselves are missing
    assert any("no published label files" in line for line in rep["cannot"])
    assert main(["doctor"]) == 0
    assert "data roots:" in capsys.readouterr().out


def test_a_home_folder_of_no_user_is_one_line(capsys):
    """`~nosuchuser/x` made pathlib raise RuntimeError: a traceback."""
    from nlkit.cli import main

    assert main(["doctor", "--data-root", "~nosuchuser-of-nlkit/x"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "~nosuchuser-of-nlkit" in err
