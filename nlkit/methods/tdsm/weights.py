"""Transition matrices and the TDSM weights (docs/tdsm.md §2-§5).

S[i, j] = p(noisy = j | clean = i) (rows clean, columns noisy). With a clean prior pi (uniform in the official
code), the reverse matrix is R[j, i] = p(clean = i | noisy = j) = S[i, j] pi_i / sum_k S[k, j] pi_k.

The weights of TDSM for an observed noisy label y~ are w_i(x, y~, sigma) = p_sigma(Y = i | Y~ = y~, x). Two ways to
compute them, equal when the classifier's noisy posterior is S^T q:
- `closed`: w_i = S[i, y~] q_i / sum_k S[k, y~] q_k from the clean posterior q (pi cancels);
- `rinv` (the official code's generic estimator): p(x | Y = i) / p(x) = sum_j Rinv[i, j] h~_j / p(Y~ = j) from the
  noisy posterior h~, then w_i = R[y~, i] (p(x | Y = i) / p(x)) / (h~_y~ / p(Y~ = y~)).
Both are clamped to [0, 1], renormalised per row and NaN set to 0, as coded.
"""

from __future__ import annotations

import numpy as np
import torch

from ...errors import UserError, check_choice, check_rate
from ...noise import check_invertible, transition_matrix

WEIGHT_FORMS = ("rinv", "closed")


def build_transition(kind: str, rate: float, num_classes: int, asym_map: str | None = None) -> np.ndarray:
    """S for a noise setting: `sym`, `asym` (a map such as asym_mnist_tdsm), `clean`/`identity` (S = I), checked
    invertible (TDSM needs S^-1 through R^-1)."""
    kind = {"identity": "clean"}.get(kind, kind)
    check_choice(kind, ("sym", "asym", "clean"), "TDSM transition kind")
    rate = check_rate(rate)
    S = transition_matrix(kind, rate, num_classes, asym_map)
    check_invertible(S)
    return S


def noisy_prior(S: np.ndarray | torch.Tensor, prior=None):
    """p(Y~ = j) = sum_k S[k, j] pi_k (uniform pi by default)."""
    lib = torch if isinstance(S, torch.Tensor) else np
    k = S.shape[0]
    pi = lib.full((k,), 1.0 / k, dtype=S.dtype) if prior is None else prior
    if lib is torch:
        pi = pi.to(S.device)
    return pi @ S


def reverse_matrix(S, prior=None):
    """R[j, i] = S[i, j] pi_i / p(Y~ = j) (rows noisy, each a distribution over the clean class)."""
    lib = torch if isinstance(S, torch.Tensor) else np
    k = S.shape[0]
    pi = lib.full((k,), 1.0 / k, dtype=S.dtype) if prior is None else prior
    if lib is torch:
        pi = pi.to(S.device)
    joint = S * pi[:, None]            # p(Y = i, Y~ = j)
    return (joint / joint.sum(0, keepdims=True) if lib is np else joint / joint.sum(0, keepdim=True)).T


def _finish(w: torch.Tensor) -> torch.Tensor:
    """The code's post-processing: clamp to [0, 1], renormalise each row, NaN -> 0."""
    w = w.clamp(0, 1)
    w = w / w.sum(1, keepdim=True)
    return torch.nan_to_num(w, nan=0.0)


def tdsm_weights(q_clean: torch.Tensor, noisy: torch.Tensor, S: torch.Tensor, form: str = "rinv",
                 h_noisy: torch.Tensor | None = None) -> torch.Tensor:
    """w (B, K) for observed labels `noisy` (B,). `q_clean` is the clean posterior p(Y | x) (softmax of the
    forward-corrected classifier); `h_noisy` the noisy posterior, by default S^T q. Computed in S's dtype."""
    check_choice(form, WEIGHT_FORMS, "TDSM weight form")
    q = q_clean.to(S.dtype)
    if form == "closed":
        num = S[:, noisy].T * q                                    # S[i, y~_b] q_bi
        return _finish(num / num.sum(1, keepdim=True))
    h = q @ S if h_noisy is None else h_noisy.to(S.dtype)          # h~_bj = sum_i S[i, j] q_bi
    R = reverse_matrix(S)
    R_inv = torch.linalg.inv(R)
    p_noisy = noisy_prior(S)
    ratio_noisy = h / p_noisy                                      # p(x | Y~ = j) / p(x)
    ratio_clean = ratio_noisy @ R_inv.T                            # p(x | Y = i) / p(x)
    num = R[noisy] * ratio_clean                                   # R[y~, i] p(x | Y = i) / p(x)
    den = ratio_noisy.gather(1, noisy[:, None])
    return _finish(num / den)


def constant_weights(noisy: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """S-DSM: the instance-independent weights R[y~, :] (the sigma -> infinity limit of TDSM)."""
    return reverse_matrix(S)[noisy]


def weight_entropy(w: torch.Tensor) -> torch.Tensor:
    """Per-row entropy in nats (0 for one-hot weights)."""
    return -(w * w.clamp_min(1e-30).log()).sum(1)


# ---------------------------------------------------------------------------------------------- VolMinNet

def volmin_transition(A: torch.Tensor) -> torch.Tensor:
    """VolMinNet's T = row-L1-normalised(I + (1 - I) sigmoid(A)) (docs/tdsm.md §6.3): row-stochastic by construction."""
    k = A.shape[0]
    eye = torch.eye(k, dtype=A.dtype, device=A.device)
    T = eye + (1 - eye) * torch.sigmoid(A)
    return T / T.sum(1, keepdim=True)


def check_transition(S: np.ndarray) -> np.ndarray:
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise UserError(f"a transition matrix must be square, got shape {S.shape}")
    if (S < 0).any() or not np.allclose(S.sum(1), 1.0, atol=1e-6):
        raise UserError("a transition matrix must be row-stochastic (non-negative rows summing to 1)")
    check_invertible(S)
    return S
