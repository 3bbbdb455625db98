"""Sample-quality metrics for generative models: Fréchet distance of feature statistics (FID on any features),
Inception score, density and coverage (via `prdc`), class-wise variants, and the Inception-v3 feature extractor
loaded from a local weights file (via `torch-fidelity`). It sits at the models/train layer."""

from .generative import (
    classwise,
    density_coverage,
    feature_statistics,
    frechet_distance,
    inception_score,
)
from .inception import InceptionFeatures, load_inception, write_random_inception_weights

__all__ = ["InceptionFeatures", "classwise", "density_coverage", "feature_statistics", "frechet_distance",
           "inception_score", "load_inception", "write_random_inception_weights"]
