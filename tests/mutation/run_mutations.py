"""Mutation check (`make mutation`): plant each one-line bug listed in tests/mutation/*.yaml in a copy of the
repository, run the tests the entry names, and count the bug caught when they fail.

    python tests/mutation/run_mutations.py [--jobs 2] [--method sln] [--only 'sln-*'] [--timeout S] [--dry-run]

The format of the lists is in tests/mutation/README.md. Each worker has its own copy of the project's files (git
ls-files: tracked and untracked-but-not-ignored files, so no .venv, outputs of runs or caches), applies one mutation
at a time to it and restores the file afterwards. Before any mutation, the tests of every entry are run once on the
unmutated copy: an entry whose tests already fail (or only skip) is reported as such and never counted as caught.
A full run (no --only/--method) writes its report to tests/mutation/last-run.md. Exit status: 0 when every method
catches at least 90% of its mutations and every survivor carries a `survivor:` reason; 1 otherwise; 2 when a list
is malformed or stale (nothing is run then).
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import os
import platform
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LISTS = Path(__file__).resolve().parent
REPORT = LISTS / "last-run.md"
METHODS = ("dividemix", "instancegm", "sln", "lra_diffusion", "tdsm")
THRESHOLD = 0.90
ID_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
KEYS_REQUIRED = ("id", "file", "find", "replace", "tests", "why")
KEYS_OPTIONAL = ("survivor", "method")


@dataclass
class Mutation:
    id: str
    method: str
    file: str
    find: str
    replace: str
    tests: list[str]
    why: str
    survivor: str | None
    source: str                     # the list it comes from, for messages


@dataclass
class Outcome:
    mutation: Mutation
    status: str                     # caught | timeout | survived | broken (tests fail or skip without mutation)
    seconds: float
    detail: str = ""                # the failing test (caught), or why the entry is broken

    @property
    def caught(self) -> bool:
        return self.status in ("caught", "timeout")


@dataclass
class Lists:
    mutations: list[Mutation] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def node_file(node: str) -> str:
    """The file part of a pytest node id (`tests/x.py::test_y[p]` -> `tests/x.py`)."""
    return node.split("::", 1)[0]


def load_lists(lists_dir: Path = LISTS, root: Path = ROOT) -> Lists:
    """Every entry of every *.yaml under lists_dir, checked against the files under root; one line per problem."""
    out = Lists(files=sorted(lists_dir.glob("*.yaml")))
    seen: dict[str, str] = {}
    for path in out.files:
        name = path.name
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            out.errors.append(f"{name}: not valid YAML ({str(e).splitlines()[0]})")
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("mutations"), list):
            out.errors.append(f"{name}: expected a mapping with `method:` and a `mutations:` list")
            continue
        unknown = set(doc) - {"method", "mutations"}
        if unknown:
            out.errors.append(f"{name}: unknown top-level key(s) {sorted(unknown)}")
        for i, entry in enumerate(doc["mutations"]):
            where = f"{name} entry {i + 1}"
            if not isinstance(entry, dict):
                out.errors.append(f"{where}: not a mapping")
                continue
            if isinstance(entry.get("id"), str):
                where = f"{name}: {entry['id']}"
            problems = _entry_problems(entry, doc.get("method"), root)
            mid = entry.get("id")
            if isinstance(mid, str):
                if mid in seen:
                    problems.append(f"id already used in {seen[mid]}")
                seen.setdefault(mid, name)
            if problems:
                out.errors.append(f"{where}: {'; '.join(problems)}")
            else:
                out.mutations.append(Mutation(
                    id=mid, method=entry.get("method", doc.get("method")), file=entry["file"], find=entry["find"],
                    replace=entry["replace"], tests=list(entry["tests"]), why=entry["why"],
                    survivor=entry.get("survivor"), source=name))
    return out


def _entry_problems(entry: dict, list_method, root: Path) -> list[str]:
    problems = []
    missing = [k for k in KEYS_REQUIRED if k not in entry]
    if missing:
        return [f"missing key(s) {', '.join(missing)}"]
    unknown = set(entry) - set(KEYS_REQUIRED) - set(KEYS_OPTIONAL)
    if unknown:
        problems.append(f"unknown key(s) {sorted(unknown)}")
    if not isinstance(entry["id"], str) or not ID_RE.match(entry["id"]):
        problems.append(f"id {entry['id']!r} is not kebab-case")
    method = entry.get("method", list_method)
    if method not in METHODS:
        problems.append(f"method {method!r} is not one of {', '.join(METHODS)}")
    for key in ("file", "find", "replace", "why"):
        if not isinstance(entry[key], str) or (key != "replace" and not entry[key].strip()):
            problems.append(f"`{key}` must be a non-empty string")
    if entry.get("survivor") is not None and not (isinstance(entry["survivor"], str) and entry["survivor"].strip()):
        problems.append("`survivor` must be a non-empty string when given")
    tests = entry["tests"]
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) and t for t in tests):
        problems.append("`tests` must be a non-empty list of pytest node ids")
    else:
        for t in tests:
            if not (root / node_file(t)).is_file():
                problems.append(f"test file {node_file(t)} does not exist")
    if problems:
        return problems
    if entry["replace"] == entry["find"]:
        problems.append("`replace` is the same as `find`")
    target = root / entry["file"]
    if not target.resolve().is_relative_to(root.resolve()):
        problems.append(f"file {entry['file']} is outside the project")
    elif not target.is_file():
        problems.append(f"file {entry['file']} does not exist")
    else:
        n = target.read_bytes().count(entry["find"].encode())
        if n != 1:
            problems.append(f"`find` occurs {n} times in {entry['file']} (must be exactly once): {entry['find']!r}")
    return problems


def select(mutations: list[Mutation], only: list[str], methods: list[str]) -> list[Mutation]:
    return [m for m in mutations
            if (not methods or m.method in methods) and (not only or any(fnmatch.fnmatchcase(m.id, p) for p in only))]


def project_files(root: Path) -> list[str]:
    """The files a copy needs: what git tracks plus untracked files it does not ignore (new tests or lists)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"cannot list the project's files with git in {root}: {e}") from None
    return sorted({p for p in out.decode().split("\0") if p and (root / p).is_file()})


def make_copy(root: Path, files: list[str], dest: Path) -> Path:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def child_env(copy: Path, root: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("NLKIT_ROOT", None)                  # the copy is the project
    # No .pyc files: a mutation that keeps the file's size, written within the second the source was last
    # compiled, could otherwise run the stale unmutated bytecode.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    shared = root.parent / "shared" / "data"     # the reference data tests/conftest.py finds beside the checkout
    if "NLKIT_SHARED_DATA" not in env and shared.is_dir():
        env["NLKIT_SHARED_DATA"] = str(shared)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads))
    return env


def kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_pytest(copy: Path, tests: list[str], env: dict, timeout: float,
               live: set | None = None) -> tuple[int | None, str, float]:
    """(exit status or None on timeout, output, seconds) of pytest on `tests` inside the copy; the process is in
    `live` while it runs (for an interrupted run to end it)."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)      # its own process group: a timeout ends its children too
    live = set() if live is None else live
    live.add(proc)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output.decode(errors="replace"), time.monotonic() - start
    except subprocess.TimeoutExpired:
        kill(proc)
        output, _ = proc.communicate()
        return None, output.decode(errors="replace"), time.monotonic() - start
    finally:
        live.discard(proc)


def first_failure(output: str) -> str:
    """The first FAILED/ERROR line of pytest's short summary, else its last line."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:200]
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "(no output)"


def summary_counts(output: str) -> dict[str, int]:
    """{'passed': 3, 'skipped': 1, ...} from pytest's final line."""
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)",
                                                  lines[-1] if lines else "")}


class Runner:
    def __init__(self, root: Path, jobs: int, timeout: float | None, keep: bool = False, out=None):
        self.root, self.jobs, self.timeout, self.keep, self.out = root, jobs, timeout, keep, out
        self.threads = max(1, (os.cpu_count() or 1) // jobs)
        self.lock = threading.Lock()
        self.tmp = Path(tempfile.mkdtemp(prefix="nlkit-mutation-"))
        self.copies: queue.Queue[Path] = queue.Queue()
        self.live: set[subprocess.Popen] = set()

    def say(self, text: str) -> None:
        with self.lock:
            print(text, file=self.out or sys.stdout, flush=True)

    def prepare(self) -> None:
        files = project_files(self.root)
        for i in range(self.jobs):
            copy = make_copy(self.root, files, self.tmp / f"w{i}")
            self.copies.put(copy)
        if not (copy / "nlkit").is_dir():
            return
        # PYTHONPATH must win over the editable install of the checkout, or every mutation would survive
        probe = subprocess.run([sys.executable, "-c", "import nlkit; print(nlkit.__file__)"], cwd=copy,
                               env=child_env(copy, self.root, 1), capture_output=True, text=True)
        if probe.returncode or not Path(probe.stdout.strip()).resolve().is_relative_to(copy.resolve()):
            raise SystemExit(f"the copy's nlkit is not the one imported (got {probe.stdout.strip() or probe.stderr})")

    def close(self) -> None:
        for proc in list(self.live):             # an interrupted run: pytest processes still running
            kill(proc)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @contextmanager
    def pool(self):
        """Worker threads; on Ctrl-C the queued work is dropped and the running pytest processes are ended."""
        pool = ThreadPoolExecutor(self.jobs)
        try:
            yield pool
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in list(self.live):
                kill(proc)
            raise
        pool.shutdown()

    def _with_copy(self, fn):
        copy = self.copies.get()
        try:
            return fn(copy)
        finally:
            self.copies.put(copy)

    def baseline(self, tests: tuple[str, ...]) -> tuple[str | None, float]:
        """(None, seconds) when the tests pass on the unmutated copy, else (what is wrong, seconds)."""
        def go(copy):
            env = child_env(copy, self.root, self.threads)
            rc, output, secs = run_pytest(copy, list(tests), env, 1800, self.live)
            if rc is None:
                return f"tests time out without mutation ({secs:.0f} s)", secs
            if rc == 5:
                return "no tests collected", secs
            if rc != 0:
                return f"tests fail without mutation: {first_failure(output)}", secs
            if not summary_counts(output).get("passed"):
                return "tests only skip without mutation (is their data missing?)", secs
            return None, secs
        return self._with_copy(go)

    def mutate(self, m: Mutation, base_seconds: float) -> Outcome:
        # a hang is caught (the bug shows), but without waiting long for it
        timeout = self.timeout or max(60.0, 4 * base_seconds + 30)

        def go(copy):
            target = copy / m.file
            if not target.is_file():
                return Outcome(m, "broken", 0.0, f"{m.file} is not in the copy (ignored by git?)")
            original = target.read_bytes()
            target.write_bytes(original.replace(m.find.encode(), m.replace.encode(), 1))
            try:
                env = child_env(copy, self.root, self.threads)
                rc, output, secs = run_pytest(copy, m.tests, env, timeout, self.live)
            finally:
                target.write_bytes(original)
            if rc is None:
                return Outcome(m, "timeout", secs, f"no result after {timeout:.0f} s")
            if rc == 0:
                return Outcome(m, "survived", secs)
            return Outcome(m, "caught", secs, first_failure(output))
        return self._with_copy(go)

    def run(self, mutations: list[Mutation]) -> list[Outcome]:
        self.say(f"copying the project into {self.jobs} folder(s) under {self.tmp} ...")
        self.prepare()
        suites = sorted({tuple(m.tests) for m in mutations})
        self.say(f"checking that the {len(suites)} test selection(s) pass without mutation ...")
        base: dict[tuple[str, ...], tuple[str | None, float]] = {}
        with self.pool() as pool:
            futures = {pool.submit(self.baseline, s): s for s in suites}
            for f in as_completed(futures):
                base[futures[f]] = f.result()
                problem, secs = base[futures[f]]
                self.say(f"  {'ok ' if problem is None else 'BAD'} {secs:6.1f} s  {' '.join(futures[f])}"
                         + (f"\n      {problem}" if problem else ""))
        outcomes = [Outcome(m, "broken", 0.0, base[tuple(m.tests)][0]) for m in mutations
                    if base[tuple(m.tests)][0] is not None]
        todo = [m for m in mutations if base[tuple(m.tests)][0] is None]
        # a caught mutation stops at its first failing test (-x); a survivor takes its tests' unmutated time
        bound = sum(base[tuple(m.tests)][1] for m in todo) / self.jobs / 60
        slowest = sorted({tuple(m.tests) for m in todo}, key=lambda s: -base[s][1])[:3]
        self.say(f"running {len(todo)} mutation(s) on {self.jobs} worker(s): at most about {bound:.1f} min"
                 + ("" if bound < 20 else "; the slowest selections (name single tests to save time): "
                    + ", ".join(f"{' '.join(s)} ({base[s][1]:.0f} s)" for s in slowest)))
        start, width = time.monotonic(), max((len(m.id) for m in todo), default=0)
        with self.pool() as pool:
            futures = [pool.submit(self.mutate, m, base[tuple(m.tests)][1]) for m in todo]
            for done, f in enumerate(as_completed(futures), 1):
                o = f.result()
                outcomes.append(o)
                label = {"caught": "caught  ", "timeout": "timeout ", "survived": "SURVIVED"}[o.status]
                elapsed = time.monotonic() - start
                eta = elapsed / done * (len(todo) - done)
                self.say(f"[{done:>3}/{len(todo)} eta {eta / 60:4.1f} min] {label} {o.mutation.id:<{width}} "
                         f"{o.seconds:5.1f} s  {o.detail if o.caught else o.mutation.survivor or '(no reason given)'}")
        order = {m.id: i for i, m in enumerate(mutations)}
        return sorted(outcomes, key=lambda o: order[o.mutation.id])


@dataclass
class Verdict:
    ok: bool
    text: str                       # the summary table and the survivors, as markdown


def judge(outcomes: list[Outcome], methods: list[str]) -> Verdict:
    lines = ["| method | caught | total | share | ≥ 90% |", "|---|---:|---:|---:|:---:|"]
    ok = True
    for method in methods:
        mine = [o for o in outcomes if o.mutation.method == method]
        caught = sum(o.caught for o in mine)
        share = caught / len(mine) if mine else 0.0
        passed = bool(mine) and share >= THRESHOLD
        ok &= passed
        lines.append(f"| {method} | {caught} | {len(mine)} | "
                     f"{f'{100 * share:.0f}%' if mine else 'no mutations listed'} | {'✓' if passed else '✗'} |")
    total = sum(o.caught for o in outcomes)
    lines.append(f"| all | {total} | {len(outcomes)} | {100 * total / max(len(outcomes), 1):.0f}% | |")
    survivors = [o for o in outcomes if o.status == "survived"]
    if survivors:
        lines += ["", "Survivors:"]
        for o in survivors:
            reason = o.mutation.survivor
            ok &= reason is not None
            lines.append(f"- `{o.mutation.id}` ({o.mutation.file}): {reason or 'NO REASON GIVEN (add `survivor:`)'}")
    broken = [o for o in outcomes if o.status == "broken"]
    if broken:
        ok = False
        lines += ["", "Entries not run (not counted as caught):"]
        lines += [f"- `{o.mutation.id}`: {o.detail}" for o in broken]
    stale = [o for o in outcomes if o.caught and o.mutation.survivor]
    if stale:
        lines += ["", "Caught although listed with `survivor:` (drop the reason):"]
        lines += [f"- `{o.mutation.id}`" for o in stale]
    return Verdict(ok, "\n".join(lines))


def write_report(path: Path, outcomes: list[Outcome], verdict: Verdict, jobs: int, threads: int,
                 seconds: float, root: Path) -> None:
    def git(*args):
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else "?"
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    rows = ["| id | method | file | what it breaks | result | seconds | failing test, or survivor's reason |",
            "|---|---|---|---|---|---:|---|"]
    for o in outcomes:
        m = o.mutation
        note = o.detail if o.status != "survived" else (m.survivor or "no reason given")
        cells = [f"`{m.id}`", m.method, m.file, m.why, o.status, f"{o.seconds:.1f}", note]
        rows.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    text = "\n".join([
        "# Mutation check: last full run", "",
        f"`make mutation` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit "
        f"{git('rev-parse', '--short', 'HEAD')}{dirty}; {jobs} worker(s), {threads} thread(s) each, "
        f"{os.cpu_count()} CPU(s) ({platform.processor() or platform.machine()}); {seconds / 60:.1f} min in all.",
        "", f"Result: {'PASS' if verdict.ok else 'FAIL'}", "", verdict.text, "", "## Every mutation", "", *rows, ""])
    path.write_text(text, encoding="utf-8")


def main(argv=None, lists_dir: Path = LISTS, root: Path = ROOT, report: Path | None = REPORT) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=2, help="parallel workers, each with its own copy (default 2)")
    p.add_argument("--only", action="append", default=[], metavar="ID", help="mutation id or glob (repeatable)")
    p.add_argument("--method", action="append", default=[], choices=METHODS, help="only this method (repeatable)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds per mutation (default: 4x the tests' unmutated time + 30 s, at least 60 s)")
    p.add_argument("--dry-run", action="store_true", help="check the lists and show the selection, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the temporary copies (to look into a result)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error("--jobs must be at least 1")

    lists = load_lists(lists_dir, root)
    rel = lists_dir.relative_to(root) if lists_dir.is_relative_to(root) else lists_dir
    if not lists.files:
        print(f"No mutation lists found (no {rel}/*.yaml). Each method's planted bugs go in {rel}/<method>.yaml "
              f"and {rel}/params-<method>.yaml (format: {rel}/README.md).")
        return 1
    if lists.errors:
        print(f"{len(lists.errors)} problem(s) in the mutation lists (nothing was run):")
        print("\n".join(f"  {e}" for e in lists.errors))
        return 2
    chosen = select(lists.mutations, args.only, args.method)
    filtered = bool(args.only or args.method)
    if not chosen:
        print(f"No mutation matches the selection ({len(lists.mutations)} listed in {len(lists.files)} file(s)).")
        return 1
    methods = [m for m in METHODS if any(x.method == m for x in chosen)] if filtered else list(METHODS)
    print(f"{len(chosen)} mutation(s) from {len(lists.files)} list(s): "
          + ", ".join(f"{m} {sum(x.method == m for x in chosen)}" for m in methods))
    if args.dry_run:
        for m in chosen:
            print(f"  {m.id:<40} {m.file}  ->  {' '.join(m.tests)}")
        return 0

    runner = Runner(root, args.jobs, args.timeout, keep=args.keep)
    start = time.monotonic()
    try:
        outcomes = runner.run(chosen)
    except KeyboardInterrupt:
        print("interrupted: nothing counted, the copies removed")
        return 130
    finally:
        runner.close()
    seconds = time.monotonic() - start
    verdict = judge(outcomes, methods)
    print(f"\n{verdict.text}\n\n{'PASS' if verdict.ok else 'FAIL'} in {seconds / 60:.1f} min")
    if report is not None and not filtered:
        write_report(report, outcomes, verdict, args.jobs, runner.threads, seconds, root)
        print(f"report: {report.relative_to(root) if report.is_relative_to(root) else report}")
    elif filtered:
        print(f"(a filtered run: {REPORT.name} not written)")
    if args.keep:
        print(f"copies kept in {runner.tmp}")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
