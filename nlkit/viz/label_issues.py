"""The training samples a run suspects most (its per_sample.csv, nlkit.noise.issues), as an image grid."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from ..noise.issues import ranked
from .figures import FLIP_COLOR, KEEP_COLOR


def issue_grid(images: np.ndarray, frame: pd.DataFrame, classes: list[str], *, n: int = 24, cols: int = 8,
               title: str | None = None):
    """The `n` most suspected samples, most suspected first, titled "given → corrected" with the clean label in
    brackets where known; a red frame where the given label is truly wrong. `images` are the run's training images
    in the order of `frame`'s rows (uint8 N x H x W x C)."""
    top = ranked(frame).head(n)
    rows = max(1, int(np.ceil(len(top) / cols)))
    # one axes for every image (many small axes take seconds to lay out), as nlkit.viz.figures.image_grid
    step_x, step_y, title_h = 1.15, 1.55, 0.5
    fig, ax = plt.subplots(figsize=(cols * 1.45, rows * 1.9 + 0.6))
    ax.axis("off")
    corrected = "corrected_label" if "corrected_label" in top else None
    n_wrong = 0
    for k, (pos, row) in enumerate(top.iterrows()):
        x0, y0 = (k % cols) * step_x, (k // cols) * step_y + title_h
        img = images[frame.index.get_loc(pos)]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                  interpolation="nearest", extent=(x0, x0 + 1, y0 + 1, y0), vmin=0, vmax=255)
        label = classes[int(row["given"])]
        if corrected:
            label += f" → {classes[int(row[corrected])]}"
        wrong = pd.notna(row["clean"]) and int(row["clean"]) != int(row["given"])
        if pd.notna(row["clean"]):
            label += f"\n({classes[int(row['clean'])]})"
        n_wrong += bool(wrong)
        ax.text(x0 + 0.5, y0 - 0.05, label, fontsize=7, color=FLIP_COLOR if wrong else KEEP_COLOR, ha="center",
                va="bottom", clip_on=False)
        if wrong:
            ax.add_patch(Rectangle((x0, y0), 1, 1, fill=False, edgecolor=FLIP_COLOR, linewidth=2.5))
    ax.set_xlim(-0.05, (cols - 1) * step_x + 1.05)
    ax.set_ylim(rows * step_y + 0.05, 0)
    ax.set_aspect("equal")
    known = top["clean"].notna().any()
    found = f"\n{n_wrong} of {len(top)} carry a wrong label (red frame)" if known else ""
    fig.suptitle((title or "most suspected label issues: given → corrected (clean)") + found, fontsize=10)
    fig.tight_layout()
    return fig
