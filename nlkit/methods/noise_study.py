"""The noise study and the exploration notebooks (`params/noise/`, `params/explore/`): no training, one noise
setting per cell. What their tables may read is declared here, like every paper's."""

from __future__ import annotations

from .contract import PROTOCOL_METRICS, MethodSpec, PositiveInt

SPEC = MethodSpec("noise", metrics=PROTOCOL_METRICS + (
    "realised_rate", "nominal_rate", "classes_with_true_plurality",
    # the t-SNE notebook's neighbour check
    "knn_majority_equals_clean", "knn_majority_equals_clean_on_noisy_samples", "noisy_label_equals_clean"))

# Top-level keys of these cells beyond the pipeline's own: the t-SNE notebook's encoder and sample size.
CELL_KEYS = {"encoder": str, "clip_model": str, "clip_pretrained": str | None, "n_samples": PositiveInt}
