"""Fuzzing of the kit's data-pickle reader (nlkit.safeload.loads_data_pickle), run as its own process so that a crash
shows as an exit status: valid CIFAR-batch pickles (as Python 2's cPickle and as Python 3 wrote them), forged numpy
states and random bytes, mutated with a seeded generator. Every input must either load or raise the kit's one-line
UserError; anything else prints the case and exits 1.

    python tests/fuzz_data_pickle.py [--seed S] [--cases N] [--verbose]

--verbose prints each case's number before reading it, to find the input of a crash or a hang.
"""

from __future__ import annotations

import argparse
import pickle
import resource
import struct
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]   # the fixtures beside this file, the kit of this checkout

import pickle_fixtures as fx  # noqa: E402

from nlkit.errors import UserError  # noqa: E402
from nlkit.safeload import loads_data_pickle  # noqa: E402

# type codes a mutation swaps in for a valid one: numeric, and the ones that must be refused
CODES = [b"u1", b"i1", b"f4", b"f8", b"c8", b"b1", b"O8", b"V8", b"S4", b"U2", b"M8", b"m8", b"O", b"V", b"i4,i4",
         b"(2,)i4", b"<f4", b">f8", b"O4", b"a1"]
INTS = [0, 1, -1, 2, 3, 4, 8, 63, 255, 2**31 - 1, -(2**31)]


def seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    tiny = rng.integers(0, 256, size=(2, 6), dtype=np.uint8)
    batch = {"batch_label": "training batch 1 of 5", "labels": [3, 7], "data": tiny, "filenames": ["a.png", "b.png"]}
    out = [fx.python2_pickle(batch),
           fx.python2_pickle({"label_names": ["airplane", "cat"], "num_cases_per_batch": 2, "num_vis": 12}),
           pickle.dumps(batch, protocol=2),
           pickle.dumps({"x": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.int64(3), "s": {1, 2},
                         "b": b"xy", "ba": bytearray(b"q"), "f": np.zeros((2, 2), order="F"), "c": 1 + 2j}, protocol=2),
           pickle.dumps([np.zeros(3, dtype=np.uint8)] * 2, protocol=2)]
    # a structured dtype with an object field: the forgery the reader must refuse
    obj = b"cnumpy\ndtype\nU\x02O8K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"
    void = (b"cnumpy\ndtype\nU\x02V8K\x00K\x01\x87R(K\x03U\x01|NU\x01a\x85}U\x01a(" + obj + b"K\x00tsJ\x08\x00\x00\x00"
            b"J\x01\x00\x00\x00K\x00tb")
    out.append(b"\x80\x02}(U\x04datacnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
               b"(K\x01K\x04\x85" + void + b"\x89U\x20" + b"A" * 32 + b"tbu.")
    return out


def mutate(rng: np.random.Generator, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(0, 8))
        i = int(rng.integers(0, max(len(b), 1)))
        if kind == 0 and b:                                  # flip one byte
            b[i % len(b)] = int(rng.integers(0, 256))
        elif kind == 1:                                      # insert an opcode-ish byte
            b[i:i] = bytes([int(rng.choice(list(b"()tb.RKJUTqhcN}]eus\x85\x86\x87\x88\x89\x80\x8c\x93\x94")))])
        elif kind == 2 and b:                                # delete a span
            del b[i:i + int(rng.integers(1, 8))]
        elif kind == 3 and b:                                # duplicate a span
            j = i + int(rng.integers(1, 16))
            b[j:j] = b[i:j]
        elif kind == 4:                                      # splice in a piece of another seed
            other = pool[int(rng.integers(0, len(pool)))]
            k = int(rng.integers(0, len(other)))
            b[i:i] = other[k:k + int(rng.integers(1, 40))]
        elif kind == 5:                                      # swap a short string for another type code
            k = b.find(b"U\x02", i)
            if k >= 0:
                code = CODES[int(rng.integers(0, len(CODES)))]
                b[k:k + 4] = b"U" + bytes([len(code)]) + code
        elif kind == 6:                                      # change a small int (flags, elsize, version, shape)
            k = b.find(b"K", i)
            if k >= 0 and k + 1 < len(b):
                b[k:k + 2] = b"J" + struct.pack("<i", INTS[int(rng.integers(0, len(INTS)))])
        elif kind == 7 and b:                                # truncate
            del b[i:]
    return bytes(b)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=3000)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    # a pickle that asks for a huge allocation must fail with MemoryError, not take the machine's memory
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    rng = np.random.default_rng(args.seed)
    pool = seeds()
    for data in pool[:-1]:   # the valid seeds load
        loads_data_pickle(data, "seed", "a data pickle", encoding="latin1")
    start, loaded, refused = time.perf_counter(), 0, 0
    for case in range(args.cases):
        r = rng.random()
        if r < 0.1:      # random bytes, half of them behind a protocol-2 header
            data = rng.bytes(int(rng.integers(0, 200)))
            data = b"\x80\x02" + data if r < 0.05 else data
        else:
            data = mutate(rng, pool[int(rng.integers(0, len(pool)))], pool)
        if args.verbose:
            print(case, data, flush=True)
        try:
            loads_data_pickle(data, "case", "a data pickle", encoding="latin1")
            loaded += 1
        except UserError as e:
            refused += 1
            if "\n" in str(e):
                print(f"case {case}: a message of several lines for {data!r}: {e}")
                return 1
        except BaseException as e:  # noqa: BLE001 - anything but the kit's error is a defect
            print(f"case {case}: {type(e).__name__}: {e} for {data!r}")
            return 1
    print(f"{args.cases} cases in {time.perf_counter() - start:.1f} s: {loaded} loaded, {refused} refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
