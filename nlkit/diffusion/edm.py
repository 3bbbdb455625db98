"""EDM (Karras et al., NeurIPS 2022): preconditioning, the training noise distribution and loss weight, the
deterministic 2nd-order Heun sampler with class conditioning, and the EMA whose half-life is counted in images.

Images live in [-1, 1]; the noise level sigma is the "time". A denoiser D(x; sigma, y) is
    D = c_skip x + c_out F(c_in x, c_noise, y, aug)
with c_skip = sd^2 / (s^2 + sd^2), c_out = s sd / sqrt(s^2 + sd^2), c_in = 1 / sqrt(s^2 + sd^2),
c_noise = ln(s) / 4 and sd = 0.5.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SIGMA_DATA = 0.5
P_MEAN, P_STD = -1.2, 1.2
SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 80.0, 7.0


def precond_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """(c_skip, c_out, c_in, c_noise) for noise levels `sigma` (any shape)."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1 / (s2 + d2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2: makes the effective training target unit-variance."""
    return (sigma * sigma + sigma_data * sigma_data) / (sigma * sigma_data) ** 2


def sample_sigma(n: int, generator: torch.Generator | None = None, device=None, p_mean: float = P_MEAN,
                 p_std: float = P_STD, normal: torch.Tensor | None = None) -> torch.Tensor:
    """sigma = exp(P_mean + P_std n), n ~ N(0, 1): shape (n, 1, 1, 1) so that it broadcasts over images.
    `normal` gives the standard-normal draws instead (n values)."""
    z = torch.randn(n, 1, 1, 1, generator=generator, device=device) if normal is None else normal.reshape(n, 1, 1, 1)
    return (z * p_std + p_mean).exp()


class EDMPrecond(nn.Module):
    """Wraps a raw network F(x, c_noise, class_labels, augment_labels) into the EDM denoiser D.

    Inputs may be float64 (the sampler works in float64); the network runs in float32 and the output comes back in
    the input's dtype."""

    def __init__(self, model: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.model = model
        self.sigma_data = sigma_data
        self.label_dim = getattr(model, "label_dim", 0)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, class_labels=None, augment_labels=None):
        dtype = x.dtype
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        if sigma.shape[0] == 1 and x.shape[0] != 1:
            sigma = sigma.expand(x.shape[0], 1, 1, 1)
        c_skip, c_out, c_in, c_noise = precond_coefficients(sigma, self.sigma_data)
        labels = None if class_labels is None else class_labels.to(torch.float32)
        f = self.model(c_in * x, c_noise.flatten(), labels, augment_labels)
        return (c_skip * x + c_out * f.to(torch.float32)).to(dtype)


def edm_loss(denoiser, x0: torch.Tensor, labels: torch.Tensor | None, generator=None, augment_labels=None,
             sigma: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample EDM loss lambda(sigma) * sum over pixels of (D(x0 + sigma n) - x0)^2, shape (B,)."""
    if sigma is None:
        sigma = sample_sigma(x0.shape[0], generator, x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
    d = denoiser(x0 + sigma * noise, sigma, labels, augment_labels)
    return (loss_weight(sigma) * (d - x0) ** 2).flatten(1).sum(1)


# ---------------------------------------------------------------------------------------------- sampling

def heun_schedule(num_steps: int = 18, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                  rho: float = RHO, device=None) -> torch.Tensor:
    """sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho for i < N, then sigma_N = 0
    (float64, N + 1 values)."""
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    t = (sigma_max ** (1 / rho) + i / (num_steps - 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64, device=device)])


@torch.no_grad()
def heun_sample(denoiser, latents: torch.Tensor, class_labels: torch.Tensor | None = None, *, num_steps: int = 18,
                sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX, rho: float = RHO, S_churn: float = 0.0,
                S_min: float = 0.0, S_max: float = float("inf"), S_noise: float = 1.0, randn_like=None) -> torch.Tensor:
    """EDM's sampler (Algorithm 2): an Euler step plus a trapezoidal correction, except on the last step: 2N - 1
    denoiser calls (35 for N = 18). `denoiser(x, sigma, labels)`; starts from z * sigma_0 in float64.

    The default S_churn = 0 is the deterministic sampler TDSM uses. With S_churn > 0, steps with
    S_min <= sigma <= S_max first raise the noise to sigma (1 + gamma), gamma = min(S_churn / N, sqrt(2) - 1), with
    fresh noise x S_noise; `randn_like(x)` draws it and, as in EDM, is called once per step (also where gamma = 0)."""
    t_steps = heun_schedule(num_steps, sigma_min, sigma_max, rho, latents.device)
    randn_like = torch.randn_like if randn_like is None else randn_like
    x_next = latents.to(torch.float64) * t_steps[0]
    for i, (t_cur, t_next) in enumerate(zip(t_steps[:-1], t_steps[1:])):
        x_cur = x_next
        t_hat, x_hat = t_cur, x_cur
        if S_churn > 0:
            gamma = min(S_churn / num_steps, math.sqrt(2) - 1) if S_min <= t_cur <= S_max else 0.0
            t_hat = t_cur + gamma * t_cur
            x_hat = x_cur + (t_hat ** 2 - t_cur ** 2).sqrt() * S_noise * randn_like(x_cur)
        d_cur = (x_hat - denoiser(x_hat, t_hat, class_labels).to(torch.float64)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i < num_steps - 1:
            d_prime = (x_next - denoiser(x_next, t_next, class_labels).to(torch.float64)) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next


# ---------------------------------------------------------------------------------------------- EMA

def ema_beta(batch_size: int, nimg: int, half_life_img: float, rampup_ratio: float | None = 0.05) -> float:
    """EDM's EMA decay for one step: beta = 0.5^(B / max(min(half_life, rampup * nimg), 1e-8)). During the ramp-up
    the half-life grows with the images seen, so early weights are forgotten fast."""
    half_life = half_life_img
    if rampup_ratio is not None:
        half_life = min(half_life, nimg * rampup_ratio)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


def learning_rate(base_lr: float, nimg: int, warmup_img: float) -> float:
    """lr x min(nimg / warmup, 1) (EDM's linear warm-up, no decay)."""
    if warmup_img <= 0:
        return base_lr
    return base_lr * min(nimg / warmup_img, 1.0)


def sanitize_gradients(params) -> None:
    """NaN -> 0 and +-inf -> +-1e5 in every gradient before the step, as EDM's training loop does."""
    for p in params:
        if p.grad is not None:
            torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lognormal_moments(p_mean: float = P_MEAN, p_std: float = P_STD) -> tuple[float, float]:
    """Mean and variance of the training sigma (log-normal): for tests and the notebook's text."""
    mean = math.exp(p_mean + p_std ** 2 / 2)
    var = (math.exp(p_std ** 2) - 1) * math.exp(2 * p_mean + p_std ** 2)
    return mean, var
