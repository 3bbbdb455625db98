"""Noise-level-conditioned ("time-dependent") classifiers f(x_sigma, sigma) -> K logits (docs/tdsm.md §6.1).

The input is preconditioned like the denoiser: c_in x with c_in = 1 / sqrt(sigma^2 + sd^2), and the noise label
c_noise = ln(sigma) / 4 enters through a 128-channel sinusoidal embedding (plus, optionally, the augment labels),
followed by Linear(128, 512) + SiLU and Linear(512, 512) + SiLU. After each stage of the body a Dense(SiLU(emb)) is
added, broadcast over the image. There is no class-label input.

Bodies: the MNIST CNN (two 5x5 convs, 16 and 32 channels, about 0.39M parameters at 32x32) and a ResNet with
BasicBlocks and BatchNorm (ResNet-18 for CIFAR-10, about 12M; ResNet-34 for CIFAR-100).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_choice
from .edm import SIGMA_DATA, precond_coefficients
from .unet import PositionalEmbedding, xavier_init


class NoiseEmbedding(nn.Module):
    """The classifier's noise (and augment-label) embedding; its linear layers are initialised as EDM's `Linear`
    with init_mode='xavier_uniform' (Xavier-uniform weights, zero biases), like the UNet's mapping layers."""

    def __init__(self, augment_dim: int = 0, noise_channels: int = 128, emb_channels: int = 512):
        super().__init__()
        self.map_noise = PositionalEmbedding(noise_channels, endpoint=True, flip=True)
        self.map_augment = xavier_init(nn.Linear(augment_dim, noise_channels, bias=False)) if augment_dim else None
        self.layer0 = xavier_init(nn.Linear(noise_channels, emb_channels))
        self.layer1 = xavier_init(nn.Linear(emb_channels, emb_channels))
        self.emb_channels = emb_channels

    def forward(self, c_noise, augment_labels=None):
        emb = self.map_noise(c_noise)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        return F.silu(self.layer1(F.silu(self.layer0(emb))))


class _MnistBody(nn.Module):
    def __init__(self, in_channels: int, img_resolution: int, num_classes: int, emb_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 5, padding=2)
        self.dense1 = nn.Linear(emb_channels, 16)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.dense2 = nn.Linear(emb_channels, 32)
        self.feature_dim = 32 * (img_resolution // 4) ** 2
        self.head = nn.Linear(self.feature_dim, num_classes)

    def features(self, x, emb):
        e = F.silu(emb)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2) + self.dense1(e)[:, :, None, None]
        x = F.max_pool2d(F.relu(self.conv2(x)), 2) + self.dense2(e)[:, :, None, None]
        return x.flatten(1)


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _ResNetBody(nn.Module):
    LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

    def __init__(self, in_channels: int, img_resolution: int, num_classes: int, emb_channels: int, depth: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        stages, denses, in_ch = [], [], 64
        for width, stride, count in zip((64, 128, 256, 512), (1, 2, 2, 2), self.LAYOUTS[depth]):
            blocks = []
            for i in range(count):
                blocks.append(_BasicBlock(in_ch, width, stride if i == 0 else 1))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
            denses.append(nn.Linear(emb_channels, width))
        self.stages, self.denses = nn.ModuleList(stages), nn.ModuleList(denses)
        self.pool = img_resolution // 8   # 4x4 average pool at 32x32 (8 at 64x64)
        self.feature_dim = 512
        self.head = nn.Linear(512, num_classes)

    def features(self, x, emb):
        e = F.silu(emb)
        x = self.stem(x)
        for stage, dense in zip(self.stages, self.denses):
            x = stage(x) + dense(e)[:, :, None, None]
        return F.avg_pool2d(x, self.pool).flatten(1)


class NoiseConditionalClassifier(nn.Module):
    """logits = head(body(c_in x, emb(c_noise, aug))). `features()` gives the penultimate representation."""

    def __init__(self, body: str, *, num_classes: int, in_channels: int, img_resolution: int, augment_dim: int = 0,
                 sigma_data: float = SIGMA_DATA):
        super().__init__()
        check_choice(body, CLASSIFIER_ARCHS, "noise-conditional classifier")
        self.sigma_data = sigma_data
        self.embed = NoiseEmbedding(augment_dim)
        if body == "cnn_mnist":
            self.body = _MnistBody(in_channels, img_resolution, num_classes, self.embed.emb_channels)
        else:
            depth = 18 if body == "resnet18_cond" else 34
            self.body = _ResNetBody(in_channels, img_resolution, num_classes, self.embed.emb_channels, depth)

    def features(self, x, sigma, augment_labels=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        if sigma.shape[0] == 1 and x.shape[0] != 1:
            sigma = sigma.expand(x.shape[0])
        _, _, c_in, c_noise = precond_coefficients(sigma, self.sigma_data)
        emb = self.embed(c_noise, augment_labels)
        return self.body.features(c_in[:, None, None, None] * x.to(torch.float32), emb)

    def forward(self, x, sigma, augment_labels=None):
        return self.body.head(self.features(x, sigma, augment_labels))


CLASSIFIER_ARCHS = ("cnn_mnist", "resnet18_cond", "resnet34_cond")


def build_classifier(arch: str, **kwargs) -> NoiseConditionalClassifier:
    return NoiseConditionalClassifier(arch, **kwargs)
