"""Reading pickle-based files that a user points the kit at, without ever running code from them.

A pickle can name any importable callable and have it called while loading (``os.system`` through
``__reduce__``). Every pickle-based file the kit reads therefore goes through an explicit allowlist, checked before
anything in the file is called, and is refused otherwise, with no unsafe fallback:

- ``.pt``/``.pth`` files (label files, checkpoints, saved networks): ``torch.load(weights_only=True)``, which admits
  tensors and plain Python values; label files additionally admit plain numeric numpy arrays, scalars and dtypes
  (the format of torch-saved label sets such as CIFAR-10N/100N), through stand-ins that validate numpy's states;
- the CIFAR release's pickles: a restricted unpickler admitting plain builtins, bytes and numeric numpy arrays.

Naming only numpy's own callables is not enough: numpy's dtype and array states can be forged (a dtype with an
object field, flags claiming it holds none) so that numpy reads the file's bytes as object pointers. Both readers
therefore build dtypes from their type code alone, check every state against what numpy writes for a plain numeric
array, and fill arrays only with raw bytes of exactly the right length.

A refused file raises :class:`UnsafeFileError` naming the file and the globals it asked for.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import reprlib
import threading
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


def numpy_globals() -> dict[str, object]:
    """Pickle names that rebuild numpy arrays, scalars and dtypes (under the names numpy 1.x and 2.x write)."""
    multiarray = _np_core()
    names = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        names[f"{core}._reconstruct"] = multiarray._reconstruct
        names[f"{core}.scalar"] = multiarray.scalar
    return names


def _torch_numpy_allowlist() -> list:
    """The numpy names of numpy_globals() for torch.serialization.safe_globals, each mapped to a stand-in that
    validates what the file gives it (see _DtypeSpec, _ArraySpec): torch's unpickler applies BUILD states to the
    allowlisted types, and numpy's own dtype and array states can be forged to read bytes as object pointers."""
    entries = [(_DtypeSpec, "numpy.dtype"), (_NDARRAY, "numpy.ndarray")]
    for core in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries += [(_ArraySpec, f"{core}._reconstruct"), (_spec_scalar, f"{core}.scalar")]
    return entries


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
            if not hasattr(torch.serialization, "safe_globals") or not _torch_takes_pickled_names(torch.__version__):
                raise UserError(f"reading numpy arrays from {path} safely needs torch >= 2.6 "
                                f"(installed: {torch.__version__})")
            _REFUSED.message = None
            with torch.serialization.safe_globals(_torch_numpy_allowlist()), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")  # a raw pickle: refused below
                return _resolve_specs(torch.load(path, map_location=map_location, weights_only=True))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except UserError:
        raise
    except _MalformedPickle as e:
        raise UserError(f"cannot read {path} as {what}: {e}; only numbers and numeric numpy arrays are rebuilt "
                        "(nothing in it was run)") from None
    except pickle.UnpicklingError as e:
        if numpy and getattr(_REFUSED, "message", None):   # a stand-in refused a forged numpy state
            raise UserError(f"cannot read {path} as {what}: {_REFUSED.message}; only numbers and numeric numpy "
                            "arrays are rebuilt (nothing in it was run)") from None
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
#
# Refusing unknown globals is not enough for numpy: ``numpy.dtype`` followed by BUILD rebuilds a dtype from a state
# the file chooses (fields, object flags), and ``ndarray.__setstate__`` then reads the file's bytes as object
# pointers (a crash, or worse). So the data unpickler never hands numpy anything from the file directly: it builds
# plain numeric dtypes itself from their type code, validates every BUILD state, and fills arrays only with raw bytes
# of exactly the right length. It runs on the pure-Python unpickler, whose BUILD opcode can be replaced.

_NUMERIC_KINDS = frozenset("biufc")   # bool, signed, unsigned, float, complex: no 'V', 'O', 'S', 'U', 'M', 'm'
_MAX_DIMS = 32


class _MalformedPickle(Exception):
    """The file's opcodes build something a data pickle never holds; reported as one line naming the file."""


class _ArrayMarker:
    """What the global ``numpy.ndarray`` resolves to: an argument for ``_reconstruct``, not a callable."""

    def __repr__(self):
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        raise _MalformedPickle("it calls numpy.ndarray directly (numpy's pickles rebuild arrays through _reconstruct)")


_NDARRAY = _ArrayMarker()


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40


def _short(value) -> str:
    """A bounded repr of a value from the file (a message must stay one short line, whatever the file holds)."""
    return _SHORT.repr(value)


def _materialized(value) -> bool:
    # a finite value already in memory: a pickle cannot make the builtins below expand it (no range, no int count)
    return isinstance(value, (list, tuple, dict, set, frozenset, str, bytes, bytearray))


def _as_bytes(value, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):   # Python 2 str read with encoding='latin1': one char per byte
        try:
            return value.encode("latin1")
        except UnicodeEncodeError:
            raise _MalformedPickle(f"{what} is text, not bytes") from None
    raise _MalformedPickle(f"{what} is a {type(value).__name__}, not bytes")


def _numeric_dtype(code, align=False, copy=True):
    """``numpy.dtype(code, align, copy)`` for a plain numeric type code only."""
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if not isinstance(code, str) or len(code) > 8 or not all(isinstance(a, (bool, int)) for a in (align, copy)):
        raise _MalformedPickle(f"numpy.dtype{_short((code, align, copy))} is not a plain numeric dtype")
    try:
        dtype = np.dtype(code)
    except Exception:  # noqa: BLE001 - numpy's own message varies by version
        raise _MalformedPickle(f"numpy.dtype({code!r}) is not a dtype") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None or dtype.hasobject:
        raise _MalformedPickle(f"dtype {code!r} is not a plain numeric dtype (only numbers and booleans)")
    return dtype


def _dtype_state_ok(dtype: np.dtype, state) -> bool:
    """The state numpy writes for a plain numeric dtype: (3, byteorder, None, None, None, -1, -1, 0) (version 4 adds
    metadata None), with the byte order the type code already has (native or not applicable)."""
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4) or len(state) - 5 != state[0]:
        return False
    byteorder, rest = state[1], state[2:]
    if byteorder not in ("|", "<", ">", "=") or any(v is not None for v in rest[:3]):
        return False
    if any(type(v) is not int for v in rest[3:6]) or tuple(rest[3:6]) != (-1, -1, 0):
        return False
    if len(state) == 9 and state[8] is not None:
        return False
    return dtype.newbyteorder(byteorder) == dtype


_REFUSED = threading.local()   # the last refusal of a stand-in below (torch re-raises it as an UnpicklingError)


def _refuse(message: str):
    _REFUSED.message = message
    raise _MalformedPickle(message)


class _DtypeSpec:
    """``numpy.dtype(code, align, copy)`` inside torch's unpickler: a plain numeric dtype built from its type code;
    the BUILD state that follows is checked against it and never applied."""

    def __init__(self, code="", align=False, copy=True):
        try:
            self.dtype = _numeric_dtype(code, align, copy)
        except _MalformedPickle as e:
            _refuse(str(e))

    def __setstate__(self, state):
        if not hasattr(self, "dtype") or not _dtype_state_ok(self.dtype, state):
            _refuse(f"the dtype state {_short(state)} is not a plain numeric dtype's")


class _ArraySpec:
    """``_reconstruct(ndarray, (0,), b'b')`` inside torch's unpickler; its BUILD state, checked, makes the array
    (swapped in for this placeholder once the file is read: see _resolve_specs)."""

    def __init__(self, subtype=None, shape=None, typecode=None):
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            _refuse(f"_reconstruct{_short((subtype, shape, typecode))} is not numpy's empty array")
        self.array = None

    def __setstate__(self, state):
        if not hasattr(self, "array") or self.array is not None:
            _refuse("an array's state is set twice")
        try:
            checked = _checked_array_state(state, lambda d: d.dtype if type(d) is _DtypeSpec and
                                           hasattr(d, "dtype") else None)
        except _MalformedPickle as e:
            _refuse(str(e))
        array = np.empty(0, dtype=np.uint8)
        array.__setstate__(checked)
        self.array = array


def _spec_scalar(dtype=None, data=None):
    if type(dtype) is not _DtypeSpec or not hasattr(dtype, "dtype"):
        _refuse("a numpy scalar's dtype is not a plain numeric dtype built by the file")
    try:
        data = _as_bytes(data, "a numpy scalar's data")
    except _MalformedPickle as e:
        _refuse(str(e))
    if len(data) != dtype.dtype.itemsize:
        _refuse(f"a {dtype.dtype} scalar has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype.dtype)[0]


def _resolve_specs(obj, depth: int = 0):
    """The loaded object with every _ArraySpec replaced by its array and every _DtypeSpec by its dtype."""
    if depth > 100:
        raise _MalformedPickle("it nests containers more than 100 deep")
    if type(obj) is _ArraySpec:
        if getattr(obj, "array", None) is None:
            raise _MalformedPickle("an array is never given its data")
        return obj.array
    if type(obj) is _DtypeSpec:
        if not hasattr(obj, "dtype"):
            raise _MalformedPickle("a dtype is never given its type code")
        return obj.dtype
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _resolve_specs(value, depth + 1)
        return obj
    if type(obj) is list:
        obj[:] = [_resolve_specs(v, depth + 1) for v in obj]
        return obj
    if type(obj) is tuple:
        return tuple(_resolve_specs(v, depth + 1) for v in obj)
    return obj


def _checked_array_state(state, dtype_of) -> tuple:
    """numpy's array state (version, shape, dtype, fortran, bytes), checked, rebuilt from validated values only;
    `dtype_of` gives the plain numeric dtype the file built for the state's dtype (None: not one)."""
    if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
        raise _MalformedPickle(f"the array state {_short(state)} is not numpy's")
    _, shape, dtype, fortran, data = state
    if not isinstance(shape, tuple) or len(shape) > _MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
        raise _MalformedPickle(f"the array shape {_short(shape)} is not a tuple of sizes")
    dtype = dtype_of(dtype)
    if dtype is None:
        raise _MalformedPickle("an array's dtype is not a plain numeric dtype built by the file")
    if not isinstance(fortran, (bool, int)):
        raise _MalformedPickle(f"the array order flag {_short(fortran)} is not a bool")
    data = _as_bytes(data, "an array's data")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(data):
        raise _MalformedPickle(f"an array of shape {shape} and dtype {dtype} comes with {len(data)} bytes of data")
    return 1, shape, dtype, bool(fortran), data


class _DataUnpickler(pickle._Unpickler):  # noqa: SLF001 - the pure-Python unpickler: its BUILD can be replaced
    """An unpickler that rebuilds only builtins' containers and numbers, bytes and plain numeric numpy arrays."""

    def __init__(self, file, path: Path, what: str, **kwargs):
        super().__init__(file, **kwargs)
        self._path, self._what = path, what
        self._dtypes: dict[int, np.dtype] = {}        # dtypes this unpickler built (by id; kept alive here)
        self._pending: dict[int, np.ndarray] = {}     # arrays made by _reconstruct, waiting for their BUILD
        self._callables = {
            **{f"{m}.{n}": f for m in ("builtins", "__builtin__") for n, f in self._builtins().items()},
            "_codecs.encode": self._encode,
            "numpy.dtype": self._dtype,
            "numpy.ndarray": _NDARRAY,
            **{f"{core}.{n}": f for core in ("numpy.core.multiarray", "numpy._core.multiarray")
               for n, f in (("_reconstruct", self._reconstruct), ("scalar", self._scalar))},
        }

    # ---------------------------------------------------------------- the callables a data pickle may name

    @staticmethod
    def _builtins() -> dict:
        def checked(kind, accepts):
            def build(*args):
                if not accepts(args):
                    raise _MalformedPickle(f"{kind.__name__}{_short(args)} is not allowed")
                return kind(*args)
            return build

        def container(kind):   # list(), set([...]): from values already in the file, never from a count or a range
            return checked(kind, lambda a: len(a) == 0 or (len(a) == 1 and _materialized(a[0])))

        def from_text(kind):   # bytearray(str, 'latin-1') is how protocol 2 writes a bytearray
            return checked(kind, lambda a: len(a) <= 2 and all(_materialized(v) for v in a[:1])
                           and all(isinstance(v, str) for v in a[1:]))

        def scalar(kind):
            return checked(kind, lambda a: len(a) <= 2 and all(isinstance(v, (int, float, str)) for v in a))

        return {"set": container(set), "frozenset": container(frozenset), "list": container(list),
                "tuple": container(tuple), "dict": container(dict), "bytes": from_text(bytes),
                "bytearray": from_text(bytearray), "str": from_text(str), "int": scalar(int), "float": scalar(float),
                "complex": scalar(complex), "bool": scalar(bool)}

    @staticmethod
    def _encode(text, encoding="utf-8", errors="strict"):
        # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, 'latin1'); no other codec is needed
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
            raise _MalformedPickle(f"_codecs.encode of a {type(text).__name__} with {_short(encoding)} is not allowed")
        return text.encode("latin1")

    def _dtype(self, code, align=False, copy=True):
        dtype = _numeric_dtype(code, align, copy)
        self._dtypes[id(dtype)] = dtype
        return dtype

    def _known_dtype(self, value) -> bool:
        return isinstance(value, np.dtype) and self._dtypes.get(id(value)) is value

    def _reconstruct(self, subtype, shape, typecode):
        # numpy's pickles call _reconstruct(ndarray, (0,), b'b') for an empty array, then fill it by BUILD
        if subtype is not _NDARRAY or shape != (0,) or _as_bytes(typecode, "the array's type code") != b"b":
            raise _MalformedPickle(f"_reconstruct{_short((subtype, shape, typecode))} is not numpy's empty array")
        array = np.empty(0, dtype=np.uint8)
        self._pending[id(array)] = array
        return array

    def _scalar(self, dtype, data=None):
        if not self._known_dtype(dtype):
            raise _MalformedPickle("a numpy scalar's dtype is not a plain numeric dtype built by the file")
        data = _as_bytes(data, "a numpy scalar's data")
        if len(data) != dtype.itemsize:
            raise _MalformedPickle(f"a {dtype} scalar has {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype)[0]

    # ---------------------------------------------------------------- opcodes

    def find_class(self, module, name):
        qualified = f"{module}.{name}"
        if qualified in self._callables:
            return self._callables[qualified]
        raise UnsafeFileError(f"refusing to load {self._path} as {self._what}: it asks for {qualified}, which is not "
                              "allowed (only builtins, bytes and numpy arrays; nothing in it was run)")

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if self._known_dtype(inst):
            # the dtype is already complete from its type code: the state may only confirm it, never change it
            if not _dtype_state_ok(inst, state):
                raise _MalformedPickle(f"the dtype state {_short(state)} is not a plain numeric dtype's")
            return
        if isinstance(inst, np.ndarray) and self._pending.get(id(inst)) is inst:
            del self._pending[id(inst)]
            inst.__setstate__(self._array_state(state))
            return
        raise _MalformedPickle(f"it sets the state of a {type(inst).__name__} (only arrays and dtypes take one)")

    def _array_state(self, state) -> tuple:
        return _checked_array_state(state, lambda d: d if self._known_dtype(d) else None)

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001
    dispatch[pickle.BUILD[0]] = _load_build


def load_data_pickle(path, what: str, *, encoding: str = "ASCII"):
    """A pickle of plain data (dicts, lists, numbers, strings, bytes, plain numeric numpy arrays), e.g. a CIFAR batch
    file. Anything else, or a damaged file, raises a one-line UserError naming the file; nothing in it runs."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path} as {what}: {_one_line(e)}") from None
    return loads_data_pickle(data, path, what, encoding=encoding)


def loads_data_pickle(data: bytes, path, what: str, *, encoding: str = "ASCII"):
    """load_data_pickle for bytes already read; `path` names them in messages."""
    path = Path(path)
    try:
        return _DataUnpickler(io.BytesIO(data), path, what, encoding=encoding).load()
    except UserError:
        raise
    except _MalformedPickle as e:
        raise UserError(f"cannot read {path} as {what}: {e}; a data pickle holds only numbers, strings, bytes, "
                        "containers and numeric numpy arrays (nothing in it was run)") from None
    except Exception as e:  # noqa: BLE001 - truncated or not a pickle: the user's file, one line
        raise UserError(f"cannot read {path} as {what}: {_one_line(e)}") from None
