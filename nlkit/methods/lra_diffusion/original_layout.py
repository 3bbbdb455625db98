"""Reading weights saved by the public LRA-Diffusion code into the kit's networks.

The public CIFAR script saves `[mlp.state_dict(), image_encoder.state_dict(), fp_encoder.state_dict()]`: the
conditional MLP (`norm`, `lin1..lin3` with `.lin`/`.embed`, `unetnorm1..3`, `lin4`) and a CIFAR ResNet-34 (`conv1`,
`bn1`, `layer1..layer4`, `linear`). These functions rename those keys onto `ConditionalDenoiser` and
`CifarResNet34`; the values are untouched. The SimCLR file's layout (`f.*`, `g.*`) is the kit's own, read by
`nlkit.encoders.load_simclr`. Checked against the public code by tests/test_golden_lra.py.
"""

from __future__ import annotations

import re

import torch

from ...errors import UserError

# the conditional MLP: original prefix -> kit prefix (ConditionalDenoiser)
_MLP_PREFIXES = {
    "norm.": "norm_x.",
    "lin1.lin.": "l1.lin.", "lin1.embed.": "l1.gamma.",
    "lin2.lin.": "l2.lin.", "lin2.embed.": "l2.gamma.",
    "lin3.lin.": "l3.lin.", "lin3.embed.": "l3.gamma.",
    "unetnorm1.": "b1.", "unetnorm2.": "b2.", "unetnorm3.": "b3.",
    "lin4.": "out.",
}

# ResNet-34 stages: blocks per stage, and where each stage starts in the kit's flat `layers` sequence
_RESNET34_BLOCKS = (3, 4, 6, 3)
_STAGE_OFFSET = {stage + 1: sum(_RESNET34_BLOCKS[:stage]) for stage in range(4)}
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.(.+)$")


def _strip_data_parallel(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


def denoiser_from_original(state: dict) -> dict:
    """The original `ConditionalModel` state dict renamed for `ConditionalDenoiser`."""
    out = {}
    for key, value in _strip_data_parallel(state).items():
        prefix = next((p for p in _MLP_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise UserError(f"unexpected key in the original denoiser weights: {key!r}")
        out[_MLP_PREFIXES[prefix] + key[len(prefix):]] = value
    return out


def resnet34_from_original(state: dict) -> dict:
    """The original CIFAR ResNet-34 (utils/ResNet_for_32.py) state dict renamed for `CifarResNet34`."""
    out = {}
    for key, value in _strip_data_parallel(state).items():
        block = _BLOCK.match(key)
        if block:
            stage, index, rest = int(block[1]), int(block[2]), block[3]
            if index >= _RESNET34_BLOCKS[stage - 1]:
                raise UserError(f"{key!r}: stage {stage} of a ResNet-34 has {_RESNET34_BLOCKS[stage - 1]} blocks")
            out[f"layers.{_STAGE_OFFSET[stage] + index}.{rest}"] = value
        elif key.startswith("conv1."):
            out["stem.0." + key[len("conv1."):]] = value
        elif key.startswith("bn1."):
            out["stem.1." + key[len("bn1."):]] = value
        elif key.startswith("linear."):
            out["fc." + key[len("linear."):]] = value
        else:
            raise UserError(f"unexpected key in the original ResNet-34 weights: {key!r}")
    return out


def lra_model_from_original(states) -> dict:
    """An `LRAModel` (image_encoder='resnet34') state dict from the public code's saved list
    `[mlp, image_encoder(, fp_encoder)]`; the f_p encoder, if present, is not part of `LRAModel`."""
    if not isinstance(states, (list, tuple)) or len(states) not in (2, 3):
        raise UserError("expected the public code's checkpoint: a list [denoiser, image encoder(, f_p encoder)]")
    mlp, encoder = states[0], states[1]
    return {**{f"encoder.{k}": v for k, v in resnet34_from_original(encoder).items()},
            **{f"denoiser.{k}": v for k, v in denoiser_from_original(mlp).items()}}


def load_original_weights(model: torch.nn.Module, states) -> None:
    """Load the public code's saved list into an `LRAModel` built with the same sizes (every key must match)."""
    model.load_state_dict(lra_model_from_original(states), strict=True)
