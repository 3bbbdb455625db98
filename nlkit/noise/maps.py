"""Class-flip maps and class-conditional transition matrices (docs/noise.md §1).

T[i, j] = P(noisy = j | clean = i): rows are the clean class and sum to 1.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError, check_choice, check_rate

# CIFAR-10: truck->automobile, bird->airplane, deer->horse, cat->dog, dog->cat.
_C10_PAIRS = [(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)]
_MNIST_TDSM_PAIRS = [(2, 7), (3, 8), (5, 6), (6, 5)]
_MNIST_PATRINI_PAIRS = _MNIST_TDSM_PAIRS + [(7, 1)]

# CIFAR-100 superclasses (coarse id -> ascending fine ids); each fine id flips to the next in its row.
CIFAR100_SUPERCLASSES = {
    "aquatic mammals": [4, 30, 55, 72, 95],
    "fish": [1, 32, 67, 73, 91],
    "flowers": [54, 62, 70, 82, 92],
    "food containers": [9, 10, 16, 28, 61],
    "fruit and vegetables": [0, 51, 53, 57, 83],
    "household electrical devices": [22, 39, 40, 86, 87],
    "household furniture": [5, 20, 25, 84, 94],
    "insects": [6, 7, 14, 18, 24],
    "large carnivores": [3, 42, 43, 88, 97],
    "large man-made outdoor things": [12, 17, 37, 68, 76],
    "large natural outdoor scenes": [23, 33, 49, 60, 71],
    "large omnivores and herbivores": [15, 19, 21, 31, 38],
    "medium-sized mammals": [34, 63, 64, 66, 75],
    "non-insect invertebrates": [26, 45, 77, 79, 99],
    "people": [2, 11, 35, 46, 98],
    "reptiles": [27, 29, 44, 78, 93],
    "small mammals": [36, 50, 65, 74, 80],
    "trees": [47, 52, 56, 59, 96],
    "vehicles 1": [8, 13, 48, 58, 90],
    "vehicles 2": [41, 69, 81, 85, 89],
}


def _superclass_pairs() -> list[tuple[int, int]]:
    pairs = []
    for fine in CIFAR100_SUPERCLASSES.values():
        pairs += [(fine[k], fine[(k + 1) % len(fine)]) for k in range(len(fine))]
    return pairs


def _block5_pairs() -> list[tuple[int, int]]:
    return [(5 * b + j, 5 * b + (j + 1) % 5) for b in range(20) for j in range(5)]


def _next_pairs(num_classes: int) -> list[tuple[int, int]]:
    return [(i, (i + 1) % num_classes) for i in range(num_classes)]


# map id -> (number of classes, source->target pairs, where it comes from)
ASYM_MAPS: dict[str, tuple[int, list[tuple[int, int]], str]] = {
    "asym_c10": (10, _C10_PAIRS, "CIFAR-10 class flips (SLN, TDSM, PLC/LRA)"),
    "asym_mnist_tdsm": (10, _MNIST_TDSM_PAIRS, "MNIST flips as in TDSM (no 7->1)"),
    "asym_mnist_patrini": (10, _MNIST_PATRINI_PAIRS, "MNIST flips of Patrini et al. (with 7->1)"),
    "asym_c100_superclass": (100, _superclass_pairs(), "CIFAR-100 next fine class within its superclass (TDSM)"),
    "asym_c100_block5": (100, _block5_pairs(), "CIFAR-100 next index in blocks of 5 consecutive ids (PLC/LRA)"),
    "asym_c100_next": (100, _next_pairs(100), "CIFAR-100 i -> i+1 mod 100 (SLN paper files)"),
}


def successor(map_id: str, num_classes: int | None = None) -> np.ndarray:
    """Target class of every class under a flip map (identity for classes the map leaves alone)."""
    if map_id == "pair":
        if num_classes is None:
            raise UserError("the pair-flip map needs the number of classes")
        c, pairs = num_classes, _next_pairs(num_classes)
    else:
        check_choice(map_id, ASYM_MAPS, "asymmetric map")
        c, pairs, _ = ASYM_MAPS[map_id]
        if num_classes is not None and num_classes != c:
            raise UserError(f"map {map_id!r} is defined for {c} classes, not {num_classes}")
    succ = np.arange(c, dtype=np.int64)
    for src, dst in pairs:
        succ[src] = dst
    return succ


def default_asym_map(num_classes: int) -> str:
    if num_classes == 10:
        return "asym_c10"
    raise UserError(
        f"no default asymmetric map for {num_classes} classes; name one with --asym-map "
        f"({', '.join(sorted(ASYM_MAPS))})"
    )


def transition_matrix(kind: str, rate: float, num_classes: int, asym_map: str | None = None) -> np.ndarray:
    """Nominal transition matrix (float64, C x C) of a class-conditional noise kind.

    kind: "clean", "sym" (flip to another class), "symincl" (redraw from all classes),
    "asym" (a flip map, `asym_map`), "pair" (i -> i+1 mod C).
    """
    p = check_rate(rate)
    c = int(num_classes)
    if c < 2:
        raise UserError(f"need at least 2 classes, got {c}")
    if kind == "clean":
        return np.eye(c)
    if kind == "sym":
        T = np.full((c, c), p / (c - 1))
        np.fill_diagonal(T, 1.0 - p)
        return T
    if kind == "symincl":
        T = np.full((c, c), p / c)
        np.fill_diagonal(T, 1.0 - p + p / c)
        return T
    if kind in ("asym", "pair"):
        succ = successor(asym_map or default_asym_map(c), c) if kind == "asym" else successor("pair", c)
        T = np.eye(c)
        flips = np.flatnonzero(succ != np.arange(c))
        T[flips, flips] = 1.0 - p
        T[flips, succ[flips]] = p
        return T
    raise UserError(f"unknown class-conditional noise kind {kind!r}; choose one of: asym, clean, pair, sym, symincl")


def check_invertible(T: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Return T^-1, or raise a clear error when T is singular (methods such as TDSM invert T)."""
    sv = np.linalg.svd(T, compute_uv=False)
    if sv[-1] <= tol * sv[0]:
        raise UserError(
            "the transition matrix is singular (e.g. sym noise at p=(C-1)/C, or a swap map at p=0.5); "
            "it cannot be inverted"
        )
    return np.linalg.inv(T)


def superclass_groups_from_coarse(fine_labels, coarse_labels) -> dict[int, list[int]]:
    """Superclass -> ascending fine ids, derived from CIFAR-100's `coarse_labels` (checks the hard-coded table)."""
    fine, coarse = np.asarray(fine_labels), np.asarray(coarse_labels)
    groups: dict[int, set] = {}
    for f, c in zip(fine.tolist(), coarse.tolist()):
        groups.setdefault(int(c), set()).add(int(f))
    if any(len([c for c, g in groups.items() if f in g]) != 1 for f in set(fine.tolist())):
        raise UserError("a fine class belongs to more than one superclass: these are not CIFAR-100's labels")
    return {c: sorted(g) for c, g in sorted(groups.items())}
