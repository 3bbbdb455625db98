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


# ------------------------------------------------------------------------------------------- the params schema

@pytest.fixture
def sln_copy(tmp_path, monkeypatch):
    """A project with the kit's notebooks and a copy of params/sln/ (defaults, overlays, one cell) to damage."""
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    folder = tmp_path / "params" / "sln"
    folder.mkdir(parents=True)
    for name in ("_defaults.yaml", "_profiles.yaml", "_tables.yaml", "cifar10-sym-0.40-paper-sln.yaml"):
        (folder / name).write_text((ROOT / "params" / "sln" / name).read_text())
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    return folder / "cifar10-sym-0.40-paper-sln.yaml"


def edit_yaml(path: Path, **changes):
    import yaml

    body = yaml.safe_load(path.read_text())
    body.update(changes)
    path.write_text(yaml.safe_dump(body))


BAD_PARAMS = {  # the change -> what the one-line error must name
    "paper escapes outputs/": ({"paper": "../../../elsewhere"}, r"paper: must be a plain name"),
    "notebook escapes notebooks/": ({"notebook": "../../x"}, r"notebook: must be a plain name"),
    "misspelt noise key": ({"noise": {"model": "sym", "rat": 0.4}}, r"noise\.rat"),
    "rate missing": ({"noise": {"model": "sym", "seed": 0}}, r"noise: .*needs a `rate`"),
    "unknown top-level key": ({"epoch": 3}, r"epoch: Extra inputs"),
    "negative epochs": ({"train": {"epochs": -3}}, r"train\.epochs: .*greater than 0"),
    "string for a number": ({"train": {"lr": "fast"}}, r"train\.lr"),
    "fractional seed": ({"seeds": [1.5]}, r"seeds\.0"),
    "seeds as a string": ({"seeds": "01"}, r"seeds: .*valid list"),
    "negative seed": ({"seeds": [-1]}, r"seeds\.0: .*greater than or equal to 0"),
    "seed of 2**32": ({"seeds": [2**32]}, r"seeds\.0: .*less than 4294967296"),
    "needs escapes params/": ({"needs": {"encoder": "../x/y"}}, r"needs\.encoder"),
    "label file escapes the noise root": ({"noise": {"model": "file", "file": "../../etc/passwd"}}, r"noise\.file"),
    "metric typo": ({"tables": [{"table": "S1", "row": "SLN", "column": "x", "metric": "acc_lst"}]},
                    r"metric: 'acc_lst' is not one sln produces"),
    "misspelt profile": ({"profiles": {"smok": {"seeds": [0]}}}, r"unknown profile smok"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_bad_params_are_refused_with_file_key_and_reason(sln_copy, case, capsys):
    change, reason = BAD_PARAMS[case]
    edit_yaml(sln_copy, **change)
    # the paper profile: the smoke overlay replaces some of these keys (seeds) with valid ones
    code, _, err = run_cli(["run", sln_copy, "--profile", "paper", "--executor", "direct",
                            "--data-root", sln_copy.parents[2] / "no-data"], capsys)
    assert code == 2 and one_line(err), err
    assert "cifar10-sym-0.40-paper-sln.yaml" in err and re.search(reason, err), err
    assert not (sln_copy.parents[2] / "outputs").exists()
    assert not any((sln_copy.parents[k] / "elsewhere").exists() for k in (2, 3, 4))


def test_every_params_file_of_the_kit_passes_the_schema():
    from nlkit.pipeline.params import PROFILES, find_cells, load_cell

    cells = find_cells(root=ROOT)
    assert cells
    for cell in cells:
        for profile in PROFILES:
            load_cell(cell, profile)   # raises on the first violation


def test_a_paper_without_declared_keys_may_add_its_own(tmp_path, monkeypatch):
    from nlkit.pipeline.params import load_cell

    folder = tmp_path / "params" / "mine"
    folder.mkdir(parents=True)
    (folder / "c.yaml").write_text("notebook: mine\ntable: T\nseeds: [0, 1]\nmy_setting: {a: 1}\n"
                                   "noise: {model: sym, rate: 0.2}\n")
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    assert load_cell(folder / "c.yaml", "smoke")["my_setting"] == {"a": 1}
    (folder / "c.yaml").write_text("notebook: mine\ntable: T\nseeds: [0, 0]\n")
    with pytest.raises(UserError, match="repeat"):
        load_cell(folder / "c.yaml", "smoke")


# ------------------------------------------------------------------------------------------- damaged files heal

def test_damaged_feature_cache_entries_are_recomputed(tmp_path):
    from nlkit.encoders.features import cached, feature_key

    calls = []

    def compute():
        calls.append(1)
        return np.arange(600, dtype=np.float32).reshape(100, 6)

    key = {"encoder": "x", "n": 100}
    first = cached(key, compute, cache_root=tmp_path)
    entry = tmp_path / f"{feature_key(**key)}.npy"
    size = entry.stat().st_size
    for damage in ("truncate", "flip a byte", "garbage"):
        data = bytearray(entry.read_bytes())
        if damage == "truncate":
            entry.write_bytes(data[: size // 2])
        elif damage == "flip a byte":
            data[-7] ^= 0xFF
            entry.write_bytes(bytes(data))
        else:
            entry.write_bytes(b"not numpy at all")
        with pytest.warns(UserWarning, match="damaged.*recomputing"):
            healed = cached(key, compute, cache_root=tmp_path)
        np.testing.assert_array_equal(healed, first)
        assert entry.stat().st_size == size            # rewritten whole
    n = len(calls)
    np.testing.assert_array_equal(cached(key, compute, cache_root=tmp_path), first)
    assert len(calls) == n == 4                          # a healed entry is read again, not recomputed


def test_a_second_process_waits_for_a_cache_entry_instead_of_computing_it(tmp_path):
    import threading
    import time

    from nlkit.encoders.features import cached

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.5)
        return np.ones((4, 2), np.float32)

    threads = [threading.Thread(target=cached, args=({"k": 1}, slow, tmp_path)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
