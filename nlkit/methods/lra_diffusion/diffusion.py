"""The diffusion maths of LRA-Diffusion over one-hot label vectors: beta schedules, antithetic timesteps,
deterministic DDIM sampling from y_T = 0, the decode rule and the learning-rate schedule."""

from __future__ import annotations

import math

import torch

from ...errors import check_choice

T_STEPS = 1000


# ---------------------------------------------------------------------------------------------- diffusion maths

def beta_schedule(kind: str = "cosine", steps: int = T_STEPS, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Betas (float64): cosine (Nichol & Dhariwal, s = 0.008, beta clipped at 0.999) or linear start..end."""
    check_choice(kind, ("cosine", "linear"), "beta schedule")
    if kind == "linear":
        return torch.linspace(start, end, steps, dtype=torch.float64)
    s = 0.008
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


def alphas_cumprod(kind: str = "cosine") -> torch.Tensor:
    return torch.cumprod(1 - beta_schedule(kind), dim=0)


def antithetic_timesteps(batch: int, generator=None, device="cpu") -> torch.Tensor:
    """floor(B/2)+1 draws t ~ U{0..999}, concatenated with 999 - t, truncated to B (lower-variance loss)."""
    t = torch.randint(0, T_STEPS, (batch // 2 + 1,), generator=generator, device=device)
    return torch.cat([t, T_STEPS - 1 - t])[:batch]


def training_draws(batch: int, num_classes: int, generator=None, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A training step's draws, in this order from one generator: antithetic timesteps, then the forward-process
    noise (B x C). One function so that a golden test can hand in the original's draws."""
    t = antithetic_timesteps(batch, generator, device)
    return t, torch.randn((batch, num_classes), generator=generator, device=device)


def q_sample(y0: torch.Tensor, alphas_bar: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The forward process with f_q = 0: y_t = sqrt(a_t) y0 + sqrt(1 - a_t) noise."""
    a = alphas_bar.index_select(0, t)[:, None]
    return a.sqrt() * y0 + (1 - a).sqrt() * noise


def weighted_eps_loss(eps_hat: torch.Tensor, eps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i mean_c (eps_hat - eps)^2: the per-sample noise MSE weighted by the retrieval weights."""
    return (weights * (eps_hat.float() - eps).pow(2).mean(1)).sum()


DDIM_TIMESTEPS = (901, 801, 701, 601, 501, 401, 301, 201, 101, 1)


@torch.no_grad()
def ddim_sample(eps_fn, shape, alphas_bar: torch.Tensor, timesteps=DDIM_TIMESTEPS, y_T=None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from the prior mean y_T = 0: y0_hat = (y_t - sqrt(1-a_t) eps)/sqrt(a_t);
    y_prev = sqrt(a_prev) y0_hat + sqrt(1-a_prev) eps. The last step goes to a_0 (t = 0)."""
    a = alphas_bar.to(torch.float32)
    y = torch.zeros(shape, device=a.device) if y_T is None else y_T
    ts = list(timesteps)
    for i, t in enumerate(ts):
        prev = ts[i + 1] if i + 1 < len(ts) else 0
        eps = eps_fn(y, torch.full((shape[0],), t, device=a.device, dtype=torch.long)).float()
        y0 = (y - (1 - a[t]).sqrt() * eps) / a[t].sqrt()
        y = a[prev].sqrt() * y0 + (1 - a[prev]).sqrt() * eps
    return y


def decode(y: torch.Tensor, rule: str = "closest_to_one") -> torch.Tensor:
    """The class of a generated label vector: the component closest to 1 (the code's rule), or the argmax."""
    check_choice(rule, ("closest_to_one", "argmax"), "decode rule")
    return (y - 1).pow(2).argmin(1) if rule == "closest_to_one" else y.argmax(1)


def learning_rate(epoch: float, peak: float = 1e-3, warmup: float = 5, horizon: float = 1000) -> float:
    """Linear warm-up to `peak`, then half-cosine over a fixed horizon (the code's 1000 epochs, whatever the run
    length): 0.998e-3 at epoch 30, 0.908e-3 at epoch 200."""
    if epoch < warmup:
        return peak * epoch / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / (horizon - warmup)))
