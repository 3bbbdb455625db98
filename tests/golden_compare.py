"""The goldens' tolerance rule, in one place (see tests/golden/README.md).

Each tensor is compared with a tolerance scaled to its own magnitude,

    |actual - expected| <= rtol * |expected| + atol_rel * scale,     scale = max|expected| (per tensor)

so a comparison means the same thing for a logit of 30 and a gradient of 1e-6, and never hides a wrong value behind an
absolute floor. A tensor that is zero in exact arithmetic has scale 0 and so must come out exactly zero, unless the
caller names the magnitude its rounding error comes from (`scale=`, e.g. max|input| of a difference that cancels).
Tests that use this pass on any x86-64 CPU with 1 or 2 threads and under ONEDNN_MAX_CPU_ISA=AVX2; they never assert
bitwise equality of floats.

    from golden_compare import assert_close_scaled
    assert_close_scaled(kit_logits, g["logits"], rtol=1e-5, atol_rel=1e-6, name="logits")
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):                     # a torch tensor, without importing torch here
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16" or str(x.dtype) == "torch.float16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def assert_close_scaled(actual, expected, *, rtol: float = 1e-5, atol_rel: float = 1e-6, scale: float | None = None,
                        name: str = "value", equal_nan: bool = False) -> None:
    """Fail unless |actual - expected| <= rtol*|expected| + atol_rel*scale elementwise (scale: max|expected|).

    Shapes must agree exactly (no broadcasting: a golden of the wrong shape is a wrong golden). Integer and boolean
    arrays are compared for equality. Computes in float64 so the check adds no rounding of its own.
    """
    a, e = _as_numpy(actual), _as_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{name}: shape {a.shape} != golden shape {e.shape}")
    if not (np.issubdtype(e.dtype, np.floating) or np.issubdtype(e.dtype, np.complexfloating)):
        if not np.array_equal(a, e):
            bad = np.argwhere(a != e)
            raise AssertionError(f"{name}: {len(bad)} of {e.size} entries differ (first at {tuple(bad[0])}: "
                                 f"{a[tuple(bad[0])]!r} != {e[tuple(bad[0])]!r})")
        return
    a64, e64 = a.astype(np.float64), e.astype(np.float64)
    finite = np.isfinite(e64)
    if scale is None:
        scale = float(np.abs(e64[finite]).max()) if finite.any() else 0.0
    tol = rtol * np.abs(e64) + atol_rel * scale
    with np.errstate(invalid="ignore"):
        ok = np.abs(a64 - e64) <= tol
    ok |= a64 == e64                              # equal infinities
    if equal_nan:
        ok |= np.isnan(a64) & np.isnan(e64)
    if ok.all():
        return
    bad = ~ok
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(bad, np.abs(a64 - e64) / np.maximum(tol, np.finfo(np.float64).tiny), 0.0)
    worst = np.unravel_index(np.nanargmax(np.where(np.isnan(excess), np.inf, excess)), e.shape) if e.ndim else ()
    raise AssertionError(
        f"{name}: {int(bad.sum())} of {e.size} entries outside rtol={rtol:g}, atol_rel={atol_rel:g} "
        f"(scale {scale:.3g}); worst at {tuple(int(i) for i in worst)}: actual {a64[worst]!r}, "
        f"golden {e64[worst]!r}, |diff| {abs(a64[worst] - e64[worst]):.3g} > tol {tol[worst]:.3g}")


def assert_all_close_scaled(actual: Mapping, expected: Mapping, *, keys=None, prefix: str = "", **kw) -> None:
    """assert_close_scaled for every key (default: all of `expected`'s), each tensor scaled on its own."""
    keys = list(expected.keys()) if keys is None else list(keys)
    missing = [k for k in keys if k not in actual]
    if missing:
        raise AssertionError(f"{prefix}missing from the kit's values: {missing}")
    for k in keys:
        assert_close_scaled(actual[k], expected[k], name=f"{prefix}{k}", **kw)
