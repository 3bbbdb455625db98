"""InstanceGM's generative module (from CausalNL, with a continuous-Bernoulli likelihood): for each DivideMix
network, an encoder q(Z | X, Y), a decoder p(X | Z, Y) and a noisy-label classifier p(Ŷ | X̂, Y).

Layouts follow the InstanceGM code (mylib/models/encoders.py: CONV_Encoder_CIFAR, CONV_Decoder_CIFAR,
CONV_T_Decoder; the ANIMAL variants for 64x64 images), generalised to any square power-of-two image size so that
the same module runs on 8x8 digits in the smoke profile. The unused `y_encoder` ResNet of the code is never built:
it got no gradients there (docs/instancegm.md §3.2, §10 #5).

The forward pass and the loss keep the released code's behaviour by default; each known deviation from the paper
is a named switch (docs/instancegm.md §9, §10): `eps_dist` (uniform reparameterisation noise), `double_sigmoid`
(the decoder's sigmoid applied twice), `kl_reduction` (KL summed over the batch), `t_decoder_input` (the noisy
classifier reads the reconstruction).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UserError, check_choice

HIDDEN = (32, 64, 128, 256)
CB_LIMS = (0.499, 0.501)   # torch.distributions.ContinuousBernoulli's unstable region around 0.5


# ---------------------------------------------------------------------------------------------- likelihood

def cb_log_norm(lam: torch.Tensor, lims=CB_LIMS) -> torch.Tensor:
    """log C(λ), C(λ) = 2 artanh(1 - 2λ) / (1 - 2λ) (C(0.5) = 2), with torch's Taylor expansion near 0.5."""
    outside = (lam <= lims[0]) | (lam > lims[1])
    cut = torch.where(outside, lam, torch.full_like(lam, lims[0]))
    log_norm = torch.log(torch.abs(torch.log1p(-cut) - torch.log(cut))) - torch.where(
        cut <= 0.5, torch.log1p(-2.0 * torch.where(cut <= 0.5, cut, torch.zeros_like(cut))),
        torch.log(2.0 * torch.where(cut >= 0.5, cut, torch.ones_like(cut)) - 1.0))
    x = (lam - 0.5) ** 2
    taylor = math.log(2.0) + (4.0 / 3.0 + 104.0 / 45.0 * x) * x
    return torch.where(outside, log_norm, taylor)


def cb_log_prob(x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """log CB(x; λ) = x log λ + (1 - x) log(1 - λ) + log C(λ), elementwise, in fp32. Equal to
    torch.distributions.ContinuousBernoulli(probs=λ).log_prob(x) without its argument checks (which would wait
    on the device at every step)."""
    lam = lam.float().clamp(torch.finfo(torch.float32).eps, 1 - torch.finfo(torch.float32).eps)
    x = x.float()
    return x * torch.log(lam) + (1 - x) * torch.log1p(-lam) + cb_log_norm(lam)


def cb_mean(lam: torch.Tensor, lims=CB_LIMS) -> torch.Tensor:
    """E[x] under CB(λ) = λ/(2λ - 1) + 1/(2 artanh(1 - 2λ)), with torch's Taylor expansion near 0.5 (computed in
    float64: the two terms cancel there). What a reconstruction looks like, for figures."""
    lam = lam.double().clamp(1e-6, 1 - 1e-6)
    outside = (lam <= lims[0]) | (lam > lims[1])
    cut = torch.where(outside, lam, torch.full_like(lam, lims[0]))
    exact = cut / (2 * cut - 1) + 1 / (torch.log1p(-cut) - torch.log(cut))
    d = lam - 0.5
    taylor = 0.5 + (1 / 3 + 16 / 45 * d ** 2) * d
    return torch.where(outside, exact, taylor).float()


def gumbel_softmax(logits: torch.Tensor, tau: float = 1.0, generator: torch.Generator | None = None,
                   exponentials: torch.Tensor | None = None) -> torch.Tensor:
    """F.gumbel_softmax(logits, tau, hard=False) with the noise drawn from `generator` (reproducible, resumable);
    `exponentials` supplies the Exp(1) draws instead (Gumbel noise = -log of them), e.g. a golden's."""
    if exponentials is None:
        exponentials = torch.empty_like(logits).exponential_(generator=generator)
    gumbels = -exponentials.to(logits).log()
    return torch.softmax((logits + gumbels) / tau, dim=-1)


# ---------------------------------------------------------------------------------------------- networks

def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.BatchNorm2d(cout), nn.LeakyReLU())


def _up_block(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    if kernel == 3:
        conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
    else:  # the Animal-10N decoder's extra 2x2 stage
        conv = nn.ConvTranspose2d(cin, cout, 2, stride=2)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.LeakyReLU())


def _check_size(image_size: int) -> int:
    if image_size < 4 or image_size & (image_size - 1):
        raise UserError(f"the generative module needs square power-of-two images (8, 16, 32, 64, ...), "
                        f"got {image_size}")
    return image_size


class _Conditioned(nn.Module):
    """The layout the encoder and the noisy-label classifier share: y (soft one-hot) -> Linear(C, H*W) as one
    extra image plane; x -> Conv1x1; concatenated; four stride-2 conv blocks (32, 64, 128, 256); flattened."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int):
        super().__init__()
        self.in_channels, self.image_size = in_channels, _check_size(image_size)
        self.embed_class = nn.Linear(num_classes, image_size * image_size)
        self.embed_data = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        blocks, c = [], in_channels + 1
        for h in HIDDEN:
            blocks.append(_conv_block(c, h))
            c = h
        self.encoder = nn.Sequential(*blocks)
        side = image_size
        for _ in HIDDEN:
            side = (side + 1) // 2
        self.flat_dim = HIDDEN[-1] * side * side

    def _features(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        data = self.embed_data(x)
        plane = self.embed_class(y).view(-1, 1, self.image_size, self.image_size)
        h = torch.cat([data, plane.to(data.dtype)], dim=1)
        return torch.flatten(self.encoder(h), start_dim=1)


class Encoder(_Conditioned):
    """q(Z | X, Y): μ and log σ² (z_dim each)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, z_dim: int):
        super().__init__(in_channels, image_size, num_classes)
        self.fc_mu = nn.Linear(self.flat_dim, z_dim)
        self.fc_logvar = nn.Linear(self.flat_dim, z_dim)

    def forward(self, x, y):
        h = self._features(x, y)
        return self.fc_mu(h), self.fc_logvar(h)


class NoisyLabelClassifier(_Conditioned):
    """p(Ŷ | X̂, Y): logits of the noisy label from an image (the reconstruction, by default) and the clean label."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int):
        super().__init__(in_channels, image_size, num_classes)
        self.fc = nn.Linear(self.flat_dim, num_classes)

    def forward(self, x, y):
        return self.fc(self._features(x, y))


class Decoder(nn.Module):
    """p(X | Z, Y): [z; y] -> Linear -> 256 x 2 x 2 -> transposed-conv stages doubling the side up to the image size
    (CIFAR: 256 -> 128 -> 64 -> 32 -> 32; 64x64 adds a 2x2 stage) -> Conv3x3 -> Sigmoid."""

    def __init__(self, out_channels: int, image_size: int, num_classes: int, z_dim: int):
        super().__init__()
        _check_size(image_size)
        doublings = int(math.log2(image_size // 2))
        widths = (256, 128, 64, 32)
        n_blocks = min(3, doublings - 1)
        self.decoder_input = nn.Linear(z_dim + num_classes, widths[0] * 4)
        self.decoder = nn.Sequential(*[_up_block(widths[i], widths[i + 1]) for i in range(n_blocks)])
        final = [_up_block(widths[n_blocks], 32)]
        final += [_up_block(32, 32, kernel=2) for _ in range(doublings - 1 - n_blocks)]
        self.final_layer = nn.Sequential(*final, nn.Conv2d(32, out_channels, 3, padding=1), nn.Sigmoid())

    def forward(self, z, y):
        out = self.decoder_input(torch.cat([z, y.to(z.dtype)], dim=1)).view(-1, 256, 2, 2)
        return self.final_layer(self.decoder(out))


EPS_DISTS = ("uniform", "normal")
KL_REDUCTIONS = ("sum", "mean")
T_INPUTS = ("xhat", "x")


class GenerativeModule(nn.Module):
    """One network's generative side: encoder (z_encoder), decoder (x_decoder), noisy-label classifier (t_decoder)."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, z_dim: int = 25):
        super().__init__()
        self.num_classes, self.z_dim = num_classes, z_dim
        self.z_encoder = Encoder(in_channels, image_size, num_classes, z_dim)
        self.x_decoder = Decoder(in_channels, image_size, num_classes, z_dim)
        self.t_decoder = NoisyLabelClassifier(in_channels, image_size, num_classes)

    def forward(self, x: torch.Tensor, c_logits: torch.Tensor, generator: torch.Generator | None = None, *,
                eps_dist: str = "uniform", double_sigmoid: bool = True, t_decoder_input: str = "xhat",
                tau: float = 1.0, exponentials: torch.Tensor | None = None,
                eps: torch.Tensor | None = None) -> dict:
        """The code's VAE forward given the DivideMix network's logits c (with their gradient): y = Gumbel-softmax
        sample of c; (μ, log σ²) = Enc(x, y); z = μ + ε σ; λ = Dec(z, y) (then a second sigmoid by default);
        noisy logits = Cls(λ or x, y). `exponentials` (the Gumbel sample's Exp(1) draws) and `eps` replace the
        random draws when given (goldens)."""
        y = gumbel_softmax(c_logits.float(), tau, generator, exponentials)
        mu, logvar = self.z_encoder(x, y)
        std = torch.exp(0.5 * logvar)
        if eps is not None:
            eps = eps.to(std)
        elif eps_dist == "uniform":   # U[0, 1) as coded (CausalNL's rand_like)
            eps = torch.rand(std.shape, generator=generator, device=std.device, dtype=std.dtype)
        else:
            eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
        z = mu + eps * std
        lam = self.x_decoder(z, y)
        if double_sigmoid:
            lam = torch.sigmoid(lam)
        n_logits = self.t_decoder(lam if t_decoder_input == "xhat" else x, y)
        return {"y": y, "mu": mu, "logvar": logvar, "z": z, "lam": lam, "n_logits": n_logits}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, c_logits: torch.Tensor, double_sigmoid: bool = True) -> dict:
        """Deterministic reconstruction for figures: y = softmax(c), z = μ; returns λ and the CB mean E[x | λ]."""
        y = torch.softmax(c_logits.float(), dim=1)
        mu, _ = self.z_encoder(x, y)
        lam = self.x_decoder(mu, y)
        lam = torch.sigmoid(lam) if double_sigmoid else lam
        return {"lam": lam.float(), "mean": cb_mean(lam)}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None,
               double_sigmoid: bool = True) -> dict:
        """Images generated for given clean labels with z ~ N(0, I): λ and the CB mean."""
        y = F.one_hot(labels, self.num_classes).float()
        z = torch.randn(len(labels), self.z_dim, generator=generator, device=labels.device)
        lam = self.x_decoder(z, y)
        lam = torch.sigmoid(lam) if double_sigmoid else lam
        return {"lam": lam.float(), "mean": cb_mean(lam)}


def generative_state_from_original(state: dict) -> dict:
    """Map a state dict of the InstanceGM code's VAE (mylib/models/vae.py VAE_CIFAR10 / VAE_CIFAR100 / VAE_ANIMAL)
    onto `GenerativeModule`: the never-called `y_encoder` is dropped; the decoder's flat `final_layer` (ConvT, BN,
    LeakyReLU [, ConvT, BN, LeakyReLU], Conv, Sigmoid) becomes the kit's [up-blocks..., Conv, Sigmoid]; every other
    name is the same."""
    finals = [int(k.split(".")[2]) for k in state if k.startswith("x_decoder.final_layer.")]
    last_conv = max(finals) if finals else 0
    mapped = {}
    for key, value in state.items():
        if key.startswith("y_encoder."):
            continue
        if key.startswith("x_decoder.final_layer."):
            _, _, index, rest = key.split(".", 3)
            k = int(index)
            key = (f"x_decoder.final_layer.{k // 3}.{k % 3}.{rest}" if k < last_conv
                   else f"x_decoder.final_layer.{last_conv // 3}.{rest}")
        mapped[key] = value
    return mapped


def log_standard_categorical(y: torch.Tensor) -> torch.Tensor:
    """The code's 'uniform prior' term: mean over the batch of -sum_c y_c log(1/C + 1e-8). As Σ_c y_c = 1 it is the
    constant log C (no gradient): the paper's KL(q(Y|X) || p(Y)) is effectively absent (§10 #3 of the docs)."""
    prior = torch.softmax(torch.ones_like(y), dim=1)
    return torch.mean(-torch.sum(y * torch.log(prior + 1e-8), dim=1))


def vae_loss(out: dict, x: torch.Tensor, noisy: torch.Tensor, *, recon_weight: float = 1.0,
             noisy_ce_weight: float = 1.0, prior_weight: float = -1e-5, kl_weight: float = -3e-4,
             kl_reduction: str = "sum") -> tuple[torch.Tensor, dict]:
    """L_VAE = l1 + l2 + l3 + l4 as the code computes it (CIFAR weights by default):
    l1 = recon_weight * mean over N x C x H x W of -log CB(x; λ)   (a per-pixel mean; may be negative);
    l2 = noisy_ce_weight * CE(noisy logits, given label);
    l3 = prior_weight * log_standard_categorical(y)               (a constant);
    l4 = kl_weight * Σ (1 + log σ² - μ² - σ²)                     (= -2 kl_weight Σ_n KL(q(z|x,y) || N(0, I)),
    summed over the batch; kl_reduction="mean" sums over z and averages over the batch)."""
    check_choice(kl_reduction, KL_REDUCTIONS, "KL reduction")
    l1 = recon_weight * torch.mean(-cb_log_prob(x, out["lam"]))
    l2 = noisy_ce_weight * F.cross_entropy(out["n_logits"].float(), noisy)
    l3 = prior_weight * log_standard_categorical(out["y"])
    mu, logvar = out["mu"].float(), out["logvar"].float()
    terms = 1 + logvar - mu ** 2 - logvar.exp()
    l4 = kl_weight * (terms.sum() if kl_reduction == "sum" else terms.sum(1).mean())
    total = l1 + l2 + l3 + l4
    return total, {"vae": total.detach(), "recon": l1.detach(), "noisy_ce": l2.detach(), "prior": l3.detach(),
                   "kl": l4.detach()}
