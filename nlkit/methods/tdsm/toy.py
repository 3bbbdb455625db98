"""The 2-D Gaussian-mixture toy (docs/tdsm.md §14 smoke (a), §15.5-6): everything is analytic except the score model.

Clean class i is N(mu_i, v I). Under the EDM forward process p_sigma(x | Y = i) = N(mu_i, (v + sigma^2) I), so the
clean posterior q(x, sigma) and hence the exact TDSM weights are known, and so are the clean denoisers
D_i(x) = mu_i + v / (v + sigma^2) (x - mu_i). A small MLP denoiser is trained with DSM (noisy labels), S-DSM and TDSM
(exact weights) on the same loop; TDSM's samples for class c land on mu_c, DSM's on the noisy mixture R[c, :].
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...diffusion import EDMPrecond, heun_sample, learning_rate, sample_sigma
from ...diffusion.unet import PositionalEmbedding
from ...noise import make_noise
from ...train import TrainLoop
from .objective import tdsm_loss
from .weights import constant_weights, tdsm_weights


def toy_means(num_classes: int = 3, radius: float = 0.6) -> np.ndarray:
    angles = 2 * np.pi * np.arange(num_classes) / num_classes + np.pi / 2
    return radius * np.stack([np.cos(angles), np.sin(angles)], 1)


@dataclass
class ToyData:
    x: np.ndarray          # (N, 2)
    clean: np.ndarray
    noisy: np.ndarray
    means: np.ndarray
    var: float
    S: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.means)


def make_toy(n: int = 6000, num_classes: int = 3, rate: float = 0.4, var: float = 0.01, seed: int = 0,
             radius: float = 0.6) -> ToyData:
    from .weights import build_transition

    rng = np.random.default_rng(seed)
    means = toy_means(num_classes, radius)
    clean = rng.integers(0, num_classes, n)
    x = means[clean] + math.sqrt(var) * rng.standard_normal((n, 2))
    noisy = make_noise(clean, "sym", rate, num_classes, seed + 1).noisy
    return ToyData(x.astype(np.float32), clean, noisy, means, var, build_transition("sym", rate, num_classes))


def clean_posterior(x: torch.Tensor, sigma: torch.Tensor, means: torch.Tensor, var: float) -> torch.Tensor:
    """q_i(x, sigma) = p_sigma(Y = i | x) for the mixture with a uniform prior (x: (B, 2), sigma: (B,))."""
    s2 = (var + sigma.to(torch.float64) ** 2)[:, None]
    d2 = ((x.to(torch.float64)[:, None, :] - means.to(torch.float64)[None]) ** 2).sum(-1)
    return torch.softmax(-d2 / (2 * s2), 1)


def noisy_log_density(x: torch.Tensor, sigma: float, noisy_label: int, means: torch.Tensor, var: float,
                      R: torch.Tensor) -> torch.Tensor:
    """log p_sigma(x | Y~ = y~) = log sum_i R[y~, i] N(x; mu_i, (v + sigma^2) I), float64."""
    s2 = var + sigma ** 2
    d2 = ((x.to(torch.float64)[:, None, :] - means.to(torch.float64)[None]) ** 2).sum(-1)
    log_n = -d2 / (2 * s2) - math.log(2 * math.pi * s2)
    return torch.logsumexp(log_n + R[noisy_label].to(torch.float64).clamp_min(1e-300).log()[None], 1)


def clean_denoisers(x: torch.Tensor, sigma: float, means: torch.Tensor, var: float) -> torch.Tensor:
    """D_i(x) for every class: (B, K, 2)."""
    shrink = var / (var + sigma ** 2)
    return means[None] + shrink * (x[:, None, :] - means[None])


class ToyMLP(nn.Module):
    """F(x, c_noise, y): an MLP on [x, embedding(c_noise) + Linear(one-hot)] for 2-D points stored as (B, 2, 1, 1)."""

    def __init__(self, num_classes: int, hidden: int = 128, emb: int = 32):
        super().__init__()
        self.label_dim = num_classes
        self.embed = PositionalEmbedding(emb)
        self.label = nn.Linear(num_classes, emb)
        self.net = nn.Sequential(nn.Linear(2 + emb, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2))

    def forward(self, x, noise_labels, class_labels, augment_labels=None):
        e = F.silu(self.embed(noise_labels) + self.label(class_labels))
        return self.net(torch.cat([x.flatten(1), e], 1)).reshape(x.shape)


def train_toy(data: ToyData, method: str, *, steps: int = 1500, batch: int = 512, lr: float = 2e-3, seed: int = 0,
              tau: float = 0.01, progress: bool = False):
    """One toy denoiser by DSM, S-DSM or TDSM (exact weights); returns (denoiser, extra passes per sample, seconds)."""
    torch.manual_seed(seed)
    k = data.num_classes
    net = EDMPrecond(ToyMLP(k))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_all = torch.as_tensor(data.x)[:, :, None, None]
    noisy = torch.as_tensor(data.noisy)
    means = torch.as_tensor(data.means, dtype=torch.float64)
    S = torch.as_tensor(data.S, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 1)
    extra_total = torch.zeros((), dtype=torch.long)
    t0 = time.perf_counter()
    steps_per_tick = 100
    ticks = max(1, steps // steps_per_tick)

    def tick(epoch):
        nonlocal extra_total
        for i in range(steps_per_tick):
            step = (epoch - 1) * steps_per_tick + i
            idx = torch.randint(0, len(x_all), (batch,), generator=gen)
            x0, y = x_all[idx], noisy[idx]
            sigma = sample_sigma(batch, gen)
            noise = torch.randn(x0.shape, generator=gen)
            if method == "dsm":
                w = None
            elif method == "sdsm":
                w = constant_weights(y, S).float()
            else:
                q = clean_posterior((x0 + sigma * noise).flatten(1), sigma.flatten(), means, data.var)
                w = tdsm_weights(q, y, S, "closed").float()
            loss, extra = tdsm_loss(net, x0, y, w, k, sigma=sigma, noise=noise, tau=tau)
            for g in opt.param_groups:
                g["lr"] = learning_rate(lr, step + 1, steps * 0.05)
            opt.zero_grad(set_to_none=True)
            loss.mean().backward()
            opt.step()
            extra_total += extra
        return {"loss": float(loss.detach().mean())}

    TrainLoop(None, epochs=ticks, desc=f"toy {method}", progress=progress).run(tick, lambda: {}, lambda s: None)
    return net.eval(), float(extra_total) / (ticks * steps_per_tick * batch), time.perf_counter() - t0


@torch.no_grad()
def sample_toy(net, num_classes: int, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    latents = torch.randn(len(labels), 2, 1, 1, generator=torch.Generator().manual_seed(seed))
    x = heun_sample(net, latents, F.one_hot(labels, num_classes).float())
    return x.flatten(1).float().numpy(), labels.numpy()


def toy_scores(samples: np.ndarray, labels: np.ndarray, data: ToyData) -> dict:
    """Per class: the distance of the sample mean to the clean mean, and the share of samples whose Bayes-optimal
    clean class is the requested one (label consistency with an exact evaluator)."""
    k = data.num_classes
    d2 = ((samples[:, None, :] - data.means[None]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    mean_err = [float(np.linalg.norm(samples[labels == c].mean(0) - data.means[c])) for c in range(k)]
    return {"mean_error": float(np.mean(mean_err)), "mean_error_per_class": mean_err,
            "label_consistency": float(np.mean(nearest == labels)),
            "label_consistency_per_class": [float(np.mean(nearest[labels == c] == c)) for c in range(k)]}
