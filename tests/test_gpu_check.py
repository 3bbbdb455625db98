"""The prepared GPU check: its dry run on the CPU (digits, tiny budgets), packing, unpacking, and step statuses."""

import importlib.util
import json
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


@pytest.mark.slow
@pytest.mark.extended
def test_dry_run_runs_every_step_and_packs_at_most_eight_files(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    assert gpu_check.main(["--dry-run", "--out", str(out), "--work", str(work)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8
    assert {"summary.json", "doctor.txt", "outputs.tar.gz", "logs.tar.gz", "done.txt"} <= set(files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and list(summary["steps"]) == list(gpu_check.STEPS)
    assert {name: s["status"] for name, s in summary["steps"].items()} == dict.fromkeys(gpu_check.STEPS, "ok")

    # one smoke cell per paper folder, each done or stopped cleanly by its time budget, with its numbers
    papers = {p.name for p in (ROOT / "params").iterdir() if (p / "_defaults.yaml").is_file()}
    smoke = summary["steps"]["smoke"]["runs"]
    assert {r["cell"].split("/")[0] for r in smoke} == papers
    assert all(r["status"] in ("done", "stopped") and r["metrics"] for r in smoke)
    # every method's CUDA path: InstanceGM (DivideMix + its generative module), the TDSM classifier and then the
    # TDSM diffusion model that needs it (the classifier finished, so the diffusion model ran), LRA, SLN
    ran = {r["cell"]: r for r in smoke}
    assert {"instancegm/cifar10-idn-0.20-instancegm", "tdsm/mnist-sym-0.40-classifier", "tdsm/mnist-sym-0.40-tdsm",
            "lra_diffusion/cifar10-pmd-0.35-simclr-head31", "sln/cifar10-sym-0.40-paper-slnmolc"} <= set(ran)
    assert ran["tdsm/mnist-sym-0.40-classifier"]["status"] == "done"
    assert [r["cell"] for r in smoke].index("tdsm/mnist-sym-0.40-classifier") < \
        [r["cell"] for r in smoke].index("tdsm/mnist-sym-0.40-tdsm")
    sln = {r["cell"]: r for r in summary["steps"]["sln"]["runs"]}
    assert set(sln) == set(gpu_check.SLN_CELLS)
    assert all("acc_last_live" in r["metrics"] for r in sln.values())
    engine = summary["steps"]["engine"]
    assert engine["speedup"] > 0 and engine["kit"]["images_per_second"] > 0
    assert engine["reference"]["images_per_second"] > 0
    assert summary["steps"]["doctor"]["report"]["torch"]["version"]

    with tarfile.open(out / "outputs.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("metrics.json") for n in names) and not any(n.endswith(".pt") for n in names)

    dest = gpu_check.unpack(out, tmp_path / "unpacked")
    assert dest.name.endswith("-dry-run") and (dest / "summary.json").is_file()
    assert any((dest / "outputs").rglob("history.csv")) and (dest / "logs" / "sln.log").is_file()


def test_step_status():
    assert gpu_check._step_status(None, True, {}) == "timeout"
    assert gpu_check._step_status(1, False, {}) == "failed"
    assert gpu_check._step_status(0, False, {"runs": [{"status": "done"}, {"status": "stopped"}]}) == "ok"
    assert gpu_check._step_status(0, False, {"runs": [{"status": "running"}]}) == "failed"  # killed mid-run
    assert gpu_check._step_status(0, False, {"runs": [{"status": "not_run"}]}) == "not_run"


def test_a_step_in_its_own_process_leaves_its_result(tmp_path):
    """Outside a dry run every step runs in a child process; its result reaches the summary."""
    out = tmp_path / "out"
    (tmp_path / "data").mkdir()
    assert gpu_check.main(["--only", "doctor", "--data-root", str(tmp_path / "data"), "--out", str(out),
                           "--work", str(tmp_path / "work")]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["steps"]) == ["doctor"] and summary["steps"]["doctor"]["status"] == "ok"
    assert summary["steps"]["doctor"]["report"]["data_roots"][0]["origin"] == "--data-root"
    assert "cannot:" in (out / "doctor.txt").read_text()


def test_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", "x"])  # neither --data-root nor --dry-run
    with pytest.raises(SystemExit):
        gpu_check.main(["--dry-run", "--out", "x", "--only", "nope"])


def test_a_hung_step_is_killed_at_its_timeout_and_its_partial_result_reported(tmp_path):
    import sys

    result_file = tmp_path / "step.json"
    result_file.write_text(json.dumps({"runs": [{"cell": "a/b", "status": "done"}]}))
    summary, summary_file = {"steps": {}}, tmp_path / "summary.json"
    with open(tmp_path / "log", "w") as log:
        rc, timed_out = gpu_check._child([sys.executable, "-c", "import time; time.sleep(60)"], {}, log, 6.0,
                                         result_file, summary, "smoke", summary_file)
    assert (rc, timed_out) == (None, True)
    written = json.loads(summary_file.read_text())["steps"]["smoke"]
    assert written["status"] == "running" and written["runs"][0]["cell"] == "a/b"


def _check_folder(tmp_path, started="2026-01-02T03:04:05+00:00", members=()):
    """A finished check's folder: its summary and an outputs archive holding `members` (name, kind)."""
    import io

    folder = tmp_path / "check"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"started": started, "dry_run": True, "steps": {}}))
    with tarfile.open(folder / "outputs.tar.gz", "w:gz") as tar:
        for name, kind in (("outputs/run/metrics.json", "file"), *members):
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 2
                tar.addfile(info, io.BytesIO(b"{}"))
    return folder


@pytest.mark.parametrize("case", ["dot-dot member", "absolute member", "symlink member", "date climbs out"])
def test_unpack_never_writes_outside_its_destination(tmp_path, case, capsys):
    members = {"dot-dot member": [("outputs/../../../escaped.txt", "file")],
               "absolute member": [(str(tmp_path / "escaped.txt"), "file")],
               "symlink member": [("outputs/link", "symlink")]}.get(case, [])
    started = "../../../escaped" if case == "date climbs out" else "2026-01-02T03:04:05+00:00"
    folder = _check_folder(tmp_path, started, members)
    dest_root = tmp_path / "deep" / "er" / "dest"
    with pytest.raises(gpu_check.UnpackRefused):
        gpu_check.unpack(folder, dest_root)
    assert not dest_root.exists() and not list(tmp_path.rglob("escaped*"))
    assert gpu_check.main(["--unpack", str(folder)]) == 2   # refused before anything is written
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("refusing" in err or "does not begin with a date" in err)


def test_unpack_of_a_plain_check(tmp_path):
    dest = gpu_check.unpack(_check_folder(tmp_path), tmp_path / "dest")
    assert dest == (tmp_path / "dest" / "2026-01-02-dry-run").resolve()
    assert (dest / "outputs" / "run" / "metrics.json").read_text() == "{}" and (dest / "summary.json").is_file()


def test_make_gpu_check_uses_the_projects_venv_when_there_is_one(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("make"):
        pytest.skip("no make")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")

    def dry_run_command():
        out = subprocess.run(["make", "-n", "-s", "gpu-check-dry"], cwd=tmp_path, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"}, check=True)
        return out.stdout.strip()

    assert dry_run_command().startswith("PYTHONPATH=. python3 ")   # a bare GPU image: the system Python
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").write_text("")
    assert dry_run_command().startswith("PYTHONPATH=. .venv/bin/python ")  # after `make install`


def test_a_check_without_work_folder_leaves_nothing_in_temp(tmp_path, monkeypatch):
    """Its own scratch folder (tens of MB after a dry run) goes once the results are packed under --out."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "out"
    assert gpu_check.main(["--dry-run", "--only", "doctor", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"]["doctor"]["status"] == "ok"
    assert not list(scratch.glob("nlkit-gpu-check-*"))
