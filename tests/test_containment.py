"""Containment: notebook code that ends or blocks its process, a run killed from outside, a hung or stopped kernel,
a plug-in that exits or blocks while importing, kernel connection files left behind. Each ends that run (or skips
that plug-in) with one line naming the reason; the other runs go on and nothing is counted done that left no
metrics.json."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from test_faults import finish, kernel_project, nlkit_process  # noqa: F401 - kernel_project is a fixture
from test_pipeline import FAKE_NOTEBOOK_CODE, write_notebook

ROOT = Path(__file__).resolve().parents[1]

ENDINGS = {
    "sys.exit()": "import sys\nsys.exit()",
    "sys.exit(0)": "import sys\nsys.exit(0)",
    "KeyboardInterrupt": "raise KeyboardInterrupt",
    "os._exit(0)": "import os\nos._exit(0)",     # a process that ends 'successfully' without a result
    "kill -9": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",   # what the OOM killer does
    # the marker says the notebook's code is running (before it, a SIGINT may land in start-up, not in the run)
    "sleep": "import pathlib, time\npathlib.Path('sleeping').touch()\ntime.sleep(300)",
    "SIGSTOP": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
}


def project_with(kernel_project, ending: str, profile_overlay: str = "{value: 1}") -> Path:
    """alpha's notebook ends with ENDINGS[ending]; beta's writes its results."""
    project = kernel_project("wait-to-be-killed")
    write_notebook(project / "notebooks/kernel.ipynb", [FAKE_NOTEBOOK_CODE[0], ENDINGS[ending]])
    (project / "params/demo/_profiles.yaml").write_text(f"smoke: {profile_overlay}\n")
    return project


def reproduce_here(project: Path, monkeypatch, **kwargs) -> tuple[int, str]:
    from nlkit.pipeline.reproduce import reproduce

    monkeypatch.setenv("NLKIT_ROOT", str(project))
    monkeypatch.chdir(project)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    stream = io.StringIO()
    try:
        code = reproduce("smoke", paper="demo", executor="direct", stream=stream, **kwargs)
    except (SystemExit, KeyboardInterrupt) as e:   # the notebook's code ended reproduce itself
        pytest.fail(f"reproduce ended by the notebook's {type(e).__name__}:\n{stream.getvalue()}")
    return code, stream.getvalue()


def failed_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip().startswith("FAILED demo/alpha seed 0")]
    assert len(lines) == 1, err
    return lines[0]


def check_alpha_failed_alone(project: Path, err: str, reason: str) -> None:
    line = failed_line(err)
    assert reason in line, err
    alpha = project / "outputs/smoke/demo/alpha/seed0"
    assert not (alpha / "metrics.json").exists(), err
    details = line.rsplit("(details: ", 1)
    assert len(details) == 2 and Path(details[1].rstrip(")")).is_file(), line   # points at a file that exists
    assert (project / "outputs/smoke/demo/beta/seed0/metrics.json").is_file(), err
    assert (project / "outputs/smoke/tables/demo.md").is_file()
    assert "Traceback" not in err


@pytest.mark.parametrize("ending, reason", [
    ("sys.exit()", "the notebook's code called sys.exit() in code cell 1 of kernel.ipynb"),
    ("KeyboardInterrupt", "the notebook's code raised KeyboardInterrupt in code cell 1 of kernel.ipynb"),
])
def test_a_direct_notebook_ending_the_process_fails_its_run_only(kernel_project, monkeypatch, ending, reason):
    project = project_with(kernel_project, ending)
    code, err = reproduce_here(project, monkeypatch)
    assert code == 1, err
    check_alpha_failed_alone(project, err, reason)


def test_the_users_ctrl_c_still_stops_a_direct_run(kernel_project):
    """Only the notebook's own KeyboardInterrupt is contained: a SIGINT from the terminal stops `nlkit run`."""
    import signal

    project = project_with(kernel_project, "sleep")
    proc = nlkit_process(project, "run", project / "params/demo/alpha.yaml", "--executor", "direct")
    sleeping = project / "sleeping"   # written by the notebook's code just before it sleeps (the run's cwd)
    deadline = time.monotonic() + 240
    while not sleeping.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert sleeping.exists(), "the notebook's code never started"
    time.sleep(0.5)   # inside the notebook's sleep
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc, 60)
    assert code == 130 and "nlkit: interrupted" in err and "failed" not in err, err


@pytest.mark.slow
@pytest.mark.parametrize("ending, reason", [
    ("sys.exit(0)", "the notebook's code called sys.exit(0) in code cell 1 of kernel.ipynb"),
    pytest.param("os._exit(0)", "the run's process ended without writing a current metrics.json",
                 marks=pytest.mark.extended),
    ("kill -9", "the run's process was killed by signal 9 (out of memory?)"),
])
def test_a_run_process_that_ends_without_a_result_is_failed_with_its_reason(kernel_project, monkeypatch, ending,
                                                                            reason):
    """--jobs 2 without Jupyter: each run is an `nlkit run` process; 'done' means a current metrics.json."""
    project = project_with(kernel_project, ending)
    code, err = reproduce_here(project, monkeypatch, jobs=2)
    assert code == 1, err
    check_alpha_failed_alone(project, err, reason)
    assert "1 ran" in err and "1 failed" in err, err


def test_a_direct_run_past_its_time_limit_is_stopped(kernel_project, monkeypatch):
    project = project_with(kernel_project, "sleep", "{value: 1, resources: {timeout_min: 0.05}}")
    start = time.monotonic()
    code, err = reproduce_here(project, monkeypatch)
    assert code == 1 and time.monotonic() - start < 60, err
    check_alpha_failed_alone(project, err, "the run was stopped at its time limit of 0.05 min "
                                           "(resources.timeout_min) in code cell 1 of kernel.ipynb")


def test_the_command_line_time_limit_overrides_the_profile(kernel_project, monkeypatch):
    project = project_with(kernel_project, "sleep")
    from nlkit.pipeline import run_cell

    monkeypatch.setenv("NLKIT_ROOT", str(project))
    start = time.monotonic()
    [result] = run_cell(project / "params/demo/alpha.yaml", "smoke", executor="direct", timeout_min=0.04)
    assert result.status == "failed" and "time limit of 0.04 min" in result.message, result
    assert time.monotonic() - start < 60


def test_every_profile_of_every_paper_has_a_time_limit():
    from nlkit.pipeline.params import PROFILES, find_cells, load_cell, time_limit_min

    first_cells = {cell.parent.name: cell for cell in reversed(find_cells(root=ROOT))}
    for cell in first_cells.values():
        for profile in PROFILES:
            resolved = load_cell(cell, profile)
            assert 0 < time_limit_min(resolved) < float("inf"), (cell, profile)
    assert time_limit_min({**resolved, "resources": {"timeout_min": 2}}) == 2


@pytest.mark.slow
@pytest.mark.extended
def test_a_stopped_direct_run_process_is_killed_at_its_time_limit(kernel_project, monkeypatch):
    """A run process stopped by SIGSTOP never reaches its own time limit: the parent kills it."""
    from nlkit.pipeline import local_backend

    monkeypatch.setattr(local_backend, "PROCESS_GRACE_S", 2)
    # long enough for beta's process to start and finish on a busy machine
    project = project_with(kernel_project, "SIGSTOP", "{value: 1, resources: {timeout_min: 0.4}}")
    start = time.monotonic()
    code, err = reproduce_here(project, monkeypatch, jobs=2)
    assert code == 1 and time.monotonic() - start < 90, err
    check_alpha_failed_alone(project, err, "the run's process was stopped at its time limit of 0.4 min")


@pytest.mark.extended  # 14 s; make test stops a run at its time limit in test_faults.py
def test_a_stopped_kernel_is_stopped_at_its_time_limit(kernel_project):
    """A papermill run whose kernel is stopped (SIGSTOP) fails at its time limit instead of waiting forever."""
    pytest.importorskip("papermill")
    project = project_with(kernel_project, "SIGSTOP")
    start = time.monotonic()
    code, err = finish(nlkit_process(project, "run", project / "params/demo/alpha.yaml", "--executor", "papermill",
                                     "--timeout-min", "0.1", TMPDIR=str(project / "tmp")), 120)
    assert code == 1, err
    assert "the kernel was stopped at the run's time limit of 0.1 min" in err, err
    assert time.monotonic() - start < 120
    assert not list((project / "tmp").rglob("*.json"))


# ------------------------------------------------------------------------------------------- plug-ins

PLUGINS = {"exits": "import sys\nsys.exit(3)\n", "blocks": "import time\ntime.sleep(3600)\n",
           "interrupts": "raise KeyboardInterrupt\n"}


def install_bad_plugins(site: Path) -> None:
    from test_plugins import _dist_info

    for name, code in PLUGINS.items():
        (site / f"nlkit_plugin_{name}.py").write_text(code)
    _dist_info(site, "bad-plugins", "1.0", {name: f"nlkit_plugin_{name}" for name in PLUGINS})


def test_a_plugin_that_exits_or_blocks_while_importing_is_skipped(tmp_path, monkeypatch, capsys):
    from nlkit.methods import available_methods, get_method, registry

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    install_bad_plugins(site)
    monkeypatch.setattr(registry, "IMPORT_TIMEOUT_S", 1.0)
    monkeypatch.delenv("NLKIT_PLUGIN_IMPORT_TIMEOUT", raising=False)
    start = time.monotonic()
    try:
        names = available_methods()
    except BaseException as e:  # noqa: BLE001 - SystemExit/KeyboardInterrupt of a plug-in reaching the caller
        pytest.fail(f"a plug-in's import ended the command: {type(e).__name__}")
    assert time.monotonic() - start < 20
    assert not set(PLUGINS) & set(names) and {"gce", "sln"} <= set(names)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "bad-plugins" in ln]
    assert len(lines) == 3, lines
    assert any("'exits'" in ln and "its import called sys.exit(3)" in ln for ln in lines), lines
    assert any("'blocks'" in ln and "did not finish importing within 1 s" in ln for ln in lines), lines
    assert any("'interrupts'" in ln and "KeyboardInterrupt" in ln for ln in lines), lines
    start = time.monotonic()
    with pytest.raises(Exception, match="'blocks' cannot be used: .*did not finish importing"):
        get_method("blocks")
    assert time.monotonic() - start < 1   # a stuck import is not waited for again
    assert get_method("gce").SPEC.paper == "gce"


@pytest.mark.slow
def test_nlkit_commands_go_on_past_plugins_that_exit_or_block(kernel_project, tmp_path):
    import subprocess
    import sys

    project = project_with(kernel_project, "sleep")
    site = tmp_path / "site"
    site.mkdir()
    install_bad_plugins(site)
    proc = subprocess.run([sys.executable, "-m", "nlkit", "run", "params/demo/beta.yaml", "--executor", "direct"],
                          cwd=project, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "NLKIT_ROOT": str(project), "PYTHONPATH": f"{ROOT}:{site}",
                               "NLKIT_PLUGIN_IMPORT_TIMEOUT": "2"})
    assert proc.returncode == 0, proc.stderr
    assert (project / "outputs/smoke/demo/beta/seed0/metrics.json").is_file()
    assert sum("skipped method plug-in" in ln for ln in proc.stderr.splitlines()) == 3, proc.stderr


# ------------------------------------------------------------------------------------------- connection files

def kernel_files(tmp: Path) -> list[Path]:
    return sorted(tmp.rglob("*.json"))


def wait_for(path: Path, proc, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not path.is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert path.is_file(), finish(proc)
    time.sleep(0.3)


@pytest.mark.slow
def test_sigterm_of_reproduce_leaves_no_connection_file(kernel_project):
    import signal

    pytest.importorskip("papermill")
    project = kernel_project("wait-to-be-killed")
    proc = nlkit_process(project, "reproduce", "--paper", "demo", "--executor", "papermill",
                         TMPDIR=str(project / "tmp"))
    wait_for(project / "outputs/smoke/demo/alpha/seed0/kernel.pid", proc)
    assert kernel_files(project / "tmp"), "the kernel's connection file is not where the test looks"
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc, 60)
    assert code == 143, err
    assert not kernel_files(project / "tmp"), err


@pytest.mark.slow
def test_connection_files_of_a_killed_process_are_removed_by_the_next_run(kernel_project, monkeypatch):
    import signal
    import tempfile

    from nlkit.pipeline import executors

    pytest.importorskip("papermill")
    project = kernel_project("wait-to-be-killed")
    proc = nlkit_process(project, "run", project / "params/demo/alpha.yaml", "--executor", "papermill",
                         TMPDIR=str(project / "tmp"))
    pid_file = project / "outputs/smoke/demo/alpha/seed0/kernel.pid"
    wait_for(pid_file, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    os.kill(int(pid_file.read_text()), signal.SIGKILL)   # its orphaned kernel
    [left] = kernel_files(project / "tmp")
    assert oct(left.parent.stat().st_mode & 0o777) == "0o700" and left.parent.name == str(proc.pid)
    # the next process to start a kernel (this one, as if it were a fresh `nlkit run`) clears it first
    monkeypatch.setattr(tempfile, "tempdir", str(project / "tmp"))
    monkeypatch.setattr(executors, "_KERNEL_FILES", {})
    own = executors.kernel_files_dir()
    assert own.name == str(os.getpid()) and own.parent == left.parent.parent
    assert not kernel_files(project / "tmp") and not left.parent.exists()


# ------------------------------------------------------------------------------------------- bad settings

def test_empty_sampling_seeds_are_refused_in_one_line():
    from nlkit.errors import UserError
    from nlkit.methods.tdsm.train import TDSMConfig

    with pytest.raises(UserError, match=r"train\.sampling_seeds: List should have at least 1 item"):
        TDSMConfig.from_cell({"train": {"sampling_seeds": []}})
    assert TDSMConfig.from_cell({"train": {"sampling_seeds": [3]}}).sampling_seeds == [3]


def test_a_cell_invalid_under_paper_is_refused_before_anything_runs(kernel_project, monkeypatch):
    """Valid under smoke (its overlay hides the problem), invalid as written: reported as invalid, naming the
    profile; the other cells run."""
    project = project_with(kernel_project, "sleep")
    alpha = project / "params/demo/alpha.yaml"
    alpha.write_text(alpha.read_text().replace("seeds: [0]", "seeds: [0, 0]\nprofiles: {smoke: {seeds: [0]}}"))
    code, err = reproduce_here(project, monkeypatch)
    assert code == 1, err
    [line] = [ln for ln in err.splitlines() if "invalid params" in ln]
    assert "alpha.yaml [paper profile]: invalid params:" in line and "seeds [0, 0] repeat a seed" in line, err
    assert not (project / "outputs/smoke/demo/alpha").exists()
    assert (project / "outputs/smoke/demo/beta/seed0/metrics.json").is_file()


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_bad_time_budget_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, value):
    from nlkit.cli import main
    from nlkit.errors import UserError
    from nlkit.train.loop import TrainLoop

    monkeypatch.setenv("NLKIT_TIME_BUDGET_SECONDS", value)
    for argv in (["run", "params/sln/none.yaml"], ["reproduce", "--paper", "sln"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.strip() == f"nlkit: error: NLKIT_TIME_BUDGET_SECONDS must be a number of seconds > 0, got " \
                              f"{value!r}", err
    with pytest.raises(UserError, match="NLKIT_TIME_BUDGET_SECONDS must be a number of seconds > 0"):
        TrainLoop(tmp_path, epochs=2)
    monkeypatch.setenv("NLKIT_TIME_BUDGET_SECONDS", "1.5")
    assert TrainLoop(tmp_path, epochs=2).time_budget_seconds == 1.5
