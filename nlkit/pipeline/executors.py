"""How a run's notebook is executed: papermill (a fresh kernel, the executed notebook with its outputs) or
directly in this process (machines without Jupyter)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import uuid
from pathlib import Path

from ..errors import DataMissingError, Terminated, UserError
from ..io import atomic_write, kit_path
from .params import repo_root


def papermill_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("papermill", "ipykernel"))


def notebook_path(resolved: dict) -> Path:
    path = kit_path("notebooks") / f"{resolved['notebook']}.ipynb"
    if not path.is_file():
        raise UserError(f"notebook not found: {path}")
    return path


def execute_papermill(notebook: Path, out_dir: Path, parameters: dict, threads: int | None = None,
                      timeout_min: float | None = None) -> None:
    """papermill rewrites its output after every cell: it writes a hidden file that replaces notebook.ipynb whole
    once execution ends (also after a failing cell, so the traceback can be read), so a full disk or a killed run
    never leaves a truncated notebook.ipynb. Inside `shared_kernel()` the run reuses that kernel instead of
    starting its own. Library chatter and kernel notices go to the run's `run.log`, not the terminal. `threads`:
    the CPU threads the run computes with (see `run_threads`).

    The kernel is supervised: one that dies (the OOM killer, a segfault in native code) or outlives `timeout_min`
    (the profile's `resources.timeout_min`; stopped then) fails this run with KernelDied, in one line, and is
    cleaned up (no process, no connection file left); the caller goes on with the other runs."""
    import papermill as pm

    executed = out_dir / "notebook.ipynb"
    partial = out_dir / ".notebook.partial.ipynb"
    kernel = current_kernel()
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_log(out_dir / "run.log") as log:
        own = None
        if kernel is None:  # a kernel of its own whose start-up notices go to the run's log, not the terminal
            own = start_kernel(threads, stdout=log, stderr=log)
        km = kernel.ready(threads) if kernel else own
        try:
            with _time_limit(km, timeout_min) as limit:
                _execute(pm, notebook, partial, executed, parameters, kernel, km, limit)
        finally:
            if own is not None:
                stop_kernel(own)


def _execute(pm, notebook: Path, partial: Path, executed: Path, parameters: dict, kernel, km, limit) -> None:
    try:
        pm.execute_notebook(str(notebook), str(partial), parameters=parameters, kernel_name="python3",
                            cwd=str(repo_root()), progress_bar=False, km=km)
    except pm.PapermillExecutionError as e:
        if kernel is not None:
            kernel.dirty = True
        _publish_notebook(partial, executed, quiet=True)
        if e.ename == "DataMissingError":
            raise DataMissingError(e.evalue) from None
        if e.ename == "UserError":  # bad input the notebook refused (e.g. a label file failing its checksum)
            raise UserError(e.evalue) from None
        raise RuntimeError(f"{e.ename}: {e.evalue} (cell {e.exec_count}; see {executed})") from None
    except BaseException as e:
        if kernel is not None:
            kernel.dirty = True
        _publish_notebook(partial, executed, quiet=True)
        if isinstance(e, Exception) and not kernel_alive(km):
            reason = limit.reason() or f"the kernel died: {kernel_exit(km)}"
            if kernel is not None:   # replaced now: the dead one's connection file goes at once
                kernel.close()
            raise KernelDied(f"{reason}{_running_cell(executed)}; see {portable(executed)}") from None
        raise
    _publish_notebook(partial, executed)


class RunFailed(RuntimeError):
    """A run ended for a reason its one-line message says in full (no traceback adds to it)."""


class KernelDied(RunFailed):
    """A run's kernel process ended while the run's notebook executed (out of memory, a crash in native code, a
    time limit); the message is the run's one-line reason."""


def start_kernel(threads: int | None = None, **streams):
    """A fresh python3 kernel (an AsyncKernelManager, started) computing with `threads` CPU threads.

    Async, not jupyter_client's blocking KernelManager: with a blocking client, nbclient waits for a cell's reply in
    a call that never returns when the kernel has died, so its once-a-second liveness check never runs and the run
    hangs; with the async client that check fails the run within a second."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    km = AsyncKernelManager(kernel_name="python3")
    km.connection_file = str(kernel_files_dir() / f"kernel-{uuid.uuid4().hex}.json")
    try:
        run_sync(km.start_kernel)(cwd=str(repo_root()), **streams, **_thread_env(threads))
    except BaseException:
        stop_kernel(km)
        raise
    return km


_KERNEL_FILES: dict[int, Path] = {}   # pid -> this process's folder of kernel connection files


def kernel_files_dir() -> Path:
    """This process's private folder for the connection files of the kernels it starts (they hold the kernel's
    HMAC key): <tmp>/nlkit-kernels-<uid>/<pid>/, readable by this user only. Removed when the process exits
    (atexit; SIGTERM and Ctrl-C unwind to it, see nlkit.cli); the folders of processes that no longer exist (a
    SIGKILL, a Ray worker killed at shutdown) are removed by the next process that starts a kernel."""
    import atexit
    import shutil
    import tempfile

    pid = os.getpid()
    if pid in _KERNEL_FILES and _KERNEL_FILES[pid].is_dir():
        return _KERNEL_FILES[pid]
    base = Path(tempfile.gettempdir()) / f"nlkit-kernels-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    if base.is_symlink() or base.stat().st_uid != os.getuid():
        raise UserError(f"{base} is not this user's own folder; remove it (kernel connection files go there)")
    for folder in base.iterdir():
        if folder.name.isdigit() and int(folder.name) != pid and not _process_exists(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
    own = base / str(pid)
    own.mkdir(mode=0o700, exist_ok=True)
    if pid not in _KERNEL_FILES:
        atexit.register(_remove_kernel_files, pid)
    _KERNEL_FILES[pid] = own
    return own


def _remove_kernel_files(pid: int) -> None:
    import shutil

    if os.getpid() == pid and pid in _KERNEL_FILES:   # not in a forked child that inherited the handler
        shutil.rmtree(_KERNEL_FILES[pid], ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # EPERM: it exists (another user's)
        return True
    return True


def kernel_alive(km) -> bool:
    from jupyter_core.utils import run_sync

    try:
        return bool(run_sync(km.is_alive)())
    except Exception:  # noqa: BLE001 - a manager that cannot even tell has no live kernel
        return False


def stop_kernel(km) -> None:
    """Shut the kernel down (killed at once) and remove its connection file, also when it is already dead."""
    from jupyter_core.utils import run_sync

    try:
        run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # noqa: BLE001 - a dead kernel needs no shutdown; its files still go below
        pass
    try:
        if km.connection_file:
            Path(km.connection_file).unlink(missing_ok=True)
    except OSError:
        pass


def kernel_exit(km) -> str:
    """How the kernel process ended, in words (see describe_exit)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    code = process.poll() if process is not None else None
    return "its process ended" if code is None else describe_exit(code)


def describe_exit(code: int) -> str:
    """A process's return code in words: 'killed by signal 9 (out of memory?)', 'exited with status 1'."""
    import signal as _signal

    if code >= 0:
        return f"exited with status {code}"
    number = -code
    why = {_signal.SIGKILL: "out of memory?", _signal.SIGSEGV: "a crash in native code",
           _signal.SIGBUS: "a crash in native code", _signal.SIGABRT: "aborted"}.get(number)
    try:
        name = _signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"killed by signal {number} ({why or name})"


def _running_cell(executed: Path) -> str:
    """' in cell N' (its execution count) for the last cell papermill started before the kernel died ('' when
    unknown)."""
    try:
        started = [c for c in json.loads(executed.read_text())["cells"]
                   if c.get("cell_type") == "code" and c.get("metadata", {}).get("papermill", {}).get("start_time")]
        if started and started[-1].get("execution_count"):
            return f" in cell {started[-1]['execution_count']}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return ""


class _time_limit:  # noqa: N801 - a context manager
    """Stops the kernel (SIGKILL to its process group) once `minutes` have passed; nbclient then sees it dead."""

    def __init__(self, km, minutes: float | None):
        self.km, self.minutes, self.fired = km, minutes, False
        self.timer = threading.Timer(float(minutes) * 60, self._fire) if minutes else None

    def __enter__(self):
        if self.timer is not None:
            self.timer.daemon = True
            self.timer.start()
        return self

    def __exit__(self, *exc):
        if self.timer is not None:
            self.timer.cancel()
        return False

    def _fire(self) -> None:
        import signal as _signal

        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        if process is None or process.poll() is not None:
            return
        self.fired = True
        pgid = getattr(provisioner, "pgid", None)
        try:
            if pgid and pgid != os.getpgid(0):   # the kernel's own session: its worker processes go with it
                os.killpg(pgid, _signal.SIGKILL)
            else:
                process.kill()
        except OSError:
            pass

    def reason(self) -> str:
        if not self.fired:
            return ""
        return f"the kernel was stopped at the run's time limit of {self.minutes:g} min (resources.timeout_min)"


def _open_log(path: Path):
    """The log file for appending, never through a symlink: a `run.log` that links elsewhere (out of the run
    folder, onto another file of the user's) is removed (the link, not what it points to) and a file made in its
    place."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        if not path.is_symlink():
            raise
        path.unlink()
        fd = os.open(path, flags | os.O_EXCL, 0o666)
    return os.fdopen(fd, "a", buffering=1)


class run_log:  # noqa: N801 - a context manager, like open()
    """`with run_log(path) as stream:` sends papermill's, nbclient's and the kernel client's log records and Python
    warnings to the run's log file instead of the terminal, where `make reproduce` shows one progress line.

    Loggers are global but parallel runs are threads: one routing handler, installed while any run log is open,
    writes each record to the log of the thread that emitted it, and drops records emitted outside a run (a kernel
    client garbage-collected later), so nothing is written to a log that is already closed."""

    LOGGERS = ("papermill", "nbclient", "traitlets", "jupyter_client", "py.warnings")
    _open = 0
    _saved: list = []
    _guard = threading.Lock()
    _current = threading.local()

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        try:
            self.stream = _open_log(Path(self.path))
        except OSError:  # a full disk or read-only folder: the run itself reports that; its chatter goes nowhere
            self.stream = open(os.devnull, "w")  # noqa: SIM115 - closed in __exit__
        self.outer = getattr(run_log._current, "stream", None)
        run_log._current.stream = self.stream
        with run_log._guard:
            if run_log._open == 0:
                run_log._install()
            run_log._open += 1
        return self.stream

    def __exit__(self, *exc):
        with run_log._guard:
            run_log._open -= 1
            if run_log._open == 0:
                run_log._uninstall()
        run_log._current.stream = self.outer
        self.stream.close()
        return False

    @classmethod
    def _install(cls) -> None:
        handler = _ThreadRouter(cls._current)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        cls._saved = []
        for name in cls.LOGGERS:
            logger = logging.getLogger(name)
            cls._saved.append((logger, logger.propagate, list(logger.handlers)))
            logger.handlers, logger.propagate = [handler], False
        logging.captureWarnings(True)

    @classmethod
    def _uninstall(cls) -> None:
        logging.captureWarnings(False)
        for logger, propagate, handlers in cls._saved:
            logger.handlers, logger.propagate = handlers, propagate
        cls._saved = []


class _ThreadRouter(logging.Handler):
    """A logging handler that writes to the calling thread's open run log, or nowhere."""

    def __init__(self, current: threading.local):
        super().__init__()
        self.current = current

    def emit(self, record) -> None:
        stream = getattr(self.current, "stream", None)
        if stream is None or stream.closed:
            return
        try:
            stream.write(self.format(record) + "\n")
        except (OSError, ValueError):  # a full disk: the chatter is lost, the run goes on
            pass


def _publish_notebook(partial: Path, executed: Path, quiet: bool = False) -> None:
    """Replace `executed` with the finished `partial` (paths made portable), atomically. A partial that is not a
    whole notebook (the disk filled up, the kernel was killed mid-write) is dropped. `quiet`: an error is already
    on its way, so a failure here must not hide it."""
    try:
        if not partial.is_file():
            return
        try:
            nb = json.loads(partial.read_text())
        except ValueError:
            return
        _portable_papermill_metadata(nb)
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        atomic_write(executed, lambda tmp: Path(tmp).write_text(text))
    except OSError:
        if not quiet:
            raise
    finally:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass


def _portable_papermill_metadata(nb: dict) -> None:
    """papermill records absolute input/output paths; keep executed copies free of this machine's paths (and
    name the published file, not the partial one)."""
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = portable(meta[key])
    if meta.get("output_path"):
        meta["output_path"] = meta["output_path"].replace(".notebook.partial.ipynb", "notebook.ipynb")


# ---------------------------------------------------------------------------------------------- one kernel, many runs

_SHARED = threading.local()  # each thread of a parallel `make reproduce` drives a kernel of its own


def current_kernel() -> SharedKernel | None:
    """The shared kernel of the calling thread (None: each run starts its own)."""
    return getattr(_SHARED, "kernel", None)


def use_kernel(kernel: SharedKernel | None) -> None:
    _SHARED.kernel = kernel


def _thread_env(threads: int | None) -> dict:
    """start_kernel's arguments for a kernel whose BLAS and OpenMP read the thread count at import."""
    if not threads:
        return {}
    return {"env": {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}}


def _set_threads_code(threads: int | None) -> str:
    return f"import torch as _torch\n_torch.set_num_threads({int(threads)})\ndel _torch\n" if threads else ""


# Between two runs: a fresh namespace (modules stay imported: that is the time saved), no open figures, no
# cached tensors. Each run seeds its own generators, so nothing else carries over.
_RESET = """
get_ipython().run_line_magic("reset", "-f")
import gc as _gc, sys as _sys
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
if "torch" in _sys.modules and _sys.modules["torch"].cuda.is_available():
    _sys.modules["torch"].cuda.empty_cache()
_gc.collect()
del _gc, _sys
"""


class SharedKernel:
    """A Jupyter kernel that executes the notebooks of many runs in turn, each still written as its own executed
    notebook. Kernel start and the kit's imports (torch, pandas, matplotlib: several seconds) are paid once, not
    per run. The kernel is replaced after a failed run and every `restart_every` runs (bounded memory)."""

    def __init__(self, restart_every: int = 50):
        self.restart_every = restart_every
        self.km = None
        self.runs = 0
        self.dirty = False

    def ready(self, threads: int | None = None):
        """The kernel, fresh for the next run, computing with `threads` CPU threads (None: torch's default)."""
        if self.km is not None and (self.dirty or self.runs >= self.restart_every or not kernel_alive(self.km)):
            self.close()
        if self.km is None:
            self.km = start_kernel(threads, stderr=_quiet_stream())
            self.runs, self.dirty = 0, False
            if threads:
                self._execute_quietly(_set_threads_code(threads))
        else:
            self._execute_quietly(_RESET + _set_threads_code(threads))
        self.runs += 1
        return self.km

    def _execute_quietly(self, code: str) -> None:
        kc = self.km.blocking_client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            reply = kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError("could not reset the shared kernel")
        finally:
            kc.stop_channels()

    def close(self) -> None:
        if self.km is not None:
            stop_kernel(self.km)
            self.km = None


def _quiet_stream():
    """The kernel's own stderr (its start-up notices) goes nowhere; each run's output is in its notebook."""
    import subprocess

    return subprocess.DEVNULL


class shared_kernel:  # noqa: N801 - used as a context manager, like open()
    """`with shared_kernel(): ...` makes every papermill run inside it use one kernel (see SharedKernel)."""

    def __enter__(self):
        self.kernel = SharedKernel()
        use_kernel(self.kernel)
        return self.kernel

    def __exit__(self, *exc):
        use_kernel(None)
        self.kernel.close()
        return False


def notebook_code_cells(notebook: Path, parameters: dict) -> list[tuple[str, str]]:
    """The notebook's code as (name, code) pairs ('code cell N', N counting the notebook's code cells from 0), with
    a cell assigning `parameters` right after the cell tagged 'parameters' (what papermill does), so a direct run
    follows exactly the notebook's code path."""
    nb = json.loads(notebook.read_text())
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        index = sum(1 for name, _ in cells if name.startswith("code cell"))
        cells.append((f"code cell {index}", "".join(cell["source"])))
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            cells.append(("the injected parameters", "\n".join(f"{k} = {v!r}" for k, v in parameters.items())))
    return cells


def execute_direct(notebook: Path, out_dir: Path, parameters: dict, threads: int | None = None,
                   timeout_min: float | None = None) -> None:
    """Run the notebook's code in this process (machines without Jupyter). matplotlib draws off-screen.

    The notebook's code cannot end the process: `sys.exit()` or a KeyboardInterrupt it raises itself fails this
    run (RunFailed, one line naming the cell), while a Ctrl-C from the user still stops as documented. Code still
    running after `timeout_min` is interrupted and the run fails the same way (see _direct_time_limit)."""
    import matplotlib

    matplotlib.use("Agg")
    _ensure_display()
    namespace = {"__name__": "__main__"}
    cwd = os.getcwd()
    os.chdir(repo_root())
    previous_threads = _set_process_threads(threads)
    where = ""
    try:
        with _user_interrupts() as user, _direct_time_limit(timeout_min) as limit:
            for name, code in notebook_code_cells(notebook, parameters):
                where = f"{name} of {notebook.name}"
                exec(compile(code, f"{notebook.name}[{name}]", "exec"), namespace)  # noqa: S102
    except _TimeLimitReached:
        raise RunFailed(f"{limit.reason()} in {where}") from None
    except Terminated:   # SIGTERM of the command (nlkit.cli), not the notebook's own sys.exit()
        raise
    except SystemExit as e:
        raise RunFailed(f"the notebook's code called sys.exit({'' if e.code is None else repr(e.code)}) in "
                        f"{where}; a run must not end the process") from None
    except KeyboardInterrupt:
        if user.interrupted:   # the user's Ctrl-C: it stops as documented
            raise
        raise RunFailed(f"the notebook's code raised KeyboardInterrupt in {where}") from None
    finally:
        os.chdir(cwd)
        _set_process_threads(previous_threads)
        import matplotlib.pyplot as plt

        plt.close("all")


class _TimeLimitReached(BaseException):
    """Raised into a direct run's code at its time limit; a BaseException, so `except Exception` in a notebook
    cannot swallow it."""


class _direct_time_limit:  # noqa: N801 - a context manager
    """Interrupts a direct run's code once `minutes` have passed: by SIGALRM in the main thread (which also breaks
    a blocking sleep or read), else by an asynchronous exception raised in the run's thread at its next Python
    instruction. Code blocked in native code for good is left to the caller's process-level limit
    (local_backend._run_in_process kills the process)."""

    def __init__(self, minutes: float | None):
        self.minutes = float(minutes) if minutes else None
        self.timer = self.previous = None

    def __enter__(self):
        import signal as _signal

        if not self.minutes:
            return self
        if threading.current_thread() is threading.main_thread() and hasattr(_signal, "setitimer"):
            def on_alarm(signum, frame):
                raise _TimeLimitReached

            self.previous = _signal.signal(_signal.SIGALRM, on_alarm)
            _signal.setitimer(_signal.ITIMER_REAL, self.minutes * 60)
        else:
            self.ident, self.lock, self.active = threading.get_ident(), threading.Lock(), True
            self.timer = threading.Timer(self.minutes * 60, self._raise_in_run)
            self.timer.daemon = True
            self.timer.start()
        return self

    def _raise_in_run(self, exc=_TimeLimitReached) -> None:
        import ctypes

        with self.lock:
            if self.active or exc is None:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.ident),
                                                           ctypes.py_object(exc) if exc else None)

    def __exit__(self, *exc):
        import signal as _signal

        if self.timer is not None:
            self.timer.cancel()
            with self.lock:
                self.active = False
            self._raise_in_run(None)   # fired just as the run ended: its still pending exception is dropped
        if self.previous is not None:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
            _signal.signal(_signal.SIGALRM, self.previous)
        return False

    def reason(self) -> str:
        return f"the run was stopped at its time limit of {self.minutes:g} min (resources.timeout_min)"


class _user_interrupts:  # noqa: N801 - a context manager
    """Tells a Ctrl-C of the user (a SIGINT this process received) from a KeyboardInterrupt the notebook's code
    raised itself: SIGINT is noted, then handled as before."""

    def __init__(self):
        self.interrupted = False
        self.previous = None

    def __enter__(self):
        import signal as _signal

        if threading.current_thread() is not threading.main_thread():
            return self   # SIGINT reaches the main thread only: here every KeyboardInterrupt is the code's own
        previous = _signal.getsignal(_signal.SIGINT)

        def handler(signum, frame):
            self.interrupted = True
            if callable(previous):
                previous(signum, frame)
            elif previous != _signal.SIG_IGN:
                raise KeyboardInterrupt

        self.previous = previous if previous is not None else _signal.default_int_handler
        _signal.signal(_signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        import signal as _signal

        if self.previous is not None:
            _signal.signal(_signal.SIGINT, self.previous)
        return False


def _set_process_threads(threads: int | None) -> int | None:
    """Set torch's thread count in this process; returns the previous one (None when nothing was changed)."""
    if not threads:
        return None
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    return previous


def _ensure_display() -> None:
    """Notebooks call IPython's display(); where IPython is absent, print a text form instead."""
    if importlib.util.find_spec("IPython") is not None:
        return
    import sys
    import types

    def display(*objs, **_):
        for obj in objs:
            if not hasattr(obj, "savefig"):
                print(obj)

    ipython = types.ModuleType("IPython")
    ipython.display = types.ModuleType("IPython.display")
    ipython.display.display = display
    sys.modules.update({"IPython": ipython, "IPython.display": ipython.display})


def portable(path) -> str:
    """`path` relative to the project folder when it lies inside it or beside it, else as given."""
    path = Path(path).absolute()
    root = repo_root()
    for base, prefix in ((root, ""), (root.parent, "../")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            continue
    return str(path)


