"""The training engine shared by the paper methods: device-resident data, bf16 autocast, channels_last,
foreach SGD, a sync-free EMA ("momentum model"), optional torch.compile and resumable checkpoints."""

from .checkpoint import Checkpointer
from .ema import EMA
from .engine import Trainer, autocast_for, default_device, predict

__all__ = ["EMA", "Checkpointer", "Trainer", "autocast_for", "default_device", "predict"]
