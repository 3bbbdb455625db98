"""State dicts in the layout of the EDM/TDSM reference code (NVlabs EDM `training/networks.py`, which TDSM reuses)
mapped to the kit's modules, so that a network trained there can be evaluated here (and so that the golden tests can
compare the two forward passes).

The reference DDPM++ `SongUNet` and the kit's `SongUNet` share their module names except for:
- the output layer: `dec.<res>x<res>_aux_norm` / `dec.<res>x<res>_aux_conv` are the kit's `out_norm` / `out_conv`;
- the fixed [1, 1] resampling filters (`*.resample_filter` buffers), which the kit applies as 2x2 average pooling
  and nearest up-sampling instead of storing them.
Only the DDPM++ configuration is supported (positional embedding, standard encoder and decoder, [1, 1] filter,
`resample_proj`, no adaptive scale): the NCSN++ keys (`aux_down`, `aux_skip`, `aux_residual`, `aux_up`,
`map_noise.freqs`) are refused with a clear error.
"""

from __future__ import annotations

import re

import torch

from ..errors import UserError

_OUTPUT_LAYER = re.compile(r"(^|\.)dec\.\d+x\d+_aux_(norm|conv)\.")
_NCSNPP_KEYS = ("_aux_down.", "_aux_skip.", "_aux_residual.", "_aux_up.", "map_noise.freqs")
_UNIT_FILTER = torch.full((1, 1, 2, 2), 0.25)


def songunet_state_dict_to_kit(state_dict: dict) -> dict:
    """The reference SongUNet's state dict (or its EDMPrecond's, keys prefixed `model.`) in the kit's layout, for
    `nlkit.diffusion.SongUNet.load_state_dict` (or the kit's EDMPrecond). Tensors are shared, not copied."""
    out = {}
    for key, value in state_dict.items():
        if any(tag in key for tag in _NCSNPP_KEYS):
            raise UserError(f"{key}: only the DDPM++ SongUNet layout can be mapped to the kit's UNet (no NCSN++)")
        if key.endswith("resample_filter"):
            if value is not None and not torch.equal(torch.as_tensor(value, dtype=torch.float32).cpu(), _UNIT_FILTER):
                raise UserError(f"{key}: only the [1, 1] resampling filter of DDPM++ is supported")
            continue
        out[_OUTPUT_LAYER.sub(lambda m: f"{m.group(1)}out_{m.group(2)}.", key)] = value
    return out
