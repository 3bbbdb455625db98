"""Fault injection: files that try to run code, damaged files, full disks, read-only folders, concurrent runs,
params that try to leave the project. Each fault ends in one clear line; nothing runs, nothing is lost, and the
other runs go on."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nlkit.cli import main
from nlkit.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str) -> bool:
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------- no code from files

class Payload:
    """Unpickling this calls `call(*args)`: a file that runs code when loaded unsafely."""

    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def payloads(marker: Path):
    return {"os.system": Payload(os.system, (f"touch {marker}",)), "open": Payload(open, (str(marker), "w"))}


@pytest.fixture(params=["os.system", "open"])
def payload(request, tmp_path):
    marker = tmp_path / "MARKER"
    yield payloads(marker)[request.param], marker
    assert not marker.exists(), "the payload ran"


def test_label_pt_with_a_payload_is_refused_by_the_cli(tmp_path, payload, capsys):
    obj, _ = payload
    np.save(tmp_path / "clean.npy", np.arange(10) % 5)
    torch.save({"noisy": np.arange(10) % 5, "evil": obj}, tmp_path / "labels.pt")
    for command in (["report", "--clean", tmp_path / "clean.npy", "--noisy", f"{tmp_path / 'labels.pt'}:noisy"],
                    ["make", "--labels", f"{tmp_path / 'labels.pt'}:noisy", "--kind", "sym", "--rate", "0.2",
                     "--seed", "0", "--num-classes", "5", "--out", tmp_path / "out.npy"]):
        code, _, err = run_cli(["noise", *command], capsys)
        assert code == 2 and one_line(err)
        assert "labels.pt" in err and re.search(r"posix\.system|builtins\.open|io\.open", err), err
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_raw_pickle_named_pt_is_refused_before_it_runs(tmp_path, payload, protocol, capsys):
    obj, _ = payload
    with open(tmp_path / "raw.pt", "wb") as f:
        pickle.dump({"noisy": obj}, f, protocol=protocol)
    code, _, err = run_cli(["noise", "report", "--clean", f"{tmp_path / 'raw.pt'}:noisy",
                            "--noisy", f"{tmp_path / 'raw.pt'}:noisy"], capsys)
    assert code == 2 and one_line(err) and "raw.pt" in err and "not allowed" in err


def test_checkpoint_with_a_payload_is_set_aside_not_run(tmp_path, payload):
    from nlkit.train.checkpoint import Checkpointer

    obj, _ = payload
    ckpt = Checkpointer(tmp_path)
    ckpt.save({"epoch": 3, "model": {"w": torch.zeros(2)}, "extra": obj})
    with pytest.warns(UserWarning, match="not allowed"):
        assert ckpt.load() is None
    assert not ckpt.path.exists() and list(ckpt.path.parent.glob("last.pt.corrupt-*"))


def test_cifar_batch_with_a_payload_is_refused(tmp_path, payload):
    import data_fixtures as fx

    from nlkit.data import load_dataset

    obj, _ = payload
    fx.write_cifar10_pickles(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": obj, "labels": [0]}, f, protocol=2)
    with pytest.raises(UserError, match=r"data_batch_2.*(posix\.system|builtins\.open|io\.open).*not allowed"):
        load_dataset("cifar10", data_root=tmp_path, download=False)


def test_simclr_weights_and_saved_models_with_a_payload_are_refused(tmp_path, payload):
    from nlkit.encoders.simclr import load_simclr
    from nlkit.models import load_model
    from nlkit.safeload import UnsafeFileError

    obj, _ = payload
    torch.save({"arch": "resnet18", "state_dict": {"f.0.weight": obj}}, tmp_path / "simclr.pt")
    torch.save({"format": "nlkit-model-1", "arch": "small_cnn", "kwargs": obj, "state_dict": {}},
               tmp_path / "model.pt")
    with pytest.raises(UnsafeFileError, match="simclr.pt"):
        load_simclr(tmp_path / "simclr.pt")
    with pytest.raises(UnsafeFileError, match="model.pt"):
        load_model(tmp_path / "model.pt")


def test_benign_numpy_label_file_with_several_keys_loads_through_the_cli(tmp_path, capsys):
    """The layout of the published CIFAR-10N/100N files: a torch-saved dict of numpy arrays (and a numpy scalar)."""
    clean = np.arange(200) % 10
    worse = clean.copy()
    worse[::4] = (worse[::4] + 1) % 10
    torch.save({"clean_label": clean, "worse_label": worse, "aggre_label": clean.astype(np.int32),
                "random_label1": worse.astype(np.uint8), "num_classes": np.int64(10)}, tmp_path / "CIFAR-10_human.pt")
    human = tmp_path / "CIFAR-10_human.pt"
    code, out, err = run_cli(["noise", "report", "--clean", f"{human}:clean_label", "--noisy", f"{human}:worse_label",
                              "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["noise_rate"] == pytest.approx(0.25)
    code, out, err = run_cli(["noise", "report", "--clean", f"{human}:aggre_label",
                              "--noisy", f"{human}:random_label1", "--json"], capsys)
    assert code == 0 and json.loads(out)["noise_rate"] == pytest.approx(0.25)


def test_no_unsafe_loader_anywhere_in_the_kit():
    pattern = re.compile(r"weights_only *= *False|pickle\.load\(|allow_pickle *= *True|pickle\.loads\(")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "nlkit").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
