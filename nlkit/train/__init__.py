"""The training machinery shared by the paper methods: one resumable epoch loop (`TrainLoop`), device-resident
data, bf16 autocast, channels_last, foreach SGD, a sync-free EMA ("momentum model") and safe checkpoints."""

from .checkpoint import Checkpointer
from .ema import EMA
from .engine import Trainer, autocast_for, default_device, predict
from .loop import LoopResult, TrainingStopped, TrainLoop, run_identity

__all__ = ["EMA", "Checkpointer", "LoopResult", "TrainLoop", "Trainer", "TrainingStopped", "autocast_for",
           "default_device", "predict", "run_identity"]
