"""Frozen image encoders shared by several papers and notebooks (pixels, PCA, CLIP, SimCLR, a saved nlkit model)
and the on-disk feature cache."""

from .features import (
           cached,
           clip_features,
           embed,
           feature_key,
           load_clip,
           model_features,
           pca_features,
           pixel_features,
)
from .simclr import SimCLRModel, load_simclr, save_simclr, simclr_features, train_simclr

__all__ = ["SimCLRModel", "cached", "clip_features", "embed", "feature_key", "load_clip", "load_simclr",
           "model_features", "pca_features", "pixel_features", "save_simclr", "simclr_features", "train_simclr"]
