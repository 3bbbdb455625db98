"""Fault injection: files that try to run code, damaged files, full disks, read-only folders, concurrent runs,
params that try to leave the project. Each fault ends in one clear line; nothing runs, nothing is lost, and the
other runs go on."""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import data_fixtures as fx
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


# Forged numpy states: a CIFAR batch asks only for allowed names (numpy.dtype, _reconstruct) but rebuilds a dtype
# that holds objects, so that numpy reads the file's bytes as object pointers. Each runs in its own process: before
# the fix, reading them crashed the interpreter (exit 139).

def _string(s: bytes) -> bytes:
    return b"U" + bytes([len(s)]) + s


def _dtype(code: bytes, names=b"N", fields=b"N", elsize=-1, align=-1, flags=0) -> bytes:
    return (b"cnumpy\ndtype\n" + _string(code) + b"K\x00K\x01\x87R(K\x03" + _string(b"|") + b"N" + names + fields
            + b"".join(b"J" + struct.pack("<i", v) for v in (elsize, align, flags)) + b"tb")


def _object_field(outer: bytes) -> bytes:
    fields = b"}" + _string(b"a") + b"(" + _dtype(b"O8", flags=63) + b"K\x00ts"
    return _dtype(outer, names=_string(b"a") + b"\x85", fields=fields, elsize=8, align=1)


_EMPTY_ARRAY = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + _string(b"b") + b"\x87R"
FORGED_DTYPES = {
    "void-with-an-object-field": (_EMPTY_ARRAY, _object_field(b"V8")),
    "u1-rebuilt-with-an-object-field": (_EMPTY_ARRAY, _object_field(b"u1")),
    "object-dtype-claiming-no-objects": (_EMPTY_ARRAY, _dtype(b"O8", flags=0)),
    "ndarray-called-directly": (b"cnumpy\nndarray\n(K\x00\x85tR", _dtype(b"O8", flags=0)),
    # an int64 dtype rebuilt with a field of an object dtype that is only called, never built
    "i8-rebuilt-with-an-object-field": (_EMPTY_ARRAY, _dtype(
        b"i8", names=_string(b"a") + b"\x85", fields=b"}" + _string(b"a") + b"(cnumpy\ndtype\n" + _string(b"O8")
        + b"K\x00K\x01\x87RK\x00ts", elsize=8, align=1)),
}


def forged_cifar_batch(forgery: str) -> bytes:
    array, dtype = FORGED_DTYPES[forgery]
    data = array + b"(K\x01K\x04\x85" + dtype + b"\x89" + _string(b"A" * 32) + b"tb"
    return b"\x80\x02}(" + _string(b"data") + data + _string(b"labels") + b"](K\x00eu."


READ_CIFAR_PICKLE = """
import sys
from nlkit.errors import UserError
from nlkit.safeload import load_data_pickle
try:
    batch = load_data_pickle(sys.argv[1], "a CIFAR pickle", encoding="latin1")
    print(batch["data"].astype("u1").sum())
except UserError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.parametrize("forgery", sorted(FORGED_DTYPES))
def test_cifar_pickle_forging_a_numpy_dtype_is_refused_without_a_crash(tmp_path, forgery):
    path = tmp_path / "data_batch_1"
    path.write_bytes(forged_cifar_batch(forgery))
    proc = subprocess.run([sys.executable, "-c", READ_CIFAR_PICKLE, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    assert one_line(proc.stderr) and "data_batch_1" in proc.stderr and "nothing in it was run" in proc.stderr


def test_cifar_loader_refuses_the_forged_batch_in_one_line(tmp_path):
    fx.write_cifar10_pickles(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(forged_cifar_batch("void-with-an-object-field"))
    code = ("import sys\nfrom nlkit.data import load_dataset\nfrom nlkit.errors import UserError\n"
            "try:\n    load_dataset('cifar10', data_root=sys.argv[1], download=False)\n"
            "except UserError as e:\n    print(e, file=sys.stderr)\n    sys.exit(2)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    assert one_line(proc.stderr) and re.search(r"data_batch_3.*'V8' is not a plain numeric dtype", proc.stderr)


READ_LABEL_FILES = """
import json, sys
from nlkit.cli import main
codes = {}
for path in sys.argv[1:]:
    codes[path] = main(["noise", "report", "--clean", path + ":data", "--noisy", path + ":data"])
    print(flush=True)
print(json.dumps(codes))
"""


def test_label_files_forging_a_numpy_dtype_are_refused_without_a_crash(tmp_path):
    """The same forgeries inside torch-saved label files (the CIFAR-10N/100N format, read by torch's weights-only
    unpickler with numpy admitted): each exits 2 with one line; before the fix the int64 one loaded."""
    import zipfile

    torch.save({"data": np.zeros(4, dtype=np.int64)}, tmp_path / "template.pt")
    paths = []
    with zipfile.ZipFile(tmp_path / "template.pt") as template:
        members = [(item.filename, template.read(item.filename)) for item in template.infolist()]
    for forgery in sorted(FORGED_DTYPES):
        paths.append(tmp_path / f"{forgery}.pt")
        with zipfile.ZipFile(paths[-1], "w") as out:   # torch's layout, its pickle swapped for the forged one
            for name, data in members:
                out.writestr(name, forged_cifar_batch(forgery) if name.endswith("data.pkl") else data)
    proc = subprocess.run([sys.executable, "-c", READ_LABEL_FILES, *map(str, paths)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-1500:]}"
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {str(p): 2 for p in paths}, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(paths) and all("nothing in it was run" in line for line in lines), proc.stderr


def test_python2_cifar_batches_still_load(tmp_path):
    """The release's own bytes: Python 2 cPickle, protocol 2, numpy.core.multiarray._reconstruct, dtype('u1', 0, 1)
    and BUILD states, read with encoding latin1."""
    from nlkit.data import load_dataset

    written = fx.write_cifar10_pickles(tmp_path, python2=True)
    assert b"numpy.core.multiarray\n_reconstruct" in (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    ds = load_dataset("cifar10", data_root=tmp_path, download=False)
    assert np.array_equal(ds.train_images, written["train_images"])
    assert np.array_equal(ds.train_labels, written["train_labels"])
    assert np.array_equal(ds.test_images, written["test_images"]) and ds.classes == list(fx.CIFAR10_CLASSES)


def test_data_pickles_rebuild_numeric_numpy_values_python3_wrote():
    from nlkit.safeload import loads_data_pickle

    value = {"f": np.arange(6, dtype=np.float32).reshape(2, 3), "fortran": np.ones((2, 3), order="F"),
             "n": np.int64(3), "flag": np.array(True), "s": {1, 2}, "b": b"xy", "ba": bytearray(b"q"), "c": 1 + 2j}
    back = loads_data_pickle(pickle.dumps(value, protocol=2), "value.pkl", "a data pickle", encoding="latin1")
    assert back.keys() == value.keys() and back["fortran"].flags["F_CONTIGUOUS"]
    for key in ("f", "fortran", "flag"):
        assert back[key].dtype == value[key].dtype and np.array_equal(back[key], value[key])
    assert (back["n"], back["s"], back["b"], back["ba"], back["c"]) == (3, {1, 2}, b"xy", bytearray(b"q"), 1 + 2j)


def test_fuzzed_data_pickles_neither_crash_nor_hang():
    """Seeded mutations of valid CIFAR-batch pickles, forged numpy states and random bytes, in a process of their
    own (a crash is an exit status, a hang the timeout): each loads or raises the kit's one-line error."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_data_pickle.py"), "--seed", "0",
                           "--cases", "20000"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"exit {proc.returncode}: {(proc.stdout + proc.stderr)[-2000:]}"
    assert "20000 cases" in proc.stdout and time.perf_counter() - start < 30, proc.stdout


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


# ------------------------------------------------------------------------------------------- runs and faults

TRAIN_NOTEBOOK = [
    "params_file = None\nprofile = 'smoke'\nseed = 0\nout_dir = 'x'\ndata_root = None\nnoise_root = None",
    # a resumable 'training': a seeded random walk through the kit's TrainLoop, a checkpoint after every epoch
    "import json, os, time\nfrom pathlib import Path\nimport torch\n"
    "from nlkit.pipeline import load_cell\nfrom nlkit.train import TrainLoop\n"
    "cfg = load_cell(params_file, profile)\n"
    "with open(Path(out_dir, 'executions.log'), 'a') as f:\n    f.write(f'{os.getpid()}\\n')\n"
    "g = torch.Generator().manual_seed(seed)\nw = torch.zeros(3)\n"
    "def epoch_fn(epoch):\n"
    "    global w\n    time.sleep(float(os.environ.get('FAKE_EPOCH_SLEEP', '0')))\n"
    "    w = w + torch.rand(3, generator=g)\n"
    "    with open(Path(out_dir, 'epochs.log'), 'a') as f:\n        f.write(f'{epoch}\\n')\n"
    "    return {'w': float(w.sum())}\n"
    "def get_state():\n    return {'w': w.clone(), 'rng': g.get_state()}\n"
    "def set_state(s):\n    global w\n    w = s['w'].clone()\n    g.set_state(s['rng'])\n"
    "res = TrainLoop(out_dir, epochs=cfg['epochs'], checkpoint_every_seconds=0, progress=False).run(\n"
    "    epoch_fn, get_state, set_state)\n"
    "Path(out_dir, 'results.json').write_text(json.dumps({'acc_last': res.history[-1]['w'], 'acc_best_test': "
    "max(r['w'] for r in res.history), 'completed': res.completed}))",
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """params/demo/{alpha,beta,ref}.yaml (two seeds each) on a notebook that trains resumably."""
    from test_pipeline import write_notebook

    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "train.ipynb", TRAIN_NOTEBOOK)
    demo = tmp_path / "params" / "demo"
    demo.mkdir(parents=True)
    for name in ("alpha", "beta", "ref"):
        (demo / f"{name}.yaml").write_text(f"notebook: train\ntable: D\nrow: {name}\ncolumn: acc\n"
                                           "metric: acc_last\nepochs: 4\nseeds: [0, 1]\n")
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    monkeypatch.delenv("FAKE_EPOCH_SLEEP", raising=False)
    return tmp_path


def metrics_of(project: Path, cell: str, seed: int) -> dict:
    return json.loads((project / f"outputs/smoke/demo/{cell}/seed{seed}/metrics.json").read_text())


def nlkit_process(project: Path, *args, **env):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "nlkit", *map(str, args)], cwd=project,
                            env={**os.environ, "NLKIT_ROOT": str(project), "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """The child takes Ctrl-C as a terminal's process would, also when the suite itself runs with SIGINT ignored
    (a background job of a shell, nohup): a process started with SIGINT ignored never sees KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_kill_9_mid_run_then_resume_gives_identical_metrics(project):
    import signal
    import time

    from nlkit.pipeline import run_cell

    out = project / "outputs/smoke/demo/alpha/seed0"
    proc = nlkit_process(project, "run", project / "params/demo/alpha.yaml", "--seed", 0, "--executor", "direct",
                         FAKE_EPOCH_SLEEP="0.4")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len((out / "epochs.log").read_text().split()
                                               if (out / "epochs.log").is_file() else []) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    epochs_before = (out / "epochs.log").read_text().split()
    assert 2 <= len(epochs_before) < 4 and not (out / "metrics.json").exists()

    [resumed] = run_cell(project / "params/demo/alpha.yaml", "smoke", seed=0, executor="direct")
    [reference] = run_cell(project / "params/demo/ref.yaml", "smoke", seed=0, executor="direct")
    assert resumed.status == reference.status == "done"
    assert metrics_of(project, "alpha", 0)["acc_last"] == metrics_of(project, "ref", 0)["acc_last"]
    epochs = (out / "epochs.log").read_text().split()
    assert epochs[0] == "1" and epochs[-1] == "4" and int(epochs[len(epochs_before)]) > 1  # resumed, not redone


def test_truncated_checkpoint_is_set_aside_and_the_run_starts_fresh(project):
    from nlkit.pipeline import load_cell, run_cell
    from nlkit.pipeline.deps import run_key

    cell = load_cell(project / "params/demo/alpha.yaml", "smoke")
    ckpt = project / "outputs/smoke/demo/alpha/seed0/checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "params_hash").write_text(run_key(cell, 0) + "\n")
    torch.save({"method": {"w": torch.ones(3)}, "history": [], "epoch": 2}, ckpt / "last.pt")
    (ckpt / "last.pt").write_bytes((ckpt / "last.pt").read_bytes()[:100])
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        [result] = run_cell(cell["params_file"], "smoke", seed=0, executor="direct")
    run_cell(project / "params/demo/ref.yaml", "smoke", seed=0, executor="direct")
    assert result.status == "done" and list(ckpt.glob("last.pt.corrupt-*"))
    assert metrics_of(project, "alpha", 0)["acc_last"] == metrics_of(project, "ref", 0)["acc_last"]


def test_truncated_metrics_are_skipped_by_tables_and_redone_by_reproduce(project, capsys):
    from nlkit.pipeline.reproduce import reproduce

    assert reproduce("smoke", paper="demo", only="alpha", executor="direct") == 0
    good = metrics_of(project, "alpha", 1)["acc_last"]
    path = project / "outputs/smoke/demo/alpha/seed0/metrics.json"
    path.write_text(path.read_text()[:40])
    capsys.readouterr()
    code, out, err = run_cli(["tables", "--paper", "demo"], capsys)
    assert code == 0 and err.count("\n") == 1 and "unreadable" in err and "metrics.json" in err
    import pandas as pd

    table = pd.read_csv(project / "outputs/smoke/tables/demo.csv").set_index("row")
    assert table.loc["alpha", "n_seeds"] == 1   # one seed left
    assert table.loc["alpha", "reproduced_mean_pct"] == pytest.approx(good, abs=1e-5)
    assert reproduce("smoke", paper="demo", only="alpha", executor="direct") == 0
    assert metrics_of(project, "alpha", 0)["acc_last"] != good   # seed 0 ran again


def test_bad_params_files_stop_neither_the_other_cells_nor_the_tables(project, capsys):
    from nlkit.pipeline.reproduce import reproduce

    demo = project / "params/demo"
    (demo / "broken.yaml").write_text("notebook: train\ntable: [D\n")                   # not YAML
    (demo / "typo.yaml").write_text("notebook: train\ntable: D\nepochs: 4\nnoise: {model: sym, rat: 0.4}\n")
    (demo / "escape.yaml").write_text("notebook: ../../x\ntable: D\n")
    assert reproduce("smoke", paper="demo", only="[abt]*", executor="direct") == 1
    err = capsys.readouterr().err
    invalid = [line for line in err.splitlines() if "invalid params" in line]
    assert len(invalid) == 2 and "broken.yaml" in invalid[0] and "typo.yaml" in invalid[1] and "noise.rat" in err
    assert metrics_of(project, "alpha", 0) and metrics_of(project, "beta", 1)
    code, out, err = run_cli(["tables", "--paper", "demo"], capsys)
    assert code == 0 and "demo.md" in out
    assert len(err.splitlines()) == 3 and all(line.startswith("nlkit: warning: skipping") for line in err.splitlines())
    assert "escape.yaml" in err and "notebook: must be a plain name" in err


def _fill(folder: Path) -> None:
    """Fill the file system holding `folder` (a small tmpfs) to the last byte."""
    try:
        with open(folder / "filler", "wb", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError:
        pass


@pytest.fixture
def small_mount(tmp_path):
    """Mount a tmpfs (root only): mount(path, options) -> path; unmounted afterwards."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(path: Path, options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_disk_in_one_run_fails_that_run_and_the_rest_go_on(project, small_mount, capsys):
    from nlkit.pipeline.reproduce import reproduce

    full = small_mount(project / "outputs/smoke/demo/beta/seed1", "size=64k")
    _fill(full)
    assert reproduce("smoke", paper="demo", executor="direct") == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "demo/beta seed 1" in failed[0] and "No space left on device" in failed[0]
    assert str(full) in failed[0] and "Traceback" not in err
    for cell, seed in (("alpha", 0), ("alpha", 1), ("beta", 0), ("ref", 0), ("ref", 1)):
        assert metrics_of(project, cell, seed)["acc_last"] > 0
    assert (project / "outputs/smoke/tables/demo.md").is_file()


def test_simulated_full_disk_while_writing_metrics_and_the_error(project, monkeypatch, capsys):
    import errno

    import nlkit.io
    from nlkit.pipeline.reproduce import reproduce

    real = nlkit.io.atomic_write

    def atomic_write(path, write_fn):
        if "beta/seed0" in str(path) and Path(path).name in ("metrics.json", "error.txt"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, write_fn)

    monkeypatch.setattr(nlkit.io, "atomic_write", atomic_write)
    assert reproduce("smoke", paper="demo", executor="direct") == 1
    err = capsys.readouterr().err
    assert re.search(r"FAILED demo/beta seed 0: No space left on device: \S+beta/seed0/metrics.json", err), err
    assert not (project / "outputs/smoke/demo/beta/seed0/metrics.json").exists()
    assert metrics_of(project, "beta", 1) and (project / "outputs/smoke/tables/demo.md").is_file()


def test_a_full_disk_inside_a_write_names_the_path(project, monkeypatch, capsys):
    """A write() on a full disk raises ENOSPC naming no file: the FAILED line used to say only 'No space left on
    device'."""
    import errno

    import nlkit.io
    from nlkit.errors import describe_os_error
    from nlkit.pipeline.reproduce import reproduce

    real = nlkit.io.atomic_write

    def atomic_write(path, write_fn):
        def full(tmp):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))   # as file.write() raises it: no file name

        return real(path, full if "beta/seed0" in str(path) and Path(path).name == "metrics.json" else write_fn)

    monkeypatch.setattr(nlkit.io, "atomic_write", atomic_write)
    assert reproduce("smoke", paper="demo", executor="direct") == 1
    err = capsys.readouterr().err
    assert re.search(r"FAILED demo/beta seed 0: No space left on device: \S+beta/seed0/metrics.json", err), err
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device"), where="out/x") == \
        "No space left on device (writing under out/x)"


@pytest.fixture
def read_only_outputs(project, request):
    """outputs/ on a read-only tmpfs (root), or without write permission (anyone else)."""
    outputs = project / "outputs"
    if os.geteuid() == 0:
        request.getfixturevalue("small_mount")(outputs, "ro,size=64k")
        yield "Read-only file system"
    else:
        outputs.mkdir()
        outputs.chmod(0o555)
        yield "Permission denied"
        outputs.chmod(0o755)


def test_read_only_outputs_is_one_line(project, read_only_outputs, capsys):
    for argv in (["reproduce", "--paper", "demo", "--executor", "direct"],
                 ["run", project / "params/demo/alpha.yaml", "--executor", "direct"],
                 ["tables", "--paper", "demo"]):
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and one_line(err) and read_only_outputs in err, err


def test_a_half_written_notebook_never_replaces_notebook_ipynb(tmp_path, monkeypatch):
    import errno

    import papermill

    from nlkit.pipeline.executors import execute_papermill

    def full_disk(notebook, output, **kwargs):
        Path(output).write_text('{"cells": [{"cell_type": "code", "sour')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), output)

    monkeypatch.setattr(papermill, "execute_notebook", full_disk)
    with pytest.raises(OSError):
        execute_papermill(tmp_path / "nb.ipynb", tmp_path, {})
    assert [p.name for p in tmp_path.iterdir()] in ([], ["run.log"])  # the run's log, whole; no notebook


def test_two_reproduces_at_once_run_each_run_once(project, monkeypatch, capsys):
    """A second reproduce started while the first is inside a run skips that run with a message and does the
    others; the first then skips what the second is running or has finished. Every run executes once."""
    import time

    from nlkit.pipeline.reproduce import reproduce

    first = nlkit_process(project, "reproduce", "--paper", "demo", "--only", "alpha", "--executor", "direct",
                          FAKE_EPOCH_SLEEP="0.5")
    started = project / "outputs/smoke/demo/alpha/seed0/epochs.log"
    deadline = time.monotonic() + 120
    while not started.is_file() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert started.is_file(), first.communicate()
    monkeypatch.setenv("FAKE_EPOCH_SLEEP", "0.5")
    second = reproduce("smoke", paper="demo", only="alpha", executor="direct")
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0 and second == 0, err
    assert "another process is running it" in capsys.readouterr().err
    for seed in (0, 1):
        log = project / f"outputs/smoke/demo/alpha/seed{seed}/executions.log"
        assert len(log.read_text().split()) == 1, f"seed {seed} ran more than once"
        assert metrics_of(project, "alpha", seed)["acc_last"] > 0


# ------------------------------------------------------------------------------------------- dead kernels
# A run's kernel killed by the OOM killer (kill -9) or crashing in native code fails that run in one line, leaves
# no connection file, and the other runs go on. Before the fix each of these hung until Ctrl-C: every test has a
# hard timeout.

KERNEL_CELLS = {
    "wait-to-be-killed": "import os, time\nfrom pathlib import Path\n"
                         "Path(out_dir, 'kernel.pid').write_text(str(os.getpid()))\ntime.sleep(300)",
    "kill-9-itself": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "segfault": "import ctypes\nctypes.string_at(0)",
}


@pytest.fixture
def kernel_project(tmp_path):
    """params/demo/{alpha,beta}.yaml, one seed each: alpha's notebook runs one of KERNEL_CELLS (set by the test),
    beta's writes its results."""
    from test_pipeline import FAKE_NOTEBOOK_CODE, write_notebook

    (tmp_path / "notebooks").mkdir()
    write_notebook(tmp_path / "notebooks" / "fake.ipynb", FAKE_NOTEBOOK_CODE)
    demo = tmp_path / "params" / "demo"
    demo.mkdir(parents=True)
    (demo / "_profiles.yaml").write_text("smoke: {value: 1}\n")
    for name, notebook in (("alpha", "kernel"), ("beta", "fake")):
        (demo / f"{name}.yaml").write_text(f"notebook: {notebook}\ntable: D\nrow: {name}\ncolumn: acc\n"
                                           "metric: acc_last\nseeds: [0]\n")
    (tmp_path / "tmp").mkdir()   # TMPDIR of the runs: where jupyter_client writes kernel connection files

    def with_cell(name: str) -> Path:
        write_notebook(tmp_path / "notebooks" / "kernel.ipynb", [FAKE_NOTEBOOK_CODE[0], KERNEL_CELLS[name]])
        return tmp_path

    return with_cell


def finish(proc, seconds: float = 240):
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"hung for {seconds} s after the kernel died:\n{err[-2000:]}")
    return proc.returncode, out + err


def failed_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "demo/alpha seed 0" in line and "kernel" in line]


@pytest.mark.slow
def test_kill_9_of_the_kernel_fails_nlkit_run_in_one_line(kernel_project):
    pytest.importorskip("papermill")
    project = kernel_project("wait-to-be-killed")
    proc = nlkit_process(project, "run", project / "params/demo/alpha.yaml", "--executor", "papermill",
                         TMPDIR=str(project / "tmp"))
    pid_file = project / "outputs/smoke/demo/alpha/seed0/kernel.pid"
    deadline = time.monotonic() + 180
    while not pid_file.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert pid_file.is_file(), finish(proc)
    time.sleep(0.2)
    os.kill(int(pid_file.read_text()), 9)   # what the OOM killer does
    code, err = finish(proc)
    assert code == 1, err
    assert failed_lines(err) and "the kernel died: killed by signal 9 (out of memory?)" in failed_lines(err)[0], err
    assert "Traceback" not in err
    error = (project / "outputs/smoke/demo/alpha/seed0/error.txt").read_text()
    assert error.startswith("the kernel died: killed by signal 9") and len(error.strip().splitlines()) == 1
    assert not list((project / "tmp").glob("*.json")), "the dead kernel's connection file is left"


@pytest.mark.extended  # make test checks a killed kernel's one line (kill -9 above)
def test_a_segfaulting_kernel_fails_its_run_in_one_line(kernel_project):
    pytest.importorskip("papermill")
    project = kernel_project("segfault")
    code, err = finish(nlkit_process(project, "run", project / "params/demo/alpha.yaml", "--executor",
                                        "papermill", TMPDIR=str(project / "tmp")))
    assert code == 1 and failed_lines(err), err
    # the cell is named when papermill recorded its start before the kernel died (a race, so not required)
    assert "the kernel died: killed by signal 11 (a crash in native code)" in failed_lines(err)[0], err
    assert not list((project / "tmp").glob("*.json"))


@pytest.mark.slow
def test_reproduce_goes_on_after_a_kernel_is_killed(kernel_project):
    """The shared kernel of a reproduce dies in alpha's run: alpha fails in one line, beta runs on a fresh kernel,
    the tables are rebuilt."""
    pytest.importorskip("papermill")
    project = kernel_project("kill-9-itself")
    code, err = finish(nlkit_process(project, "reproduce", "--paper", "demo", "--executor", "papermill",
                                        TMPDIR=str(project / "tmp")))
    assert code == 1, err
    assert any("FAILED demo/alpha seed 0: the kernel died: killed by signal 9 (out of memory?)" in line
               for line in err.splitlines()), err
    assert (project / "outputs/smoke/demo/beta/seed0/metrics.json").is_file()
    assert not (project / "outputs/smoke/demo/alpha/seed0/metrics.json").exists()
    assert (project / "outputs/smoke/tables/demo.md").is_file()
    assert not list((project / "tmp").glob("*.json"))


@pytest.mark.slow
def test_a_run_past_its_time_limit_is_stopped(kernel_project):
    pytest.importorskip("papermill")
    project = kernel_project("wait-to-be-killed")
    (project / "params/demo/_profiles.yaml").write_text("smoke: {value: 1, resources: {timeout_min: 0.1}}\n")
    start = time.monotonic()
    code, err = finish(nlkit_process(project, "run", project / "params/demo/alpha.yaml", "--executor",
                                        "papermill", TMPDIR=str(project / "tmp")))
    assert code == 1 and failed_lines(err), err
    reason = "the kernel was stopped at the run's time limit of 0.1 min (resources.timeout_min)"
    assert reason in failed_lines(err)[0], err
    assert time.monotonic() - start < 120 and not list((project / "tmp").glob("*.json"))


# ------------------------------------------------------------------------------------------- command-line edges

CLI_EDGES = {
    "one class for sym": ["make", "--labels", "{d}/y.npy", "--kind", "sym", "--rate", "0.4", "--seed", "1",
                          "--num-classes", "1", "--out", "{d}/o.npy"],
    "negative seed for make": ["make", "--labels", "{d}/y.npy", "--kind", "sym", "--rate", "0.4", "--seed", "-1",
                               "--num-classes", "10", "--out", "{d}/o.npy"],
    "hybrid seed -1": ["hybrid", "--base", "{d}/y.npy", "--kind", "uniform", "--rate", "0.3", "--num-classes", "10",
                       "--seed", "-1", "--out", "{d}/o.npy"],
    "hybrid seed 2**64": ["hybrid", "--base", "{d}/y.npy", "--kind", "uniform", "--rate", "0.3",
                          "--num-classes", "10", "--seed", str(2**64), "--out", "{d}/o.npy"],
    "unwritable --out parent": ["make", "--labels", "{d}/y.npy", "--kind", "sym", "--rate", "0.4", "--seed", "1",
                                "--num-classes", "10", "--out", "{d}/a-file/o.npy"],
    "--out is the input": ["make", "--labels", "{d}/y.npy", "--kind", "sym", "--rate", "0.4", "--seed", "1",
                           "--num-classes", "10", "--out", "{d}/y.npy"],
    "--out is the clean input of hybrid": ["hybrid", "--base", "{d}/y.npy", "--clean", "{d}/c.npy", "--kind",
                                           "uniform", "--rate", "0.3", "--num-classes", "10", "--out", "{d}/c.npy"],
    "empty label file": ["make", "--labels", "{d}/empty.npy", "--kind", "sym", "--rate", "0.4", "--seed", "1",
                         "--num-classes", "10", "--out", "{d}/o.npy"],
    "fine against coarse labels": ["report", "--clean", "{d}/fine.npy", "--noisy", "{d}/coarse.npy"],
}


@pytest.mark.parametrize("case", sorted(CLI_EDGES))
def test_cli_edges_exit_2_with_one_line(tmp_path, case, capsys):
    np.save(tmp_path / "y.npy", np.arange(100) % 10)
    np.save(tmp_path / "c.npy", np.arange(100) % 10)
    np.save(tmp_path / "empty.npy", np.array([], dtype=np.int64))
    np.save(tmp_path / "fine.npy", np.arange(1000) % 100)
    np.save(tmp_path / "coarse.npy", (np.arange(1000) % 100) // 5)
    (tmp_path / "a-file").write_text("not a folder")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code, _, err = run_cli(["noise", *(a.format(d=tmp_path) for a in CLI_EDGES[case])], capsys)
    assert code == 2 and one_line(err), err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before   # nothing written, no input overwritten
    if case == "fine against coarse labels":
        assert "different class counts (100 vs 20)" in err


def test_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    np.save(tmp_path / "fine.npy", np.arange(5000) % 100)
    cmd = (f"{sys.executable} -m nlkit noise report --clean {tmp_path / 'fine.npy'} --noisy {tmp_path / 'fine.npy'} "
           "--json | head -c 10")
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0 and p.stderr == "" and len(p.stdout) == 10
