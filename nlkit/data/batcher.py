"""Mini-batches cut from a dataset held on the device, with crop/flip augmentation done there too.

Small image datasets (CIFAR: 150 MB as uint8) fit in GPU memory many times over; keeping them there
and augmenting on the GPU removes the DataLoader workers, host->device copies and per-step
synchronisation that otherwise bound the speed of small networks. The same code runs on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError, check_choice

_PADDING_MODES = ("constant", "reflect", "replicate", "circular")
# images padded per chunk when a non-constant mode needs a float copy: bounds the extra memory
_PAD_CHUNK = 4096


@dataclass
class Batch:
    x: torch.Tensor  # float (B, C, H, W), scaled to [0, 1] then normalised
    y: torch.Tensor | None  # int64 (B,) labels, None when the batcher has none
    idx: torch.Tensor  # int64 (B,) indices of the samples in the dataset


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed generator seed for (seed, epoch): nearby pairs give unrelated streams."""
    if seed < 0 or epoch < 0:
        raise UserError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _per_channel(value, channels: int, default: float, what: str) -> torch.Tensor:
    values = [default] * channels if value is None else np.atleast_1d(np.asarray(value, dtype=np.float64)).tolist()
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise UserError(f"{what} needs 1 or {channels} values (one per channel), got {len(values)}")
    return torch.tensor(values, dtype=torch.float64).view(1, channels, 1, 1)


class DeviceBatcher:
    """Iterate over a uint8 (N, H, W, C) image set in mini-batches, entirely on `device`.

    The images are copied to the device once (stored N, C, H, W and, with `crop_padding`, padded
    once). Each epoch draws, from a generator seeded by (seed, epoch) only, a permutation (when
    `shuffle`), a crop offset per sample in [0, 2 * crop_padding] per axis and a flip bit per sample
    (when `flip`): epoch e is the same whenever it is run, so training can resume mid-run. A batch is
    then gathered, cropped and flipped by index, converted to float, divided by 255 and normalised as
    (x - mean) / std, all without waiting on the device.

    With shuffle=False, crop_padding=0 and flip=False it returns the dataset in order (evaluation).
    `labels` may be replaced between epochs (label-correction methods do); batches read it as they
    are cut.
    """

    def __init__(
        self,
        images,
        labels=None,
        *,
        batch_size: int,
        device="cpu",
        shuffle: bool = True,
        drop_last: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        mean=None,
        std=None,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        padding_mode: str = "constant",
    ):
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8:
            raise UserError(f"images must be uint8, got {images.dtype}")
        if images.ndim == 3:  # (N, H, W) greyscale
            images = images.unsqueeze(-1)
        if images.ndim != 4:
            raise UserError(f"images must be (N, H, W, C), got shape {tuple(images.shape)}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
        if int(crop_padding) != crop_padding or crop_padding < 0:
            raise UserError(f"crop_padding must be a non-negative integer, got {crop_padding!r}")
        check_choice(padding_mode, _PADDING_MODES, "padding mode")
        if not dtype.is_floating_point:
            raise UserError(f"dtype must be a floating-point type, got {dtype}")

        self.device = torch.device(device)
        self.num_samples, self.height, self.width, self.channels = (int(s) for s in images.shape)
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last, self.flip = bool(shuffle), bool(drop_last), bool(flip)
        self.crop_padding, self.padding_mode = int(crop_padding), padding_mode
        self.seed = int(seed)
        epoch_seed(self.seed, 0)  # validates the seed now rather than at the first epoch
        self.channels_last, self.dtype = bool(channels_last), dtype
        self.next_epoch = 0

        # move first, then permute: the layout change runs on the device
        self._images = self._pad(images.to(self.device).permute(0, 3, 1, 2).contiguous())
        mean_t = _per_channel(mean, self.channels, 0.0, "mean")
        std_t = _per_channel(std, self.channels, 1.0, "std")
        if not torch.all(std_t > 0):
            raise UserError(f"std must be positive, got {std}")
        # (x / 255 - mean) / std folded into one multiply-add: x * scale + shift
        self._scale = (1.0 / (255.0 * std_t)).to(self.device, torch.float32)
        self._shift = (-mean_t / std_t).to(self.device, torch.float32)
        self._rows = torch.arange(self.height, device=self.device)
        self._cols = torch.arange(self.width, device=self.device)
        self.labels = labels

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        p = self.crop_padding
        if p == 0:
            return images
        if self.padding_mode == "constant":  # zeros, like torchvision's RandomCrop(padding=p)
            return F.pad(images, (p, p, p, p))
        # reflect/replicate/circular padding is only implemented for floats; uint8 values survive the round trip
        n, c, h, w = images.shape
        padded = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=torch.uint8, device=images.device)
        for start in range(0, n, _PAD_CHUNK):
            chunk = images[start : start + _PAD_CHUNK].float()
            padded[start : start + _PAD_CHUNK] = F.pad(chunk, (p, p, p, p), mode=self.padding_mode).to(torch.uint8)
        return padded

    @property
    def labels(self) -> torch.Tensor | None:
        return self._labels

    @labels.setter
    def labels(self, value) -> None:
        if value is None:
            self._labels = None
            return
        labels = torch.as_tensor(value)
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise UserError(f"labels must be integers, got {labels.dtype}")
        if tuple(labels.shape) != (self.num_samples,):
            raise UserError(f"labels must have shape ({self.num_samples},), got {tuple(labels.shape)}")
        self._labels = labels.to(device=self.device, dtype=torch.int64)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        # the epoch is claimed when iteration starts, not when its first batch is taken
        epoch = self.next_epoch
        self.next_epoch += 1
        return self.epoch(epoch)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch `epoch`; its randomness depends only on (seed, epoch)."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(epoch_seed(self.seed, epoch))
        return self._batches(generator)

    def _batches(self, generator: torch.Generator) -> Iterator[Batch]:
        n, device = self.num_samples, self.device
        if self.shuffle:
            order = torch.randperm(n, generator=generator, device=device)
        else:
            order = torch.arange(n, device=device)
        offsets = flips = None
        if self.crop_padding:
            offsets = torch.randint(0, 2 * self.crop_padding + 1, (n, 2), generator=generator, device=device)
        if self.flip:
            flips = torch.rand(n, generator=generator, device=device) < 0.5
        for b in range(len(self)):
            part = slice(b * self.batch_size, min((b + 1) * self.batch_size, n))
            idx = order[part]
            x = self._cut(idx, None if offsets is None else offsets[part], None if flips is None else flips[part])
            y = None if self._labels is None else self._labels.index_select(0, idx)
            yield Batch(x=x, y=y, idx=idx)

    def gather(self, idx: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The images at `idx` (int64 on the device) as a float batch, with a fresh crop offset and flip bit per
        row drawn from `generator` when the batcher augments: one call per augmented view. For samplers that
        choose their own indices (subsets, several views of one sample); `epoch` remains the way to walk a
        whole dataset."""
        b, device = idx.shape[0], self.device
        offsets = flips = None
        if self.crop_padding:
            offsets = torch.randint(0, 2 * self.crop_padding + 1, (b, 2), generator=generator, device=device)
        if self.flip:
            flips = torch.rand(b, generator=generator, device=device) < 0.5
        return self._cut(idx, offsets, flips)

    def _cut(self, idx: torch.Tensor, offsets, flips) -> torch.Tensor:
        x = self._images.index_select(0, idx)
        if offsets is not None or flips is not None:
            x = self._crop_and_flip(x, offsets, flips)
        x = torch.addcmul(self._shift, x.to(torch.float32), self._scale)
        if self.dtype != torch.float32:
            x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _crop_and_flip(self, x: torch.Tensor, offsets, flips) -> torch.Tensor:
        """Per-sample crop window and mirror, as index gathers (no branching on tensor values)."""
        b, c = x.shape[0], x.shape[1]
        if offsets is not None:
            rows = offsets[:, :1] + self._rows  # (B, H): rows of the padded image to keep
            cols = offsets[:, 1:] + self._cols  # (B, W)
            x = x.gather(2, rows[:, None, :, None].expand(b, c, self.height, x.shape[3]))
        else:
            cols = self._cols.expand(b, self.width)
        if flips is not None:
            # reading a window's columns backwards mirrors it
            cols = torch.where(flips[:, None], cols.flip(1), cols)
        return x.gather(3, cols[:, None, None, :].expand(b, c, self.height, self.width))
