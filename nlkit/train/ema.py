"""Exponential moving average of a network's weights (the "momentum model" of SLN)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """theta_ema <- a * theta_ema + (1 - a) * theta after every optimizer step.

    With `buffers=True` (SLN's behaviour) every floating-point state_dict entry is averaged, BN running
    statistics included; integer buffers (num_batches_tracked) are copied. One fused `_foreach_lerp_` per
    step and no host synchronisation. The EMA starts as an exact copy of the live network.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, buffers: bool = True):
        self.decay = float(decay)
        self.buffers = buffers
        self.model = copy.deepcopy(_unwrap(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs_from(model)

    def _pairs_from(self, model: nn.Module) -> None:
        live, ema = _unwrap(model).state_dict(), self.model.state_dict()
        params = {name for name, _ in _unwrap(model).named_parameters()}
        keys = [k for k, v in live.items() if v.dtype.is_floating_point and (self.buffers or k in params)]
        self._live = [live[k] for k in keys]
        self._ema = [ema[k] for k in keys]
        self._live_int = [v for k, v in live.items() if not v.dtype.is_floating_point]
        self._ema_int = [ema[k] for k, v in live.items() if not v.dtype.is_floating_point]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self._ema, self._live, 1.0 - self.decay)
        for e, l in zip(self._ema_int, self._live_int):
            e.copy_(l)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


def _unwrap(model: nn.Module) -> nn.Module:
    """The module behind torch.compile's wrapper (its state_dict keys carry a prefix)."""
    return getattr(model, "_orig_mod", model)
