"""Pickles in the opcodes Python 2's cPickle wrote (the CIFAR release's format), for tests of the kit's reader.

Kept apart from data_fixtures (which imports the kit's datasets, and torch with them) so that a fuzzing process
starts fast."""

from __future__ import annotations

import struct

import numpy as np


class _Python2Pickler:
    """The opcodes Python 2's cPickle (protocol 2) wrote for the CIFAR release: byte strings as (SHORT_)BINSTRING,
    every object memoized with BINPUT, arrays through numpy.core.multiarray._reconstruct, numpy.dtype('u1', 0, 1)
    and BUILD states (numpy of that time), all under their Python 2 module names."""

    def __init__(self):
        self.out, self.memo = bytearray(b"\x80\x02"), 0

    def put(self):
        self.out += b"q" + bytes([self.memo % 256]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)
        self.memo += 1

    def int(self, n: int):
        if 0 <= n < 256:
            self.out += b"K" + bytes([n])
        else:
            self.out += b"M" + struct.pack("<H", n) if 0 <= n < 65536 else b"J" + struct.pack("<i", n)

    def string(self, s):
        b = s if isinstance(s, bytes) else s.encode("latin1")
        self.out += b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b
        self.put()

    def dtype(self, code: str, byteorder: str):
        self.out += b"cnumpy\ndtype\n"
        self.put()
        self.string(code)
        self.int(0), self.int(1)
        self.out += b"\x87R"
        self.put()
        self.out += b"("
        self.int(3)
        self.string(byteorder)
        self.out += b"NNN"
        self.int(-1), self.int(-1), self.int(0)
        self.out += b"tb"

    def array(self, a: np.ndarray):
        self.out += b"cnumpy.core.multiarray\n_reconstruct\n"
        self.put()
        self.out += b"cnumpy\nndarray\n"
        self.put()
        self.int(0)
        self.out += b"\x85"
        self.string("b")
        self.out += b"\x87R"
        self.put()
        self.out += b"("
        self.int(1)
        self.out += b"("
        for n in a.shape:
            self.int(n)
        self.out += b"t"
        self.dtype(a.dtype.str[1:], a.dtype.str[0])
        self.out += b"\x89"   # not Fortran-ordered
        self.string(np.ascontiguousarray(a).tobytes())
        self.out += b"tb"

    def dump(self, obj):
        if isinstance(obj, dict):
            self.out += b"}"
            self.put()
            self.out += b"("
            for k, v in obj.items():
                self.dump(k), self.dump(v)
            self.out += b"u"
        elif isinstance(obj, list):
            self.out += b"]"
            self.put()
            self.out += b"("
            for v in obj:
                self.dump(v)
            self.out += b"e"
        elif isinstance(obj, (str, bytes)):
            self.string(obj)
        elif isinstance(obj, (int, np.integer)):
            self.int(int(obj))
        elif isinstance(obj, np.ndarray):
            self.array(obj)
        else:
            raise TypeError(type(obj))
        return self


def python2_pickle(obj) -> bytes:
    """`obj` (dicts, lists, str, ints, numpy arrays) as Python 2's cPickle.dump(obj, f, 2) wrote it."""
    return bytes(_Python2Pickler().dump(obj).out + b".")
