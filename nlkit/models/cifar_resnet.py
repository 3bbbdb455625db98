"""The CIFAR ResNet-34 used as LRA-Diffusion's image encoder: BasicBlocks, a 3x3 stride-1 stem, no max-pool."""

from __future__ import annotations

import torch
from torch import nn


class _BasicBlock(nn.Module):
    def __init__(self, in_ch, out_ch, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet34(nn.Module):
    """BasicBlock [3,4,6,3], 3x3 stride-1 stem, no max-pool, global average pool, Linear 512 -> out_dim."""

    def __init__(self, out_dim: int = 512, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, in_ch = [], 64
        for out_ch, stride, n in ((64, 1, 3), (128, 2, 4), (256, 2, 6), (512, 2, 3)):
            for i in range(n):
                layers.append(_BasicBlock(in_ch, out_ch, stride if i == 0 else 1))
                in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, out_dim)

    def forward(self, x):
        h = self.layers(self.stem(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))
