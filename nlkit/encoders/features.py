"""Image encoders for embeddings (t-SNE, retrieval): raw pixels, PCA, CLIP (open_clip), a saved nlkit model.

Features can be cached on disk, keyed by everything that determines them, so each is computed once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import DataMissingError, UserError, check_choice
from ..train import autocast_for

ENCODERS = ("pixels", "pca", "clip", "model")


def _as_float_nchw(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[..., None]
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def pixel_features(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0


def pca_features(images: np.ndarray, n_components: int = 50, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = pixel_features(images)
    k = min(n_components, x.shape[0], x.shape[1])
    return PCA(n_components=k, random_state=seed).fit_transform(x).astype(np.float32)


CLIP_PRECISIONS = ("code", "fp16", "bf16", "fp32")


def create_clip(model_name: str = "ViT-L-14", pretrained: str | None = "openai", device: str = "cpu",
                precision: str = "fp32", load_weights: bool = True):
    """Build an open_clip model as the pretrained tag was trained: the OpenAI weights use QuickGELU, which open_clip
    (>= 2.25) no longer selects by itself for plain model names, so the tag's own config decides the activation.
    `load_weights=False` builds the same architecture with random weights and downloads nothing (tests).
    `precision` is open_clip's: 'fp16' converts the weights as OpenAI's clip.load does on CUDA (LayerNorm in fp32)."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    tag_cfg = get_pretrained_cfg(model_name, pretrained) if pretrained else {}
    return open_clip.create_model(model_name, pretrained=pretrained if load_weights else None, device=device,
                                  precision=precision, force_quick_gelu=bool(tag_cfg.get("quick_gelu")))


def clip_precision(precision: str, device: str) -> str:
    """The weights' precision for a CLIP feature pass. 'code' is the LRA code's (OpenAI clip.load): fp16 weights on
    CUDA, fp32 on the CPU; 'bf16' keeps fp32 weights under bf16 autocast (a speed switch)."""
    check_choice(precision, CLIP_PRECISIONS, "CLIP precision")
    on_cuda = str(device).startswith("cuda")
    if precision == "code":
        return "fp16" if on_cuda else "fp32"
    if precision == "fp16" and not on_cuda:
        raise UserError("CLIP precision fp16 needs a CUDA device; use 'code' (fp32 on the CPU) or fp32")
    return "fp32" if precision == "bf16" else precision


def load_clip(model_name: str = "ViT-L-14", pretrained: str | None = "openai", device: str = "cpu",
              precision: str = "fp32"):
    """An open_clip image model. `pretrained=None` gives random weights (tests, offline smoke runs)."""
    try:
        import open_clip
    except ImportError:
        raise UserError("CLIP features need open_clip: pip install 'nlkit[clip]'") from None
    if model_name not in open_clip.list_models():
        raise UserError(f"unknown CLIP model {model_name!r}; e.g. ViT-L-14, ViT-B-32, ViT-B-16")
    try:
        model = create_clip(model_name, pretrained or None, device, precision)
    except Exception as e:  # noqa: BLE001 - a hub download failing offline surfaces as many exception types
        raise DataMissingError(
            f"CLIP weights {pretrained!r} for {model_name} could not be loaded ({type(e).__name__}: {e}). "
            "They are downloaded on first use and cached by open_clip; run once with internet access, "
            "or pass a local checkpoint file as the pretrained argument.") from None
    return model.eval()


@torch.no_grad()
def clip_features(images: np.ndarray, model_name: str = "ViT-L-14", pretrained: str | None = "openai",
                  device: str | None = None, batch_size: int = 256, model=None, normalize: bool = True,
                  precision: str = "code") -> np.ndarray:
    """CLIP image embeddings (L2-normalised unless normalize=False); preprocessing (bicubic resize to the model's
    input size, CLIP normalisation) runs on the device. The resized image is not clamped to [0, 1] (bicubic
    overshoots a little), as in the LRA code. `precision` (see `clip_precision`) applies to a model built here; a
    passed `model` keeps its weights' dtype and gets bf16 autocast only for precision='bf16'."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = model or load_clip(model_name, pretrained, device, clip_precision(precision, device))
    weights_dtype = model.visual.conv1.weight.dtype  # fp16 weights take fp16 input, as clip.load's encode_image
    size = model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    mean = torch.tensor(OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
    out = []
    # bf16 on CUDA as before; on a CPU only where it is native (emulated bf16 is slower than fp32)
    amp = autocast_for(device, True if device.startswith("cuda") else "auto") if precision == "bf16" \
        else contextlib.nullcontext()
    for start in tqdm(range(0, len(images), batch_size), desc=f"CLIP {model_name}", leave=False):
        x = _as_float_nchw(images[start:start + batch_size]).to(device, non_blocking=True)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)
        with amp:
            f = model.encode_image(((x - mean) / std).to(weights_dtype))
        f = f.float()
        out.append((torch.nn.functional.normalize(f, dim=-1) if normalize else f).cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def model_features(images: np.ndarray, model_path, device: str | None = None, batch_size: int = 512,
                   mean=None, std=None) -> np.ndarray:
    """Penultimate features of a checkpoint saved by nlkit.models.save_model."""
    from ..models import load_model

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(model_path).to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = _as_float_nchw(images[start:start + batch_size]).to(device)
        if mean is not None:
            x = (x - torch.tensor(mean, device=device).view(1, -1, 1, 1)) / torch.tensor(
                std, device=device).view(1, -1, 1, 1)
        out.append(model.features(x).float().cpu())
    return torch.cat(out).numpy()


def embed(images: np.ndarray, encoder: str = "pca", *, n_components: int = 50, clip_model: str = "ViT-L-14",
          clip_pretrained: str | None = "openai", model_path=None, device: str | None = None,
          seed: int = 0) -> np.ndarray:
    """Embeddings (N x D float32) of uint8 NHWC images with one of ENCODERS."""
    check_choice(encoder, ENCODERS, "encoder")
    if encoder == "pixels":
        return pixel_features(images)
    if encoder == "pca":
        return pca_features(images, n_components, seed)
    if encoder == "clip":
        return clip_features(images, clip_model, clip_pretrained, device)
    if model_path is None:
        raise UserError("encoder 'model' needs model_path (a checkpoint saved by nlkit)")
    return model_features(images, model_path, device)


def feature_key(**parts) -> str:
    """A stable short key from everything that determines a feature array."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached(key_parts: dict, compute, cache_root=None) -> np.ndarray:
    """Load features from the cache, or compute and store them on a miss. An entry is written atomically with its
    size and sha256 beside it (`<key>.json`); one that is damaged (truncated, altered, unreadable) is recomputed
    and replaced, with one warning. A lock per entry makes a second process wait for the first one's result
    rather than compute it too; a cache folder that cannot be written costs time, never the run."""
    from ..data import cache_dir
    from ..io import entry_lock

    root = Path(cache_root) if cache_root else cache_dir() / "features"
    key = feature_key(**key_parts)
    path, meta_path = root / f"{key}.npy", root / f"{key}.json"
    feats = _read_entry(path, meta_path)
    if feats is not None:
        return feats
    with entry_lock(path) as locked:
        if locked:  # another process may have written it while this one waited
            feats = _read_entry(path, meta_path)
            if feats is not None:
                return feats
        feats = np.asarray(compute(), dtype=np.float32)
        _write_entry(path, meta_path, feats, key_parts)
    return feats


def _read_entry(path: Path, meta_path: Path) -> np.ndarray | None:
    import io
    import warnings

    if not path.is_file():
        return None
    try:
        data = path.read_bytes()
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        expected = meta.get("sha256") if isinstance(meta, dict) else None
        if expected is not None:
            if len(data) != meta.get("bytes"):
                raise ValueError(f"{len(data)} bytes, expected {meta.get('bytes')}")
            if hashlib.sha256(data).hexdigest() != expected:
                raise ValueError("its sha256 differs from the one recorded when it was written")
        feats = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(feats, np.ndarray) or feats.ndim != 2:
            raise ValueError(f"holds {getattr(feats, 'shape', type(feats).__name__)}, not an N x D array")
        return feats
    except (OSError, ValueError, EOFError) as e:
        warnings.warn(f"feature cache entry {path} is damaged ({' '.join(str(e).split())[:160]}); recomputing it",
                      stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def _write_entry(path: Path, meta_path: Path, feats: np.ndarray, key_parts: dict) -> None:
    import io
    import warnings

    from ..io import atomic_write, atomic_write_json

    buffer = io.BytesIO()
    np.save(buffer, feats, allow_pickle=False)
    data = buffer.getvalue()
    meta = {"key": key_parts, "shape": list(feats.shape), "dtype": str(feats.dtype), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest()}
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
        atomic_write_json(meta_path, meta)
    except OSError as e:  # a full or read-only cache costs the next run the computation, not this one
        warnings.warn(f"cannot write the feature cache entry {path} ({e.strerror or e}); set NLKIT_CACHE to a "
                      "writable folder", stacklevel=3)
