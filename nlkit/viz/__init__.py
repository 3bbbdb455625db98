"""Presentation: figures (`nlkit.viz.figures`, re-exported here), the noise explorer widget
(`nlkit.viz.explorer`) and t-SNE maps (`nlkit.viz.tsne`). Nothing below the notebooks depends on it."""

from .diffusion import per_class_bars, sample_grids, sigma_curves, toy_scatter
from .figures import (
    confidence_histogram,
    dissection_plot,
    image_grid,
    per_class_noise_bars,
    save_figure,
    training_curves,
    transition_heatmap,
    tsne_scatter,
)

__all__ = ["confidence_histogram", "dissection_plot", "image_grid", "per_class_bars", "per_class_noise_bars",
           "sample_grids", "save_figure", "sigma_curves", "toy_scatter", "training_curves", "transition_heatmap",
           "tsne_scatter"]
