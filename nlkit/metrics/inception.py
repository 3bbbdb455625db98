"""The Inception-v3 feature extractor of FID/IS (TF-ported `inception-2015-12-05` weights, as EDM uses them),
through `torch-fidelity`'s network, loaded from a local weights file.

The weights cannot be downloaded here, so the file must be supplied (torch-fidelity's
`weights-inception-2015-12-05-6726825d.pth`). It is read with `weights_only=True`; torch-fidelity's own path loading
is bypassed because it unpickles arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import torch

from ..errors import UserError
from ..io import expand_home

_NAME = "inception-v3-compat"
FEATURES = ("2048", "logits_unbiased")


def _module():
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as fe
    except ImportError as err:
        raise UserError("Inception metrics need `torch-fidelity`: pip install 'nlkit[metrics]'") from err
    return fe


def _build(state_dict: dict | None):
    """torch-fidelity's network with our state dict (None: its own initialisation, for random weights)."""
    fe = _module()
    cls = fe.FeatureExtractorInceptionV3
    if state_dict is None:
        with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: None), \
                mock.patch.object(cls, "load_state_dict", lambda self, sd, *a, **k: None):
            return cls(_NAME, list(FEATURES))
    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: state_dict):
        return cls(_NAME, list(FEATURES))


def load_inception(weights_path, device="cpu"):
    """The feature extractor; a missing or foreign file is one clear error."""
    if not weights_path:
        raise UserError("Inception metrics need a local Inception-v3 weights file (set `inception_weights`, "
                        "e.g. weights-inception-2015-12-05-6726825d.pth from torch-fidelity's releases)")
    path = expand_home(weights_path)
    if not path.is_file():
        raise UserError(f"Inception weights not found: {path} (download torch-fidelity's "
                        "weights-inception-2015-12-05-6726825d.pth once and pass its path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error here
        raise UserError(f"cannot read Inception weights {path}: {type(err).__name__}: {str(err)[:200]}") from None
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise UserError(f"{path} is not an Inception-v3 FID state dict (torch-fidelity layout)")
    try:
        model = _build(state)
    except RuntimeError as err:
        raise UserError(f"{path} does not fit the Inception-v3 FID network: {str(err)[:200]}") from None
    return InceptionFeatures(model.to(device))


def write_random_inception_weights(path, seed: int = 0) -> Path:
    """A randomly initialised state dict in the real file's layout (for tests: the loading code and the metric
    plumbing run without the real weights)."""
    torch.manual_seed(seed)
    model = _build(None)
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, path)
    return Path(path)


class InceptionFeatures:
    """pool3 features (2048) and unbiased logits (1008) for uint8 images (N, H, W, C); 1 channel is tiled to 3."""

    def __init__(self, model):
        self.model = model.eval()
        self.device = next(model.parameters()).device

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch: int = 200) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise UserError(f"Inception features need uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
        feats, logits = [], []
        for start in range(0, len(images), batch):
            x = torch.as_tensor(images[start:start + batch]).permute(0, 3, 1, 2).to(self.device)
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            f, lg = self.model(x)
            feats.append(f.float().cpu().numpy())
            logits.append(lg.float().cpu().numpy())
        return np.concatenate(feats), np.concatenate(logits)
