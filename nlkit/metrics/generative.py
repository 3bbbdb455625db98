"""Fréchet distance, Inception score, density and coverage, and their class-wise averages.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to two feature sets:
    ||mu_1 - mu_2||^2 + tr(C_1 + C_2 - 2 (C_1 C_2)^(1/2)).
Computed in float64 with scipy's matrix square root; the same function serves the Inception FID and the kit's
feature-FID on its own classifier's features. Density and coverage (Naeem et al. 2020) come from `prdc`.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of an (N, D) feature array, float64, covariance with N - 1."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise UserError(f"need an (N >= 2, D) feature array, got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape:
        raise UserError("the two feature statistics have different dimensions")
    covmean = _sqrtm(cov1 @ cov2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise both, as the reference FID code does
        offset = np.eye(len(cov1)) * 1e-6
        covmean = _sqrtm((cov1 + offset) @ (cov2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * np.trace(covmean))


def _sqrtm(a: np.ndarray) -> np.ndarray:
    from scipy import linalg

    out = linalg.sqrtm(a)
    return out[0] if isinstance(out, tuple) else out  # older SciPy returned (sqrtm, error estimate) with disp=False


def fid_from_features(real, fake) -> float:
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))


def inception_score(logits_or_probs, splits: int = 10, from_logits: bool = True, shuffle: bool = True,
                    seed: int = 2020) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) per split; (mean, std) over the splits.

    The samples are first put in a seeded random order (torch-fidelity's convention: a NumPy RandomState(2020)
    permutation, splits at i N // splits): generated samples often come in class blocks, and splitting them in
    order would give each split a marginal p(y) concentrated on a few classes and a score far too low.
    `shuffle=False` keeps the given order."""
    x = np.asarray(logits_or_probs, dtype=np.float64)
    if x.ndim != 2 or len(x) < splits:
        raise UserError(f"need an (N >= {splits}, classes) array for {splits} splits, got shape {x.shape}")
    if shuffle:
        x = x[np.random.RandomState(seed).permutation(len(x))]
    if from_logits:
        x = x - x.max(1, keepdims=True)
        p = np.exp(x)
        p /= p.sum(1, keepdims=True)
    else:
        p = x
    n, scores = len(p), []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(0, keepdims=True)
        kl = (part * (np.log(np.clip(part, 1e-30, None)) - np.log(np.clip(py, 1e-30, None)))).sum(1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def density_coverage(real, fake, k: int = 5) -> dict:
    """Density and coverage (and precision and recall) of `fake` against `real` with k nearest neighbours."""
    try:
        from prdc import compute_prdc
    except ImportError as err:
        raise UserError("density and coverage need the `prdc` package: pip install 'nlkit[metrics]'") from err
    real, fake = np.asarray(real, dtype=np.float32), np.asarray(fake, dtype=np.float32)
    if len(real) <= k or len(fake) <= k:
        raise UserError(f"density/coverage with k = {k} need more than {k} real and fake samples")
    return {key: float(v) for key, v in compute_prdc(real, fake, nearest_k=k).items()}


def classwise(metric, real, real_labels, fake, fake_labels, num_classes: int) -> tuple[float, list]:
    """Average over classes of metric(real of clean class c, fake generated for c); also the per-class values."""
    real_labels, fake_labels = np.asarray(real_labels), np.asarray(fake_labels)
    values = []
    for c in range(num_classes):
        r, f = real[real_labels == c], fake[fake_labels == c]
        values.append(metric(r, f) if len(r) > 1 and len(f) > 1 else float("nan"))
    finite = [v for v in values if np.isfinite(v)]
    return (float(np.mean(finite)) if finite else float("nan")), values
