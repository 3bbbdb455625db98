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


# ---------------------------------------------------------------------------------------------- classifiers

_EMBEDDING = {"map_augment.": "embed.map_augment.", "map_layer0.": "embed.layer0.", "map_layer1.": "embed.layer1."}
_MNIST_BODY = {"conv1.0.": "body.conv1.", "conv2.0.": "body.conv2.", "dense_1.": "body.dense1.",
               "dense_2.": "body.dense2.", "linear.": "body.head."}
_RESNET_BODY = {"conv1.": "body.stem.0.", "bn1.": "body.stem.1.", "linear.": "body.head."}
_RESNET_STAGE = re.compile(r"^layer(\d)\.(.*)$")
_RESNET_DENSE = re.compile(r"^dense_(\d)\.(.*)$")


def _classifier_key(key: str, arch: str) -> str:
    for old, new in _EMBEDDING.items():
        if key.startswith(old):
            return new + key[len(old):]
    if not key.startswith("classifier."):
        raise UserError(f"{key}: not a key of the reference noise-conditioned classifier (positional embedding)")
    key = key[len("classifier."):]
    table = _MNIST_BODY if arch == "cnn_mnist" else _RESNET_BODY
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    if arch != "cnn_mnist":
        if m := _RESNET_STAGE.match(key):
            return f"body.stages.{int(m.group(1)) - 1}.{m.group(2)}"
        if m := _RESNET_DENSE.match(key):
            return f"body.denses.{int(m.group(1)) - 1}.{m.group(2)}"
    raise UserError(f"classifier.{key}: no counterpart in the kit's {arch} classifier")


def classifier_state_dict_to_kit(state_dict: dict, arch: str) -> dict:
    """The reference TDSM classifier's state dict (`EDMPrecond_classifier` with `ClassifierSong_MNIST` for
    `cnn_mnist`, `ClassifierSong` with a ResNet-18/34 for `resnet18_cond`/`resnet34_cond`; keys optionally prefixed
    `model.`) in the layout of the kit's `NoiseConditionalClassifier`. The variant with a learned transition matrix
    and the Fourier (NCSN++) embedding are refused."""
    out = {}
    for key, value in state_dict.items():
        inner = key[len("model."):] if key.startswith("model.") else key
        if inner.startswith("map_noise."):
            raise UserError(f"{key}: only the positional (DDPM++) noise embedding can be mapped")
        out[_classifier_key(inner, arch)] = value
    return out
