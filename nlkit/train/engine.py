"""A small training engine: the loop's hot path runs on the device without host synchronisation.

Per step: a batch gathered and augmented on the device (nlkit.data.DeviceBatcher), a forward pass under bf16
autocast where the `bf16` switch resolves to on (nlkit.hardware: a GPU, or a CPU with AMX-BF16/AVX512-BF16), the
method's loss in fp32, a foreach/fused SGD step and a fused EMA update. Statistics are
accumulated in device tensors and read once per epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from ..hardware import Switch, use_bf16, use_channels_last
from .ema import EMA, _unwrap


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast_for(device, enabled: Switch = True):
    """bf16 autocast where the `bf16` switch (False, True or 'auto') resolves to on for `device`
    (nlkit.hardware.use_bf16); plain fp32 otherwise."""
    dev = torch.device(device)
    if use_bf16(enabled, dev):
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict(model: nn.Module, batcher, num_samples: int, num_classes: int, *, bf16: Switch = False,
            epoch: int = 0, log: bool = False) -> torch.Tensor:
    """Softmax probabilities (num_samples x C, fp32, on the device) in dataset index order, or with `log` their
    log-softmax; `epoch` picks the batcher's augmentation draw when it augments."""
    was_training = model.training
    model.eval()
    probs = torch.empty(num_samples, num_classes, device=batcher.device)
    for batch in batcher.epoch(epoch):
        with autocast_for(batcher.device, bf16):
            logits = model(batch.x)
        probs[batch.idx] = (torch.log_softmax if log else torch.softmax)(logits.float(), dim=1)
    model.train(was_training)
    return probs


class Trainer:
    """SGD (+ optional EMA) over a DeviceBatcher; the method supplies the loss.

    loss_fn(logits_fp32, batch) returns per-sample losses (B,); the step minimises their mean. After an epoch,
    `sample_loss` and `sample_pred` hold every training sample's last loss and prediction (device tensors in
    dataset order) for methods that select or re-weight samples.
    """

    def __init__(self, model: nn.Module, *, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 nesterov: bool = False, ema_decay: float | None = None, ema_buffers: bool = True,
                 device: str | None = None, bf16: Switch = False, channels_last: Switch = "auto",
                 compile: bool = False):
        self.device = torch.device(device or default_device())
        self.bf16 = bf16
        model = model.to(self.device)
        # the batcher feeding the model should match: DeviceBatcher(channels_last=trainer.channels_last)
        self.channels_last = use_channels_last(channels_last, self.device, bf16)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = EMA(model, ema_decay, ema_buffers) if ema_decay else None
        cuda = self.device.type == "cuda"
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                                         nesterov=nesterov, foreach=not cuda, fused=cuda or None)
        self.forward = torch.compile(model) if compile else model
        self.epochs_done = 0
        self.sample_loss: torch.Tensor | None = None
        self.sample_pred: torch.Tensor | None = None

    def train_epoch(self, batcher, loss_fn: Callable, references: dict[str, torch.Tensor] | None = None) -> dict:
        """One pass over `batcher`. `references` maps a name to per-sample labels (e.g. the noisy and the clean
        labels); the returned dict holds the mean loss and the training accuracy against each reference."""
        self.model.train()
        references = references or {}
        loss_sum = torch.zeros((), device=self.device)
        correct = {k: torch.zeros((), device=self.device, dtype=torch.long) for k in references}
        seen = 0
        if self.sample_loss is None or len(self.sample_loss) != batcher.num_samples:
            self.sample_loss = torch.zeros(batcher.num_samples, device=self.device)
            self.sample_pred = torch.zeros(batcher.num_samples, device=self.device, dtype=torch.long)
        for batch in batcher:
            with autocast_for(self.device, self.bf16):
                logits = self.forward(batch.x)
            per_sample = loss_fn(logits.float(), batch)
            loss = per_sample.mean()
            self.sample_loss.index_copy_(0, batch.idx, per_sample.detach().to(self.sample_loss.dtype))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update()
            loss_sum += loss.detach() * batch.x.shape[0]
            pred = logits.detach().argmax(1)
            self.sample_pred.index_copy_(0, batch.idx, pred)
            for k, ref in references.items():
                correct[k] += (pred == ref.index_select(0, batch.idx)).sum()
            seen += batch.x.shape[0]
        self.epochs_done += 1
        stats = {"loss": loss_sum / max(seen, 1), **{f"train_acc_{k}": c / max(seen, 1) for k, c in correct.items()}}
        return {k: float(v) for k, v in stats.items()}  # the one host sync of the epoch

    @torch.no_grad()
    def accuracy(self, batcher, labels: torch.Tensor, use_ema: bool = False) -> float:
        model = self.ema.model if use_ema else self.model
        was_training = model.training
        model.eval()
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for batch in batcher.epoch(0):
            with autocast_for(self.device, self.bf16):
                logits = model(batch.x)
            correct += (logits.argmax(1) == labels.index_select(0, batch.idx)).sum()
        model.train(was_training)
        return float(correct) / batcher.num_samples

    def probabilities(self, batcher, num_classes: int, use_ema: bool = False) -> torch.Tensor:
        model = self.ema.model if use_ema else self.model
        return predict(model, batcher, batcher.num_samples, num_classes, bf16=self.bf16)

    def state_dict(self) -> dict:
        return {"model": _unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None, "epochs_done": self.epochs_done}

    def load_state_dict(self, state: dict) -> None:
        _unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.epochs_done = int(state["epochs_done"])
