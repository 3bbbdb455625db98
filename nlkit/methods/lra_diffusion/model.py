"""LRA-Diffusion's networks: a CARD-style gated MLP denoiser eps(x_embed, y_t, f_p, t) and the image
embedding (a CIFAR ResNet-34 trained jointly, or a linear map of cached features)."""

from __future__ import annotations

import torch
from torch import nn

from ...errors import check_choice
from ...models import CifarResNet34
from .diffusion import T_STEPS


class GatedLinear(nn.Module):
    """Linear layer whose output is gated by a learned per-timestep vector (CARD's conditional layer)."""

    def __init__(self, n_in: int, n_out: int, steps: int = T_STEPS + 1):
        super().__init__()
        self.lin = nn.Linear(n_in, n_out)
        self.gamma = nn.Embedding(steps, n_out)
        nn.init.uniform_(self.gamma.weight, 0, 1)

    def forward(self, x, t):
        return self.gamma(t) * self.lin(x)


class ConditionalDenoiser(nn.Module):
    """eps_theta(x_embed, y_t, f_p, t): x_n = BN(x_embed); h = softplus(BN(g1(t)*L([y_t; f_p]))) * x_n;
    two more gated layers; a linear output (docs/lra-diffusion.md §2.4)."""

    def __init__(self, num_classes: int, feature_dim: int, hidden: int = 512, embed_dim: int | None = None):
        super().__init__()
        self.norm_x = nn.BatchNorm1d(embed_dim or hidden)
        self.l1, self.l2, self.l3 = (GatedLinear(num_classes + feature_dim, hidden), GatedLinear(hidden, hidden),
                                     GatedLinear(hidden, hidden))
        self.b1, self.b2, self.b3 = nn.BatchNorm1d(hidden), nn.BatchNorm1d(hidden), nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x_embed, y_t, fp, t):
        h = nn.functional.softplus(self.b1(self.l1(torch.cat([y_t, fp], 1), t))) * self.norm_x(x_embed)
        h = nn.functional.softplus(self.b2(self.l2(h, t)))
        h = nn.functional.softplus(self.b3(self.l3(h, t)))
        return self.out(h)


class FeatureEmbedding(nn.Module):
    """The cached-features variant's image embedding: Linear(f_p) (normalised by the denoiser's BN)."""

    def __init__(self, feature_dim: int, out_dim: int):
        super().__init__()
        self.lin = nn.Linear(feature_dim, out_dim)

    def forward(self, fp):
        return self.lin(fp)


class LRAModel(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int, hidden: int = 512, image_encoder: str = "resnet34",
                 in_channels: int = 3):
        super().__init__()
        check_choice(image_encoder, ("resnet34", "none"), "image encoder")
        self.image_encoder = image_encoder
        self.encoder = (CifarResNet34(hidden, in_channels) if image_encoder == "resnet34"
                        else FeatureEmbedding(feature_dim, hidden))
        self.denoiser = ConditionalDenoiser(num_classes, feature_dim, hidden)

    def embed(self, x, fp):
        return self.encoder(x) if self.image_encoder == "resnet34" else self.encoder(fp)
