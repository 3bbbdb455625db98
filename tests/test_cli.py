"""`nlkit noise ...`: outputs, and bad input -> exit 2, one line on stderr, nothing written."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from nlkit.cli import main
from nlkit.errors import UserError
from nlkit.noise import read_labels, read_openset_flags


@pytest.fixture
def clean_files(tmp_path):
    y = np.repeat(np.arange(10), 50)
    np.save(tmp_path / "clean.npy", y)
    pd.DataFrame({"label": y, "label_noisy": (y + 1) % 10}).to_csv(tmp_path / "sln.csv", index=False)
    return tmp_path, y


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_make_writes_labels_and_sidecar(clean_files, capsys):
    d, y = clean_files
    code, out, err = run(["noise", "make", "--labels", str(d / "clean.npy"), "--kind", "sym", "--rate", "0.4",
                          "--seed", "3", "--num-classes", "10", "--out", str(d / "noisy.npy")], capsys)
    assert code == 0, err
    noisy = np.load(d / "noisy.npy")
    meta = json.loads((d / "noisy.json").read_text())
    assert noisy.dtype == np.int64 and noisy.shape == y.shape
    assert meta["generator"] == "sym" and meta["seed"] == 3
    assert meta["realised_rate"] == pytest.approx(np.mean(noisy != y))
    assert "realised rate" in out


def test_make_from_csv_field_with_asym_map(clean_files, capsys):
    d, y = clean_files
    code, _, err = run(["noise", "make", "--labels", f"{d / 'sln.csv'}:label", "--kind", "asym", "--rate", "1",
                        "--seed", "0", "--num-classes", "10", "--asym-map", "asym_mnist_tdsm",
                        "--out", str(d / "a.npy")], capsys)
    assert code == 0, err
    z = np.load(d / "a.npy")
    assert set(np.unique(y[z != y])) == {2, 3, 5, 6}


def test_report_json(clean_files, capsys):
    d, y = clean_files
    code, out, _ = run(["noise", "report", "--clean", f"{d / 'sln.csv'}:label",
                        "--noisy", f"{d / 'sln.csv'}:label_noisy", "--json"], capsys)
    rep = json.loads(out)
    assert code == 0 and rep["noise_rate"] == 1.0 and rep["n"] == 500
    assert len(rep["per_class_noise_rate"]) == 10
    T = np.array(rep["transition_matrix"])
    np.testing.assert_allclose(T.sum(1), 1.0)
    assert T[0, 1] == 1.0


def test_report_text_and_clean_slice(clean_files, capsys):
    d, y = clean_files
    np.save(d / "part.npy", y[:450])
    code, out, err = run(["noise", "report", "--clean", str(d / "clean.npy"), "--noisy", str(d / "part.npy")],
                         capsys)
    assert code == 2 and "--clean-slice" in err
    code, out, _ = run(["noise", "report", "--clean", str(d / "clean.npy"), "--noisy", str(d / "part.npy"),
                        "--clean-slice", "0:450"], capsys)
    assert code == 0 and "realised noise rate = 0.0000" in out and "transition matrix" in out


def test_hybrid_command(clean_files, capsys):
    d, y = clean_files
    code, out, err = run(["noise", "hybrid", "--base", str(d / "clean.npy"), "--kind", "uniform", "--rate", "0.3",
                          "--num-classes", "10", "--out", str(d / "h.npy")], capsys)
    assert code == 0, err
    meta = json.loads((d / "h.json").read_text())
    assert meta["seed"] == 77 and meta["params"]["sampler"] == "plc_legacy"


BAD = {
    "unknown kind": ["--kind", "gaussian"],
    "unknown map": ["--asym-map", "asym_c7"],
    "rate above 1": ["--rate", "1.5"],
    "negative rate": ["--rate", "-0.1"],
    "labels out of range": ["--num-classes", "5"],
    "missing file": ["--labels", "nope.npy"],
    "missing field": ["--labels", "{d}/sln.csv:noisy"],
    "csv without field": ["--labels", "{d}/sln.csv"],
    "unsupported type": ["--labels", "{d}/labels.txt"],
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_make_bad_input_exits_2_writes_nothing(clean_files, capsys, case):
    d, _ = clean_files
    (d / "labels.txt").write_text("1\n2\n")
    args = {"--labels": str(d / "clean.npy"), "--kind": "asym", "--rate": "0.4", "--seed": "0",
            "--num-classes": "10", "--out": str(d / "out" / "x.npy")}
    override = BAD[case]
    args[override[0]] = override[1].format(d=d)
    argv = ["noise", "make"] + [v for kv in args.items() for v in kv]
    code, out, err = run(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (d / "out").exists()


def test_report_length_mismatch_and_bad_file(clean_files, capsys):
    d, y = clean_files
    np.save(d / "short.npy", y[:10])
    np.save(d / "float.npy", np.array([0.5, 1.0]))
    (d / "broken.npy").write_bytes(b"not numpy")
    for noisy in ("short.npy", "float.npy", "broken.npy"):
        code, _, err = run(["noise", "report", "--clean", str(d / "clean.npy"), "--noisy", str(d / noisy)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1


def test_hybrid_rejects_bad_class_count(clean_files, capsys):
    d, _ = clean_files
    code, _, err = run(["noise", "hybrid", "--base", str(d / "clean.npy"), "--kind", "uniform", "--rate", "0.3",
                        "--num-classes", "12", "--out", str(d / "h.npy")], capsys)
    assert code == 2 and not (d / "h.npy").exists()


def test_python_dash_m_entry_point(clean_files):
    d, _ = clean_files
    p = subprocess.run([sys.executable, "-m", "nlkit", "noise", "make", "--labels", str(d / "clean.npy"),
                        "--kind", "sym", "--rate", "2", "--seed", "0", "--num-classes", "10",
                        "--out", str(d / "z.npy")], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "[0, 1]" in p.stderr


# ---- readers (docs/noise.md §12) -----------------------------------------------------------------------------------

def test_pt_dict_reader_cifar_n_style(tmp_path):
    d = {"clean_label": np.arange(10) % 10, "worse_label": (np.arange(10) + 1) % 10,
         "aggre_label": np.arange(10) % 10}
    torch.save(d, tmp_path / "CIFAR-10_human.pt")
    z = read_labels(f"{tmp_path / 'CIFAR-10_human.pt'}:worse_label", num_classes=10)
    assert z[0] == 1
    torch.save(torch.arange(5), tmp_path / "cache.pt")
    assert read_labels(tmp_path / "cache.pt").tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="worst_label"):
        read_labels(f"{tmp_path / 'CIFAR-10_human.pt'}:worst_label")


def test_openset_boolean_csv(tmp_path):
    pd.DataFrame({"label": [1, 2, 3], "label_noisy": ["True", "False", "True"]}).to_csv(tmp_path / "o.csv",
                                                                                         index=False)
    assert read_openset_flags(str(tmp_path / "o.csv")).tolist() == [True, False, True]
    with pytest.raises(ValueError, match="flags"):
        read_labels(f"{tmp_path / 'o.csv'}:label_noisy")


@pytest.mark.parametrize("header, spec", [("label", ""), ("label,noisy", ""), ("label,noisy", ":noisy")])
def test_a_header_only_csv_says_it_has_no_rows(tmp_path, header, spec):
    """An empty column read as all-False flags ('holds True/False flags') or asked for a column name."""
    path = tmp_path / "labels.csv"
    path.write_text(header + "\n")
    with pytest.raises(UserError, match="has no rows"):
        read_labels(f"{path}{spec}", num_classes=10)
