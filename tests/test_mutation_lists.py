"""The mutation lists of `make mutation` stay current (every `find` still occurs exactly once in its file, every
test file exists), cover the five methods, and the runner's mechanics work: proven on a throw-away project with one
caught bug, one that times out, survivors with and without a reason, and an entry whose tests fail anyway."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "mutation" / "run_mutations.py"


def _load_runner():
    spec = importlib.util.spec_from_file_location("run_mutations", RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


rm = _load_runner()


def test_the_mutation_lists_are_well_formed_and_current():
    lists = rm.load_lists()
    assert not lists.errors, "stale or malformed mutation lists:\n" + "\n".join(lists.errors)


def test_at_least_60_mutations_cover_every_method():
    mutations = rm.load_lists().mutations
    per_method = {m: sum(x.method == m for x in mutations) for m in rm.METHODS}
    assert len(mutations) >= 60, f"{len(mutations)} mutations listed, at least 60 wanted: {per_method}"
    assert all(per_method.values()), f"a method has no mutations: {per_method}"


# --- the runner's mechanics, on a throw-away project ---------------------------------------------------------

CALC = '''\
def add(a, b):
    return a + b


def double(x):
    return 2 * x


def halve(x):
    return x / 2
'''

TEST_CALC = '''\
from calc import add, halve


def test_add():
    assert add(2, 3) == 5


def test_halve():
    assert halve(3) == 1.5
'''

LIST = '''\
method: sln
mutations:
  - id: add-sign
    file: calc.py
    find: "return a + b"
    replace: "return a - b"
    tests: [tests/test_calc.py]
    why: "a sign flip"
  - id: double-factor
    file: calc.py
    find: "return 2 * x"
    replace: "return 3 * x"
    tests: [tests/test_calc.py]
    why: "wrong factor"
    survivor: "double() is not used yet"
  - id: double-equivalent
    file: calc.py
    find: "return 2 * x"
    replace: "return x + x"
    tests: [tests/test_calc.py::test_add]
    why: "the same function"
  - id: halve-hangs
    file: calc.py
    find: "return x / 2"
    replace: "import time; time.sleep(60)"
    tests: [tests/test_calc.py]
    why: "a hang"
  - id: add-broken-test
    method: tdsm
    file: calc.py
    find: "return a + b"
    replace: "return a * b"
    tests: [tests/test_broken.py]
    why: "its test fails anyway"
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    # the throw-away tests need none of the installed pytest plugins: skipping them saves a second per run
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    root = tmp_path / "project"
    (root / "tests" / "mutation").mkdir(parents=True)
    (root / "calc.py").write_text(CALC)
    (root / "tests" / "test_calc.py").write_text(TEST_CALC)
    (root / "tests" / "test_broken.py").write_text("def test_always_fails():\n    assert 1 == 2\n")
    (root / "tests" / "mutation" / "sln.yaml").write_text(LIST)
    (root / ".gitignore").write_text("ignored/\n")
    (root / "ignored").mkdir()
    (root / "ignored" / "big.bin").write_text("not copied")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def test_the_runner_counts_caught_timeouts_survivors_and_broken_entries(project):
    lists = rm.load_lists(project / "tests" / "mutation", project)
    assert not lists.errors and [m.id for m in lists.mutations] == [
        "add-sign", "double-factor", "double-equivalent", "halve-hangs", "add-broken-test"]
    runner = rm.Runner(project, jobs=2, timeout=6, keep=True)   # ample for the others, even on a busy machine
    try:
        outcomes = {o.mutation.id: o for o in runner.run(lists.mutations)}
        copies = sorted(runner.tmp.iterdir())
        # each worker's copy holds the project's files, not the ignored ones, and every mutated file was restored
        assert len(copies) == 2
        for copy in copies:
            assert (copy / "calc.py").read_text() == CALC and not (copy / "ignored").exists()
    finally:
        runner.keep = False
        runner.close()
    assert not runner.tmp.exists()
    assert (project / "calc.py").read_text() == CALC          # the project itself is never touched
    assert outcomes["add-sign"].status == "caught"
    assert "tests/test_calc.py::test_add" in outcomes["add-sign"].detail
    assert outcomes["halve-hangs"].status == "timeout" and outcomes["halve-hangs"].caught
    assert outcomes["double-factor"].status == outcomes["double-equivalent"].status == "survived"
    assert outcomes["add-broken-test"].status == "broken" and not outcomes["add-broken-test"].caught
    assert "tests fail without mutation" in outcomes["add-broken-test"].detail

    verdict = rm.judge(list(outcomes.values()), ["sln", "tdsm"])
    assert not verdict.ok
    assert "| sln | 2 | 4 | 50% | ✗ |" in verdict.text and "| tdsm | 0 | 1 | 0% | ✗ |" in verdict.text
    assert "`double-factor` (calc.py): double() is not used yet" in verdict.text
    assert "`double-equivalent` (calc.py): NO REASON GIVEN" in verdict.text

    report = project / "last-run.md"
    rm.write_report(report, list(outcomes.values()), verdict, 2, 1, 12.0, project)
    text = report.read_text()
    assert "Result: FAIL" in text and "| `add-sign` | sln | calc.py | a sign flip | caught |" in text


def test_every_method_at_90_percent_and_explained_survivors_pass(project):
    lists = {m.id: m for m in rm.load_lists(project / "tests" / "mutation", project).mutations}
    caught = [rm.Outcome(lists["add-sign"], "caught", 1.0, "FAILED x")] * 9
    explained = rm.Outcome(lists["double-factor"], "survived", 1.0)
    unexplained = rm.Outcome(lists["double-equivalent"], "survived", 1.0)
    assert rm.judge(caught + [explained], ["sln"]).ok                   # 9/10 with a reason: passes
    assert not rm.judge(caught + [unexplained], ["sln"]).ok             # 9/10, but no reason given
    assert not rm.judge(caught[:8] + [explained, explained], ["sln"]).ok  # 8/10 < 90%
    assert not rm.judge(caught + [explained], ["sln", "tdsm"]).ok       # a method without mutations


def test_a_filtered_run_prints_and_exits_0_when_all_are_caught(project, capsys):
    lists_dir = project / "tests" / "mutation"
    assert rm.main(["--only", "add-*", "--method", "sln", "--jobs", "1"], lists_dir, project) == 0
    out = capsys.readouterr().out
    assert "caught   add-sign" in out and "| sln | 1 | 1 | 100% | ✓ |" in out and "PASS" in out
    assert not (lists_dir / "last-run.md").exists()             # a filtered run leaves the report alone


def test_bad_entries_are_named_one_line_each(project, capsys):
    lists_dir = project / "tests" / "mutation"
    (lists_dir / "tdsm.yaml").write_text('''\
method: tdsm
mutations:
  - {id: add-sign, file: calc.py, find: "return 9", replace: "x", tests: [tests/test_calc.py], why: "w"}
  - {id: twice, file: calc.py, find: "return", replace: "yield", tests: [tests/test_calc.py], why: "w"}
  - {id: same, file: calc.py, find: "return a + b", replace: "return a + b", tests: [tests/test_calc.py], why: "w"}
  - {id: no-file, file: nope.py, find: "a", replace: "b", tests: [tests/test_calc.py], why: "w"}
  - {id: no-test, file: calc.py, find: "return a + b", replace: "return b", tests: [tests/test_nope.py], why: "w"}
  - {id: Bad_Id, method: edm, file: calc.py, find: "return a + b", replace: "return b", tests: [tests/test_calc.py]}
  - {id: Bad_Id2, method: edm, file: calc.py, find: "return a + b", replace: "b", tests: [tests/test_calc.py], why: w}
''')
    errors = rm.load_lists(lists_dir, project).errors
    assert errors == [
        "tdsm.yaml: add-sign: `find` occurs 0 times in calc.py (must be exactly once): 'return 9'; "
        "id already used in sln.yaml",
        "tdsm.yaml: twice: `find` occurs 3 times in calc.py (must be exactly once): 'return'",
        "tdsm.yaml: same: `replace` is the same as `find`",
        "tdsm.yaml: no-file: file nope.py does not exist",
        "tdsm.yaml: no-test: test file tests/test_nope.py does not exist",
        "tdsm.yaml: Bad_Id: missing key(s) why",
        "tdsm.yaml: Bad_Id2: id 'Bad_Id2' is not kebab-case; method 'edm' is not one of dividemix, instancegm, sln, "
        "lra_diffusion, tdsm",
    ]
    assert rm.main([], lists_dir, project) == 2
    assert "7 problem(s) in the mutation lists (nothing was run)" in capsys.readouterr().out
