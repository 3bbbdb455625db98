"""What the hardware offers, and the kit's speed switches resolved against it.

The switches `bf16` and `channels_last` of every paper Config take False, True or 'auto':

- `bf16`: False = fp32; True = bf16 autocast on any device (on a CPU without native bf16 that is emulated and slower
  than fp32); 'auto' = bf16 autocast where the hardware computes bf16 natively: a CUDA GPU with bf16, or a CPU with
  AMX-BF16 or AVX512-BF16 (oneDNN's bf16 convolutions and matmuls).
- `channels_last`: False = NCHW; True = channels_last on any device; 'auto' = channels_last on CUDA, and on the CPU
  only together with bf16, so that a CPU run at fp32 keeps the originals' NCHW layout (and its rounding) unless
  channels_last is asked for.

Lower layer than models/train: imports torch only.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal, Union

import torch

Switch = Union[bool, Literal["auto"]]

# oneDNN's ONEDNN_MAX_CPU_ISA caps, from the least to the most capable; a cap below AVX512_CORE_BF16 keeps oneDNN
# off its native bf16 kernels even on a CPU that has them (and bf16 then runs emulated, slower than fp32)
_ONEDNN_CAPS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
                "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "ALL", "DEFAULT")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags, torch's own capability still names the vector ISA
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _onednn_cap() -> str | None:
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap else None


@functools.lru_cache(maxsize=None)
def _cpu_isa(cap: str | None) -> dict:
    flags = _cpu_flags()
    amx = "amx_bf16" in flags
    avx512_bf16 = "avx512_bf16" in flags
    capped = cap is not None and cap in _ONEDNN_CAPS and \
        _ONEDNN_CAPS.index(cap) < _ONEDNN_CAPS.index("AVX512_CORE_BF16")
    amx_allowed = cap is None or cap not in _ONEDNN_CAPS or \
        _ONEDNN_CAPS.index(cap) >= _ONEDNN_CAPS.index("AVX10_1_512_AMX")
    try:
        vector = torch.backends.cpu.get_cpu_capability()  # e.g. AVX512, AVX2 (torch's own kernels)
    except AttributeError:
        vector = "unknown"
    if amx and amx_allowed and not capped:
        isa = "AMX-BF16"
    elif (amx or avx512_bf16) and not capped:
        isa = "AVX512-BF16"
    elif "avx512f" in flags and (cap is None or cap not in _ONEDNN_CAPS or
                                 _ONEDNN_CAPS.index(cap) >= _ONEDNN_CAPS.index("AVX512_CORE")):
        isa = "AVX-512"
    elif "avx2" in flags or vector.startswith("AVX2"):
        isa = "AVX2"
    else:
        isa = vector
    return {"isa": isa, "amx_bf16": amx, "avx512_bf16": avx512_bf16, "avx512f": "avx512f" in flags,
            "torch_capability": vector, "onednn_max_cpu_isa": cap,
            "native_bf16": isa in ("AMX-BF16", "AVX512-BF16")}


def cpu_isa() -> dict:
    """The CPU's instruction set as far as the kit's speed is concerned: `isa` (AMX-BF16, AVX512-BF16, AVX-512, AVX2
    or torch's capability name), the flags `amx_bf16`, `avx512_bf16`, `avx512f`, and `native_bf16` (oneDNN has bf16
    kernels for it). An ONEDNN_MAX_CPU_ISA cap below AVX512_CORE_BF16 turns native_bf16 off, as it turns oneDNN's
    bf16 kernels off."""
    return dict(_cpu_isa(_onednn_cap()))


def _check(name: str, value) -> None:
    if value not in (True, False, "auto"):
        raise ValueError(f"{name} must be true, false or 'auto', got {value!r}")


def use_bf16(setting: Switch, device) -> bool:
    """Whether a `bf16` setting turns bf16 autocast on for `device`."""
    _check("bf16", setting)
    dev = torch.device(device)
    if setting is False or dev.type not in ("cuda", "cpu"):
        return False
    if setting is True:
        return True
    if dev.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return cpu_isa()["native_bf16"]


def use_channels_last(setting: Switch, device, bf16: Switch = False) -> bool:
    """Whether a `channels_last` setting puts the convnets (and their input batches) in channels_last on `device`;
    'auto' follows the device: always on CUDA, on the CPU where `bf16` resolves to on."""
    _check("channels_last", setting)
    dev = torch.device(device)
    if setting != "auto":
        return bool(setting)
    return dev.type == "cuda" or (dev.type == "cpu" and use_bf16(bf16, dev))


def precision_report(device, bf16: Switch = False, channels_last: Switch = False) -> dict:
    """What a run computes in on `device`, for metrics.json: the CPU's ISA, and the resolved switches."""
    dev = torch.device(device)
    isa = cpu_isa()
    return {"device_type": dev.type, "cpu_isa": isa["isa"], "native_bf16": isa["native_bf16"],
            "bf16": use_bf16(bf16, dev), "channels_last": use_channels_last(channels_last, dev, bf16),
            "threads": torch.get_num_threads()}
