"""Figures for conditional diffusion models trained on noisy labels: sample grids per class (several models side by
side), per-class bars against an ideal, curves against the noise level sigma, and 2-D toy scatters."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def _show(ax, img):
    ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
              interpolation="nearest", vmin=0, vmax=255)
    ax.set_xticks([]), ax.set_yticks([])


def sample_grids(runs: dict, classes: list[str], *, per_class: int = 8, title: str = "samples per class"):
    """One panel per model: row c holds `per_class` samples generated for class c. `runs` maps a name to
    (uint8 images (N, H, W, C), labels)."""
    k = len(classes)
    per_class = max(1, min(per_class, max(min(int((np.asarray(lab) == c).sum()) for c in range(k))
                                          for _, lab in runs.values())))
    fig, axes = plt.subplots(1, len(runs), figsize=(per_class * 0.55 * len(runs) + 0.6, k * 0.58 + 0.9),
                             squeeze=False)
    for ax, (name, (images, labels)) in zip(axes[0], runs.items()):
        rows = []
        for c in range(k):
            pick = images[np.asarray(labels) == c][:per_class]
            if len(pick) < per_class:
                pick = np.concatenate([pick, np.zeros((per_class - len(pick),) + images.shape[1:], images.dtype)])
            rows.append(np.concatenate(list(pick), 1))
        mosaic = np.concatenate(rows, 0)
        _show(ax, mosaic)
        h = images.shape[1]
        ax.set_yticks((np.arange(k) + 0.5) * h, classes, fontsize=7)
        ax.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def per_class_bars(values: dict, classes: list[str], *, ideal=None, ideal_label: str = "ideal noisy-label model",
                   ylabel: str = "label consistency", title: str = "", ax=None):
    """Grouped bars, one group per class and one bar per model; `ideal` (per class) as black ticks."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(16, max(6.5, 0.35 * len(classes) * max(1, len(values)) + 3)), 3.8))
    else:
        fig = ax.figure
    n = max(1, len(values))
    width = 0.8 / n
    palette = sns.color_palette("Set1", n)
    x = np.arange(len(classes))
    for i, (name, vals) in enumerate(values.items()):
        ax.bar(x - 0.4 + width * (i + 0.5), np.asarray(vals, dtype=float), width, label=name, color=palette[i])
    if ideal is not None:
        ax.scatter(x, ideal, marker="_", s=400, color="black", zorder=3, label=ideal_label)
    ax.set_xticks(x, classes)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("class the samples were generated for")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def sigma_curves(df, columns: dict, *, title: str = "", ylabel: str = "", ax=None, hlines: dict | None = None):
    """Columns of a per-sigma table against sigma (log axis); `columns` maps a column to its legend label."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
    else:
        fig = ax.figure
    for col, label in columns.items():
        if col in df:
            ax.plot(df["sigma"], df[col], "o-", ms=3.5, label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="gray", ls="--", lw=1, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("noise level sigma")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def toy_scatter(samples: dict, means: np.ndarray, *, title: str = ""):
    """One panel per model: samples coloured by the class they were generated for, clean means as stars."""
    fig, axes = plt.subplots(1, len(samples), figsize=(3.6 * len(samples), 3.7), squeeze=False, sharex=True,
                             sharey=True)
    palette = sns.color_palette("tab10", len(means))
    for ax, (name, (x, y)) in zip(axes[0], samples.items()):
        for c in range(len(means)):
            ax.scatter(x[y == c, 0], x[y == c, 1], s=4, alpha=0.5, color=palette[c])
            ax.scatter(*means[c], marker="*", s=220, color=palette[c], edgecolor="black", zorder=3)
            ax.scatter(*x[y == c].mean(0), marker="X", s=90, color=palette[c], edgecolor="black", zorder=4)
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
    fig.suptitle(f"{title}\nstars: clean class means; crosses: means of the samples generated for each class",
                 fontsize=10)
    fig.tight_layout()
    return fig
