"""The TDSM loss (docs/tdsm.md §5) and the classifier's losses (§6.2, §6.3).

TDSM regresses the w-mixture of class-conditional denoiser outputs onto the clean image:
    loss_b = lambda(sigma_b) || sum_i w_bi D(x_b; sigma_b, i) - x0_b ||^2
With the official code's choices: only the observed-label branch carries gradient; another class c is evaluated
(without gradient, the network still in train mode so dropout masks are independent) only where w_bc > tau, and the
skipped mass is not renormalised. `full_grad` and `renorm_after_skip` switch these off. With one-hot weights
(S = I) the loss is exactly EDM's.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ...diffusion import loss_weight


def mixture_denoise(denoiser, x: torch.Tensor, sigma: torch.Tensor, noisy: torch.Tensor, weights: torch.Tensor | None,
                    num_classes: int, *, augment_labels=None, tau: float = 0.01, full_grad: bool = False,
                    renorm_after_skip: bool = False, chunk: int | None = None):
    """(D_mix (B, ...), extra_passes (0-d device tensor)). `weights=None` is DSM: the observed label only."""
    onehot = F.one_hot(noisy, num_classes).float()
    d_obs = denoiser(x, sigma, onehot, augment_labels)
    if weights is None:
        return d_obs, torch.zeros((), device=x.device, dtype=torch.long)
    shape = (-1,) + (1,) * (x.ndim - 1)
    w_obs = weights.gather(1, noisy[:, None]).reshape(shape)
    d_mix = w_obs * d_obs
    keep = (weights > tau) & (torch.arange(num_classes, device=x.device)[None] != noisy[:, None])
    # All (sample, class) pairs in one list: the data-dependent size costs one host sync per step, and the
    # extra passes then run as a few large batches instead of up to K-1 small ones.
    rows, cols = keep.nonzero(as_tuple=True)
    chunk = chunk or max(x.shape[0], 1)
    grad = contextlib.nullcontext() if full_grad else torch.no_grad()
    for start in range(0, rows.numel(), chunk):
        r, c = rows[start:start + chunk], cols[start:start + chunk]
        aug = augment_labels.index_select(0, r) if augment_labels is not None else None
        with grad:
            d = denoiser(x.index_select(0, r), sigma.index_select(0, r), F.one_hot(c, num_classes).float(), aug)
        d_mix = d_mix.index_add(0, r, weights[r, c].reshape(shape).to(d.dtype) * d)
    if renorm_after_skip:
        kept = w_obs.flatten() + (weights * keep).sum(1)
        d_mix = d_mix / torch.where(kept > 0, kept, torch.ones_like(kept)).reshape(shape)
    return d_mix, keep.sum()


def tdsm_loss(denoiser, x0: torch.Tensor, noisy: torch.Tensor, weights: torch.Tensor | None, num_classes: int, *,
              sigma: torch.Tensor, noise: torch.Tensor, augment_labels=None, tau: float = 0.01, full_grad: bool = False,
              renorm_after_skip: bool = False, chunk: int | None = None):
    """Per-sample loss (B,) and the number of extra no-grad passes of this batch (device tensor)."""
    x = x0 + sigma * noise
    d_mix, extra = mixture_denoise(denoiser, x, sigma, noisy, weights, num_classes, augment_labels=augment_labels,
                                   tau=tau, full_grad=full_grad, renorm_after_skip=renorm_after_skip, chunk=chunk)
    return (loss_weight(sigma) * (d_mix.float() - x0) ** 2).flatten(1).sum(1), extra


def forward_corrected_ce(logits: torch.Tensor, noisy: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """-log sum_i S[i, y~] softmax(f)_i per sample, in log space (zeros of S give -inf terms, not NaN).
    With S = I it is plain cross-entropy."""
    log_q = torch.log_softmax(logits.float(), 1)
    log_s = S.float().clamp_min(0).log()[:, noisy].T          # log S[i, y~_b], (B, K)
    return -torch.logsumexp(log_q + log_s, 1)


def volmin_loss(logits: torch.Tensor, noisy: torch.Tensor, T: torch.Tensor, lam: float = 1e-4) -> torch.Tensor:
    """VolMinNet: -log((softmax(f) T)[y~] + 1e-12) per sample plus lam * logdet(T) (the volume term)."""
    h = torch.softmax(logits.float(), 1) @ T
    nll = -torch.log(h.gather(1, noisy[:, None]).squeeze(1) + 1e-12)
    return nll + lam * torch.logdet(T)
