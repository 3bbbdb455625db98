"""Seeded label-noise generators (docs/noise.md §1-§6, §11 item 6).

Every generator takes an explicit seed and never touches a global RNG. Legacy modes that
replay a published file bit-exactly build the legacy RandomState locally.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError, check_choice, check_rate, check_seed
from .maps import default_asym_map, successor, transition_matrix
from .stats import empirical_transition

SPEC_VERSION = "noise-spec-1"


@dataclass
class NoiseResult:
    """Noisy labels plus what is needed to audit them."""

    noisy: np.ndarray
    clean: np.ndarray
    T_nominal: np.ndarray | None
    meta: dict = field(default_factory=dict)

    @property
    def realised_rate(self) -> float:
        return float(np.mean(self.noisy != self.clean)) if len(self.clean) else 0.0

    @property
    def T_empirical(self) -> np.ndarray:
        c = self.meta.get("num_classes") or int(max(self.clean.max(), self.noisy.max()) + 1)
        return empirical_transition(self.clean, self.noisy, c)


def make_result(generator: str, clean, noisy, T, params: dict, seed, num_classes: int) -> NoiseResult:
    noisy = np.ascontiguousarray(noisy, dtype=np.int64)
    meta = {
        "generator": generator,
        "params": params,
        "seed": seed,
        "spec_version": SPEC_VERSION,
        "num_classes": int(num_classes),
        "n": int(len(noisy)),
        "realised_rate": float(np.mean(noisy != clean)) if len(noisy) else 0.0,
        "sha256": hashlib.sha256(noisy.tobytes()).hexdigest(),
    }
    return NoiseResult(noisy=noisy, clean=np.asarray(clean, dtype=np.int64), T_nominal=T, meta=meta)


def check_labels(labels, num_classes: int, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UserError(f"{name} must be a 1-D array, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise UserError(f"{name} must be integers")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(
            f"{name} must lie in [0, {num_classes}); found values from {labels.min()} to {labels.max()}"
        )
    return labels


def _select(rng: np.random.Generator, n: int, p: float, eligible: np.ndarray, selection: str) -> np.ndarray:
    """Boolean mask of samples to relabel: Bernoulli(p) per eligible sample, or exactly floor(p*n_eligible)."""
    check_choice(selection, ("bernoulli", "exact"), "selection")
    if selection == "bernoulli":
        return (rng.random(n) < p) & eligible
    pool = np.flatnonzero(eligible)
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(pool, size=int(np.floor(p * len(pool))), replace=False)] = True
    return mask


def symmetric(labels, rate: float, num_classes: int, seed: int, *, inclusive: bool = False,
              selection: str = "bernoulli") -> NoiseResult:
    """`sym`: with probability p relabel to one of the other C-1 classes.
    `symincl` (inclusive=True): relabel to any of the C classes, so it may keep the class."""
    p = check_rate(rate)
    y = check_labels(labels, num_classes)
    rng = np.random.default_rng(seed)
    flip = _select(rng, len(y), p, np.ones(len(y), bool), selection)
    if inclusive:
        new = rng.integers(0, num_classes, len(y))
    else:
        new = (y + rng.integers(1, num_classes, len(y))) % num_classes
    noisy = np.where(flip, new, y)
    kind = "symincl" if inclusive else "sym"
    return make_result(kind, y, noisy, transition_matrix(kind, p, num_classes),
                   {"rate": p, "selection": selection}, seed, num_classes)


def asymmetric(labels, rate: float, num_classes: int, seed: int, *, asym_map: str | None = None,
               selection: str = "bernoulli") -> NoiseResult:
    """Class-flip noise: a sample of a source class moves to its target with probability p.
    `asym_map="pair"` gives pair-flip noise (i -> i+1 mod C)."""
    p = check_rate(rate)
    y = check_labels(labels, num_classes)
    map_id = asym_map or default_asym_map(num_classes)
    succ = successor(map_id, num_classes)
    rng = np.random.default_rng(seed)
    flip = _select(rng, len(y), p, succ[y] != y, selection)
    noisy = np.where(flip, succ[y], y)
    kind = "pair" if map_id == "pair" else "asym"
    return make_result(map_id, y, noisy, transition_matrix(kind, p, num_classes, None if kind == "pair" else map_id),
                   {"rate": p, "map": map_id, "selection": selection}, seed, num_classes)


def pairflip(labels, rate: float, num_classes: int, seed: int, selection: str = "bernoulli") -> NoiseResult:
    return asymmetric(labels, rate, num_classes, seed, asym_map="pair", selection=selection)


def sample_from_transition(labels, T: np.ndarray, seed: int, sampler: str = "default") -> np.ndarray:
    """Draw noisy ~ Categorical(T[clean]) per sample.

    sampler="plc_legacy": a local RandomState(seed) with one multinomial(1, T[y_i], 1) call per
    sample in index order, as the PLC script did; needed to replay its files bit-exactly.
    sampler="default": vectorised inverse-CDF draws from a numpy Generator (same law, other bits).
    """
    T = np.asarray(T, dtype=np.float64)
    y = check_labels(labels, T.shape[0])
    check_choice(sampler, ("default", "plc_legacy"), "sampler")
    if sampler == "plc_legacy":
        rs = np.random.RandomState(seed)
        out = np.empty(len(y), dtype=np.int64)
        for i, c in enumerate(y):
            out[i] = np.flatnonzero(rs.multinomial(1, T[c, :], 1)[0])[0]
        return out
    cdf = np.cumsum(T, axis=1)
    cdf[:, -1] = 1.0
    u = np.random.default_rng(seed).random(len(y))
    return (u[:, None] >= cdf[y]).sum(axis=1).astype(np.int64)


def plc_hybrid_matrix(kind: str, rate: float, num_classes: int) -> np.ndarray:
    """The PLC script's re-draw matrix, built exactly as it was (float64; the build order matters)."""
    p = check_rate(rate)
    check_choice(kind, ("uniform", "asym"), "hybrid kind")
    c = num_classes
    if kind == "uniform":
        P = np.full((c, c), p / (c - 1), dtype=np.float64)
        np.fill_diagonal(P, 1.0 - p)
        return P
    P = np.eye(c, dtype=np.float64)
    if c == 10:
        pairs = [(9, 1), (2, 0), (3, 5), (5, 3), (4, 7)]
    elif c == 100:
        pairs = [(5 * b + j, 5 * b + (j + 1) % 5) for b in range(20) for j in range(5)]
    else:
        raise UserError(f"the asymmetric hybrid is defined for 10 or 100 classes, not {c}")
    for src, dst in pairs:
        P[src, src] = 1.0 - p
        P[src, dst] = p
    return P


def plc_hybrid(base_labels, kind: str, rate: float, num_classes: int, seed: int = 77,
               clean=None) -> NoiseResult:
    """PLC/LRA hybrid noise: re-draw every *base* (PMD) label through P with RandomState(seed).

    With seed 77 this regenerates the published `_U_0.3`, `_U_0.6` and `_A_0.3` files exactly.
    `clean`, when given, is what the realised rate is measured against (else the base labels).
    """
    check_seed(seed)
    base = check_labels(base_labels, num_classes, "base labels")
    P = plc_hybrid_matrix(kind, rate, num_classes)
    noisy = sample_from_transition(base, P, seed, sampler="plc_legacy")
    ref = base if clean is None else check_labels(clean, num_classes, "clean labels")
    if len(ref) != len(base):
        raise UserError(f"clean labels have {len(ref)} entries but the base labels {len(base)}")
    return make_result("plc_hybrid", ref, noisy, P, {"kind": kind, "rate": rate, "sampler": "plc_legacy"},
                   seed, num_classes)


PMD_TYPES = {
    1: lambda m: 0.5 - 0.5 * m**2,
    2: lambda m: 1.0 - m**3,
    3: lambda m: 1.0 - (m + m**2 + m**3) / 3.0,
}


def pmd_generate(probs, pmd_type: int, factor: float, seed: int, clean=None) -> NoiseResult:
    """PMD noise from classifier probabilities eta (N x C), the PLC code rule:
    keep the top-1 class u with probability (1 - tau(margin)) / factor, else take the top-2 class s."""
    eta = np.asarray(probs, dtype=np.float64)
    if eta.ndim != 2 or eta.shape[1] < 2:
        raise UserError(f"classifier probabilities must be N x C with C >= 2, got shape {eta.shape}")
    check_choice(pmd_type, PMD_TYPES, "PMD type")
    if factor <= 0:
        raise UserError(f"PMD factor must be positive, got {factor}")
    order = np.argsort(-eta, axis=1, kind="stable")
    u, s = order[:, 0], order[:, 1]
    rows = np.arange(len(eta))
    margin = np.clip(eta[rows, u] - eta[rows, s], 0.0, 1.0)
    keep_prob = np.clip((1.0 - PMD_TYPES[pmd_type](margin)) / factor, 0.0, 1.0)
    keep = np.random.default_rng(seed).random(len(eta)) < keep_prob
    noisy = np.where(keep, u, s)
    ref = u if clean is None else check_labels(clean, eta.shape[1], "clean labels")
    return make_result("pmd_generate", ref, noisy, None, {"type": pmd_type, "factor": factor}, seed, eta.shape[1])


def ptd_flip_probabilities(x: np.ndarray, y: np.ndarray, q: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The PTD transition row of each sample: p_i = q_i * softmax(x_i W[y_i] with the own class masked) plus 1 - q_i
    on y_i. x: N x D float32 features (flattened pixels), y: clean labels, q: flip rates, W: C x D x C."""
    x = np.asarray(x, dtype=np.float32)
    W = np.asarray(W, dtype=np.float32)
    N, C = len(y), W.shape[0]
    P = np.empty((N, C), dtype=np.float64)
    for c in range(C):  # one matmul per clean class (float32, as the original's torch matmul)
        idx = np.flatnonzero(y == c)
        if not len(idx):
            continue
        a = x[idx] @ W[c]
        a[:, c] = -np.inf
        a = a - a.max(axis=1, keepdims=True)
        e = np.exp(a)
        P[idx] = (e / e.sum(axis=1, keepdims=True)).astype(np.float64)
    P *= np.asarray(q, dtype=np.float64)[:, None]
    P[np.arange(N), y] += 1.0 - np.asarray(q, dtype=np.float64)
    return P


def idn_ptd(images, labels, rate: float, num_classes: int, seed: int = 123, norm_std: float = 0.1,
            flatten: str = "hwc", pixels: str = "original") -> NoiseResult:
    """Part-dependent instance noise of Xia et al. 2020, as InstanceGM generates it (docs/noise.md §4).

    images: uint8 or float pixels in 0..255, N x H x W x C. One local RandomState(seed) feeds the
    truncated-normal flip rates, the projection tensor and the per-sample draws, in that order.
    """
    from scipy import stats

    n = check_rate(rate)
    y = check_labels(labels, num_classes)
    check_choice(flatten, ("hwc", "chw"), "flatten order")
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) != len(y):
        raise UserError(f"images must be N x H x W x C with N = {len(y)}, got shape {x.shape}")
    if flatten == "chw":
        x = x.transpose(0, 3, 1, 2)
    x = x.reshape(len(x), -1).astype(np.float32)
    N, D, C = len(y), x.shape[1], num_classes
    rs = np.random.RandomState(seed)
    if norm_std > 0 and 0.0 < n < 1.0:
        q = stats.truncnorm((0 - n) / norm_std, (1 - n) / norm_std, loc=n, scale=norm_std).rvs(N, random_state=rs)
    else:
        q = np.full(N, n)
    W = rs.randn(C, D, C).astype(np.float32)
    P = ptd_flip_probabilities(x, y, q, W)
    noisy = np.array([rs.choice(C, p=P[i] / P[i].sum()) for i in range(N)], dtype=np.int64)
    res = make_result("idn_ptd", y, noisy, None,
                  {"rate": n, "norm_std": norm_std, "flatten": flatten, "pixels": pixels}, seed, C)
    res.meta["expected_rate"] = float(q.mean())
    return res


def openset(num_train: int, num_source: int, rate: float, seed: int) -> dict:
    """SLN open-set noise: which train images (floor(N*p), without replacement) are replaced by which
    source images (CIFAR-100 train). Seeds as re-sln: `seed` for the targets, `seed+123` for the sources."""
    p = check_rate(rate)
    k = int(np.floor(num_train * p))
    if k > num_source:
        raise UserError(f"open-set noise needs {k} source images but only {num_source} are available")
    replaced = np.sort(np.random.default_rng(seed).choice(num_train, size=k, replace=False))
    source = np.random.default_rng(seed + 123).choice(num_source, size=k, replace=False)
    return {"replaced_idx": replaced.astype(np.int64), "source_idx": source.astype(np.int64),
            "rate": k / num_train if num_train else 0.0, "seed": seed}


def apply_openset(train_images: np.ndarray, source_images: np.ndarray, plan: dict) -> np.ndarray:
    """Rebuild the open-set image array from a plan of `openset` (labels are left untouched)."""
    out = np.array(train_images, copy=True)
    out[plan["replaced_idx"]] = source_images[plan["source_idx"]]
    return out


def resln_custom(labels, rate: float, num_classes: int, seed: int, kind: str = "sym") -> NoiseResult:
    """Emulation of re-sln's flawed 'custom' generator, only to explain its table column (docs/noise.md §11 item 6):
    every class reuses the same Bernoulli mask and categorical draws (its RNG was re-seeded per class),
    and its CIFAR-10 asym rules lack deer->horse. Statistical, not bit-exact."""
    p = check_rate(rate)
    y = check_labels(labels, num_classes)
    check_choice(kind, ("sym", "asym"), "re-sln custom kind")
    counts = np.bincount(y, minlength=num_classes)
    rng = np.random.default_rng(seed)
    mask = rng.random(counts.max()) < p
    pick = rng.integers(0, num_classes - 1, counts.max())  # index into "the other classes"
    succ = successor("asym_c10") if num_classes == 10 else successor("asym_c100_next")
    if num_classes == 10:
        succ[4] = 4  # the missing deer->horse rule
    noisy = y.copy()
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        flip = idx[mask[: len(idx)]]
        if kind == "sym":
            others = np.delete(np.arange(num_classes), c)
            noisy[flip] = others[pick[: len(idx)][mask[: len(idx)]]]
        else:
            noisy[flip] = succ[c]
    return make_result("resln_custom", y, noisy, None, {"rate": p, "kind": kind}, seed, num_classes)


# CLI / notebook names of the class-conditional generators
CLASS_CONDITIONAL_KINDS = ("sym", "sym-incl", "asym", "pairflip")


def make_noise(labels, kind: str, rate: float, num_classes: int, seed: int, *, asym_map: str | None = None,
               selection: str = "bernoulli") -> NoiseResult:
    """One entry point for the class-conditional kinds: sym, sym-incl, asym, pairflip (and clean)."""
    kind = {"symincl": "sym-incl", "pair": "pairflip"}.get(kind, kind)
    check_seed(seed)
    if int(num_classes) < 2:
        raise UserError(f"label noise needs at least 2 classes, got num_classes = {num_classes}")
    if kind == "clean":
        y = check_labels(labels, num_classes)
        return make_result("clean", y, y.copy(), np.eye(num_classes), {}, seed, num_classes)
    check_choice(kind, CLASS_CONDITIONAL_KINDS + ("clean",), "noise kind")
    if kind in ("sym", "sym-incl"):
        return symmetric(labels, rate, num_classes, seed, inclusive=kind == "sym-incl", selection=selection)
    if kind == "pairflip":
        return pairflip(labels, rate, num_classes, seed, selection=selection)
    return asymmetric(labels, rate, num_classes, seed, asym_map=asym_map, selection=selection)
