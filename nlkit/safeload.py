"""Reading pickle-based files that a user points the kit at, without ever running code from them.

A pickle can name any importable callable and have it called while loading (``os.system`` through
``__reduce__``). Every pickle-based file the kit reads therefore goes through an explicit allowlist, checked before
anything in the file is called, and is refused otherwise, with no unsafe fallback:

- ``.pt``/``.pth`` files (label files, checkpoints, saved networks): ``torch.load(weights_only=True)``, which admits
  tensors and plain Python values; label files additionally admit the globals that rebuild numpy arrays, numpy
  scalars and dtypes (the format of torch-saved label sets such as CIFAR-10N/100N);
- the CIFAR release's pickles: a restricted unpickler admitting plain builtins, numpy arrays and bytes.

A refused file raises :class:`UnsafeFileError` naming the file and the globals it asked for.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError


class UnsafeFileError(UserError):
    """A file asked the unpickler for something outside the allowlist; nothing in it was run."""


def _np_core():
    try:
        from numpy._core import multiarray   # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _numeric_dtype_classes() -> list[type]:
    # numpy >= 1.25 has one class per dtype (numpy.dtypes.Int64DType, ...); unpickling a dtype builds one of them
    classes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"}
    return sorted((c for c in classes if c is not np.dtype), key=lambda c: c.__name__)


def numpy_globals() -> dict[str, object]:
    """Pickle names that rebuild numpy arrays, scalars and dtypes (under the names numpy 1.x and 2.x write)."""
    multiarray = _np_core()
    names = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names[f"{core}._reconstruct"] = multiarray._reconstruct
        names[f"{core}.scalar"] = multiarray.scalar
    return names


def _torch_numpy_allowlist() -> list:
    """numpy_globals() in the form torch.serialization.safe_globals takes: (object, pickled name) pairs cover the
    numpy 1.x module names that differ from the objects' own."""
    import torch

    if _torch_takes_pickled_names(torch.__version__):
        entries = [(obj, name) for name, obj in numpy_globals().items()]
    else:  # older torch: the objects under their own names only (files written by numpy 2)
        entries = list(dict.fromkeys(numpy_globals().values()))
    return entries + _numeric_dtype_classes()


def _torch_takes_pickled_names(version: str) -> bool:
    """(object, 'pickled.name') allowlist entries arrived in torch 2.6."""
    try:
        major, minor = (int(p) for p in version.split("+")[0].split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (2, 6)


# ------------------------------------------------------------------------------------------------ scanning

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
               "STRING"}


def pickle_globals(data: bytes) -> list[str]:
    """Every 'module.name' a pickle (or a sequence of pickles, as in torch's legacy format) asks for, read from
    its opcodes without executing anything."""
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        memo: dict = {}
        recent: list = []  # the values pushed last, for STACK_GLOBAL (module and name are pushed as strings)
        try:
            for op, arg, _ in pickletools.genops(stream):
                name = op.name
                if name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                    recent.append(None)
                elif name == "STACK_GLOBAL":
                    if len(recent) >= 2 and all(isinstance(v, str) for v in recent[-2:]):
                        found.append(f"{recent[-2]}.{recent[-1]}")
                    else:
                        found.append("<a global built at load time>")
                    recent.append(None)
                elif name in _STRING_OPS:
                    recent.append(arg.decode("latin1") if isinstance(arg, bytes) else arg)
                elif name == "MEMOIZE":
                    memo[len(memo)] = recent[-1] if recent else None
                elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = recent[-1] if recent else None
                elif name in ("GET", "BINGET", "LONG_BINGET"):
                    recent.append(memo.get(arg))
                elif name not in ("FRAME", "PROTO"):
                    recent.append(None)
                del recent[:-4]
        except Exception:  # noqa: BLE001 - past the pickles (raw storage bytes) or a damaged stream: stop there
            break
    return list(dict.fromkeys(found))


def _file_globals(path: Path) -> list[str]:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return [g for n in zf.namelist() if n.endswith(".pkl") for g in pickle_globals(zf.read(n))]
        return pickle_globals(path.read_bytes())
    except (OSError, zipfile.BadZipFile):
        return []


def _torch_allowed(name: str, with_numpy: bool) -> bool:
    if with_numpy and name in numpy_globals():
        return True
    return name.startswith("torch.") or name in ("collections.OrderedDict", "builtins.set", "builtins.frozenset",
                                                  "builtins.bytearray", "builtins.complex", "builtins.slice",
                                                  "builtins.range", "_codecs.encode")


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


# ------------------------------------------------------------------------------------------------ torch files

def torch_load(path, what: str, *, map_location="cpu", numpy: bool = False):
    """``torch.load(path, weights_only=True)``, never falling back to the unsafe loader. `numpy` also admits
    numpy arrays, scalars and dtypes. A refused or unreadable file raises a one-line UserError naming it (and,
    when refused, the globals it asked for); nothing in a refused file runs."""
    import torch

    import warnings

    path = Path(path)
    try:
        if numpy:
            if not hasattr(torch.serialization, "safe_globals"):
                raise UserError(f"reading numpy arrays from {path} safely needs torch >= 2.5 "
                                f"(installed: {torch.__version__})")
            with torch.serialization.safe_globals(_torch_numpy_allowlist()), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a raw pickle: refused below
                return torch.load(path, map_location=map_location, weights_only=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except UserError:
        raise
    except pickle.UnpicklingError as e:
        refused = [g for g in _file_globals(path) if not _torch_allowed(g, numpy)]
        if refused:
            raise UnsafeFileError(
                f"refusing to load {path} as {what}: it asks for {', '.join(refused[:3])}"
                f"{' ...' if len(refused) > 3 else ''}, which is not allowed (nothing in it was run)") from None
        raise UserError(f"cannot read {path} as {what} with the safe loader ({_one_line(e)}); it should be written by "
                        "torch.save and hold only tensors, numbers, strings, lists and dicts"
                        f"{' or numpy arrays' if numpy else ''}") from None
    except Exception as e:  # noqa: BLE001 - truncated, damaged or not a torch file: the user's file, one line
        raise UserError(f"cannot read {path} as {what}: {_one_line(e)}") from None


# ------------------------------------------------------------------------------------------------ plain pickles

# What a plain data pickle may rebuild: containers and numbers from builtins, bytes (protocol-2 pickles written by
# Python 3 encode bytes through _codecs.encode) and numpy arrays.
_SAFE_BUILTINS = frozenset({"set", "frozenset", "bytearray", "bytes", "complex", "slice", "range", "list", "dict",
                            "tuple", "int", "float", "str", "bool"})


class _DataUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds only builtins' containers and numbers, bytes and numpy arrays."""

    def __init__(self, file, path: Path, what: str, **kwargs):
        super().__init__(file, **kwargs)
        self._path, self._what = path, what

    def find_class(self, module, name):
        import codecs

        qualified = f"{module}.{name}"
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            import builtins

            return getattr(builtins, name)
        if qualified == "_codecs.encode":
            return codecs.encode
        allowed = numpy_globals()
        if qualified in allowed:
            return allowed[qualified]
        if module == "numpy.dtypes" and name in {c.__name__ for c in _numeric_dtype_classes()}:
            return getattr(np.dtypes, name)
        raise UnsafeFileError(f"refusing to load {self._path} as {self._what}: it asks for {qualified}, which is not "
                              "allowed (only builtins, bytes and numpy arrays; nothing in it was run)")


def load_data_pickle(path, what: str, *, encoding: str = "ASCII"):
    """A pickle of plain data (dicts, lists, numbers, strings, bytes, numpy arrays), e.g. a CIFAR batch file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _DataUnpickler(f, path, what, encoding=encoding).load()
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated or not a pickle: the user's file, one line
        raise UserError(f"cannot read {path} as {what}: {_one_line(e)}") from None
