"""Train/validation index splits of a training set."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def validation_split(
    labels, val_fraction: float | None = None, val_size: int | None = None, seed: int = 0, stratified: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train_idx, val_idx): sorted int64 indices, disjoint, together covering 0..N-1.

    Give exactly one of `val_fraction` (0 < f < 1) or `val_size` (1 <= k < N). Stratified splits keep
    each class's share (by `labels`, which for noisy data are the noisy labels).
    """
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise UserError(f"labels must be 1-D, got shape {labels.shape}")
    n = labels.shape[0]
    if (val_fraction is None) == (val_size is None):
        raise UserError("give exactly one of val_fraction and val_size")
    if val_fraction is not None:
        if not 0.0 < float(val_fraction) < 1.0:
            raise UserError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
        test_size = float(val_fraction)
    else:
        if int(val_size) != val_size or not 1 <= val_size < n:
            raise UserError(f"val_size must be an integer in 1..{n - 1}, got {val_size!r}")
        test_size = int(val_size)
    try:
        train_idx, val_idx = train_test_split(
            np.arange(n), test_size=test_size, random_state=seed, stratify=labels if stratified else None
        )
    except ValueError as err:  # e.g. a class with one member, or fewer val slots than classes
        raise UserError(f"cannot split {n} samples ({'stratified' if stratified else 'random'}): {err}") from None
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


def holdout_tail(n: int, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """The last `n_val` of `n` indices as validation (PLC/LRA hold out CIFAR train images 45000..49999)."""
    if int(n_val) != n_val or int(n) != n or not 0 <= n_val < n:
        raise UserError(f"n_val must be an integer in 0..{n - 1}, got {n_val!r}")
    n, n_val = int(n), int(n_val)
    return np.arange(n - n_val, dtype=np.int64), np.arange(n - n_val, n, dtype=np.int64)


def stratified_subset(labels, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of a seeded, class-stratified subset of `n` samples (all of them when n is None or
    covers the set). The reduced-budget profiles train on such a subset (the `train_subset` / `test_subset` keys of a
    cell); index every per-sample array (images, clean and noisy labels) with it, so a published noisy-label file
    keeps its meaning."""
    labels = np.asarray(labels)
    total = len(labels)
    if n is None or n == total:
        return np.arange(total, dtype=np.int64)
    if int(n) != n or not 1 <= n <= total:
        raise UserError(f"a subset must hold an integer number of samples in 1..{total}, got {n!r}")
    keep, _ = validation_split(labels, val_size=total - int(n), seed=seed)
    return keep
