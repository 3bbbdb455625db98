"""Presentation: figures (`nlkit.viz.figures` and the DivideMix/InstanceGM figures of `nlkit.viz.dividemix`,
re-exported here, and the grid of suspected label issues of `nlkit.viz.label_issues`), the readings printed after
them (`nlkit.viz.readings`: what a run's own numbers show), the noise explorer widget (`nlkit.viz.explorer`) and
t-SNE maps (`nlkit.viz.tsne`). Nothing below the notebooks depends on it."""

from .diffusion import per_class_bars, sample_grids, sigma_curves, toy_scatter
from .dividemix import accuracy_curves, division_curves, division_histograms, image_rows
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
from .label_issues import issue_grid

__all__ = ["accuracy_curves", "confidence_histogram", "dissection_plot", "division_curves", "division_histograms",
           "image_grid", "image_rows", "issue_grid", "per_class_bars", "per_class_noise_bars", "sample_grids",
           "save_figure", "sigma_curves", "toy_scatter", "training_curves", "transition_heatmap", "tsne_scatter"]
