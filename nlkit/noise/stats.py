"""What a noisy label set looks like: realised rate, per-class rates, transition matrix."""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def transition_counts(clean, noisy, num_classes: int) -> np.ndarray:
    """C x C counts, rows = clean class, columns = noisy label."""
    clean, noisy = np.asarray(clean, np.int64), np.asarray(noisy, np.int64)
    return np.bincount(clean * num_classes + noisy, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def empirical_transition(clean, noisy, num_classes: int) -> np.ndarray:
    """Row-normalised transition counts; a class absent from `clean` keeps an identity row."""
    counts = transition_counts(clean, noisy, num_classes).astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    T = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    T[rows[:, 0] == 0] = np.eye(num_classes)[rows[:, 0] == 0]
    return T


def top_confusions(clean, noisy, num_classes: int, k: int = 5) -> list[dict]:
    """The k largest off-diagonal flows clean -> noisy, with their share of the clean class."""
    counts = transition_counts(clean, noisy, num_classes)
    off = counts.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    out = []
    for f in flat:
        i, j = divmod(int(f), num_classes)
        if off[i, j] == 0:
            break
        out.append({"clean": i, "noisy": j, "count": int(off[i, j]),
                    "share_of_class": float(off[i, j] / counts[i].sum())})
    return out


def noise_report(clean, noisy, num_classes: int | None = None) -> dict:
    """Realised noise of a label set against its clean labels (JSON-ready)."""
    clean, noisy = np.asarray(clean), np.asarray(noisy)
    if clean.shape != noisy.shape:
        raise UserError(f"clean and noisy labels differ in length: {len(clean)} vs {len(noisy)}")
    if clean.size == 0:
        raise UserError("no labels to compare")
    if num_classes is None:
        num_classes = int(max(clean.max(), noisy.max())) + 1
    for name, y in (("clean", clean), ("noisy", noisy)):
        if y.min() < 0 or y.max() >= num_classes:
            raise UserError(f"{name} labels must lie in [0, {num_classes}); found {y.min()}..{y.max()}")
    counts = transition_counts(clean, noisy, num_classes)
    per_class_n = counts.sum(axis=1)
    wrong = per_class_n - np.diag(counts)
    per_class = np.divide(wrong, per_class_n, out=np.zeros(num_classes), where=per_class_n > 0)
    T = empirical_transition(clean, noisy, num_classes)
    plurality_kept = int(sum(1 for i in range(num_classes)
                             if per_class_n[i] and counts[i].argmax() == i))
    return {
        "n": int(clean.size),
        "num_classes": int(num_classes),
        "noise_rate": float(np.mean(clean != noisy)),
        "per_class_noise_rate": [float(r) for r in per_class],
        "transition_matrix": T.tolist(),
        "classes_with_true_plurality": plurality_kept,
        "top_confusions": top_confusions(clean, noisy, num_classes),
    }
