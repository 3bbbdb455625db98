"""Figures a person would rather look at than read: image grids, transition heatmaps, per-class bars, t-SNE."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

FLIP_COLOR = "#d62728"
KEEP_COLOR = "#2f2f2f"


def _figure_and_axes(ax, figsize):
    """Draw on the given axes, or on a new figure of `figsize`."""
    if ax is None:
        return plt.subplots(figsize=figsize)
    return ax.figure, ax


def image_grid(images: np.ndarray, noisy: np.ndarray, clean: np.ndarray, classes: list[str], *,
               indices: np.ndarray | None = None, n: int = 32, cols: int = 8, seed: int = 0,
               flipped_share: float | None = 0.5, title: str | None = None):
    """Grid of training images titled "noisy (clean)"; flipped samples get a red frame and red title.

    By default half of the shown samples are flipped ones (when there are enough), so the noise is visible
    even at low rates; `flipped_share=None` samples uniformly instead.
    """
    rng = np.random.default_rng(seed)
    pool = np.arange(len(noisy)) if indices is None else np.asarray(indices)
    flipped = pool[noisy[pool] != clean[pool]]
    kept = pool[noisy[pool] == clean[pool]]
    if flipped_share is None:
        chosen = rng.choice(pool, size=min(n, len(pool)), replace=False)
    else:
        k = min(len(flipped), int(round(n * flipped_share)))
        chosen = np.concatenate([rng.choice(flipped, k, replace=False),
                                 rng.choice(kept, min(len(kept), n - k), replace=False)])
        chosen = rng.permutation(chosen)
    rows = max(1, int(np.ceil(len(chosen) / cols)))
    # One axes holding every image (32 small axes take seconds to lay out; the explorer redraws this grid on every
    # change). Each image gets a unit square; rows leave room for their titles, so titles never overlap images.
    step_x, step_y, title_h = 1.15, 1.45, 0.4
    fig, ax = plt.subplots(figsize=(cols * 1.45, rows * 1.8 + 0.5))
    ax.axis("off")
    from matplotlib.patches import Rectangle

    for k, i in enumerate(chosen):
        x0, y0 = (k % cols) * step_x, (k // cols) * step_y + title_h
        img = images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                  interpolation="nearest", extent=(x0, x0 + 1, y0 + 1, y0), vmin=0, vmax=255)
        is_flip = noisy[i] != clean[i]
        color = FLIP_COLOR if is_flip else KEEP_COLOR
        ax.text(x0 + 0.5, y0 - 0.06, f"{classes[noisy[i]]} ({classes[clean[i]]})", fontsize=7.5, color=color,
                ha="center", va="bottom", clip_on=False)
        if is_flip:
            frame = Rectangle((x0, y0), 1, 1, fill=False, edgecolor=FLIP_COLOR, linewidth=2.5)
            frame.set_gid(f"flipped-image-{i}")  # lets an SVG reader (the browser test) count the framed images
            ax.add_patch(frame)
    ax.set_xlim(-0.05, (cols - 1) * step_x + 1.05)
    ax.set_ylim(rows * step_y + 0.05, 0)
    ax.set_aspect("equal")
    n_flip = int(sum(noisy[i] != clean[i] for i in chosen))
    share = len(flipped) / max(len(pool), 1)
    sampled = (f"; flipped samples over-represented ({share:.0%} of the data, drawn for half the grid)"
               if flipped_share is not None and n_flip and n_flip / len(chosen) > share + 0.05 else "")
    fig.suptitle((title or "training images: noisy label (clean label); red = label flipped")
                 + f"\n{n_flip} of {len(chosen)} shown images have a flipped label (red frame){sampled}", fontsize=10)
    fig.tight_layout()
    return fig


def transition_heatmap(T: np.ndarray, classes: list[str], *, title: str = "transition matrix P(noisy | clean)",
                       ax=None):
    """Rows = clean class, columns = noisy label, in percent."""
    c = len(classes)
    if ax is None:
        size = min(12, 2.5 + 0.55 * c) if c <= 20 else 9
        fig, ax = plt.subplots(figsize=(size, size * 0.85))
    else:
        fig = ax.figure
    annot = c <= 20
    sns.heatmap(np.asarray(T) * 100, ax=ax, cmap="rocket_r", vmin=0, vmax=100, square=c <= 20,
                annot=annot, fmt=".0f", annot_kws={"fontsize": 7}, cbar_kws={"label": "% of the clean class"},
                xticklabels=classes if c <= 20 else 10, yticklabels=classes if c <= 20 else 10)
    ax.set_xlabel("noisy label")
    ax.set_ylabel("clean class")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def symmetric_at_rate(clean, noisy, num_classes: int, seed: int = 0):
    """Symmetric noise on the same clean labels at the realised rate of `noisy`: the class-independent reference a
    real noise pattern (CIFAR-N's human labels) is compared with."""
    from ..noise import symmetric

    clean, noisy = np.asarray(clean), np.asarray(noisy)
    rate = float(np.mean(clean != noisy)) if len(clean) else 0.0
    return symmetric(clean, rate, num_classes, seed), rate


def flip_matrix_vs_symmetric(clean, noisy, classes: list[str], *, name: str = "label file", seed: int = 0):
    """Two per-class flip matrices P(noisy | clean), side by side on one colour scale: the given noisy labels (e.g.
    CIFAR-N's human labels) and symmetric noise drawn at their realised rate, so structure (which classes are
    confused with which) is told apart from the amount of noise. The diagonal is left out of the colour scale."""
    from ..noise.stats import empirical_transition

    c = len(classes)
    sym, rate = symmetric_at_rate(clean, noisy, c, seed)
    mats = [empirical_transition(clean, noisy, c), empirical_transition(sym.clean, sym.noisy, c)]
    off = [m * (1 - np.eye(c)) * 100 for m in mats]
    vmax = max(1.0, max(float(o.max()) for o in off))
    size = min(7.0, 2.5 + 0.45 * c) if c <= 20 else 6.0
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1.0, size * 0.9))
    titles = [f"{name}: realised rate {rate:.1%}", f"symmetric noise at {rate:.1%} (seed {seed})"]
    for ax, o, title in zip(axes, off, titles):
        sns.heatmap(o, ax=ax, cmap="rocket_r", vmin=0, vmax=vmax, square=c <= 20, annot=c <= 10, fmt=".1f",
                    annot_kws={"fontsize": 6}, cbar_kws={"label": "% of the clean class (off-diagonal)"},
                    xticklabels=classes if c <= 20 else 10, yticklabels=classes if c <= 20 else 10)
        ax.set_xlabel("noisy label")
        ax.set_ylabel("clean class")
        ax.set_title(title)
    fig.suptitle("per-class flips P(noisy | clean): the file's noise vs class-independent noise of the same rate")
    fig.tight_layout()
    return fig


def per_class_noise_bars(per_class_rate, classes: list[str], *, overall: float | None = None,
                         nominal: float | None = None, title: str = "noise rate per clean class", ax=None):
    """Share of each clean class whose label is wrong, with the overall (and nominal) rate as lines."""
    fig, ax = _figure_and_axes(ax, (max(6, 0.45 * len(classes) + 2), 3.6))
    rates = np.asarray(per_class_rate) * 100
    ax.bar(range(len(classes)), rates, color=sns.color_palette("crest", len(classes)))
    if overall is not None:
        ax.axhline(overall * 100, color=FLIP_COLOR, lw=1.5, label=f"realised overall {overall:.1%}")
    if nominal is not None:
        ax.axhline(nominal * 100, color="gray", ls="--", lw=1.2, label=f"nominal p = {nominal:g}")
    if len(classes) <= 20:
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_xlabel("clean class")
    ax.set_ylabel("labels flipped (%)")
    ax.set_ylim(0, max(5, rates.max() * 1.15 if len(rates) else 5, (nominal or 0) * 115))
    ax.set_title(title)
    if overall is not None or nominal is not None:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def tsne_scatter(xy: np.ndarray, clean: np.ndarray, noisy: np.ndarray, classes: list[str], *,
                 title: str = "t-SNE of the features", ax=None):
    """2-D embedding coloured by the clean label; samples whose noisy label is wrong are drawn as black crosses."""
    fig, ax = _figure_and_axes(ax, (8, 7))
    palette = sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))
    flipped = noisy != clean
    for c, name in enumerate(classes):
        m = (clean == c) & ~flipped
        ax.scatter(xy[m, 0], xy[m, 1], s=9, color=palette[c], alpha=0.75, lw=0,
                   label=name if len(classes) <= 20 else None)
        m = (clean == c) & flipped
        ax.scatter(xy[m, 0], xy[m, 1], s=26, color=palette[c], marker="X", edgecolor="black", linewidth=0.6)
    ax.scatter([], [], s=26, marker="X", color="white", edgecolor="black", label=f"noisy label ({flipped.mean():.0%})")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=1.5, frameon=False,
              title="clean label")
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 130) -> Path:
    """Save as PNG through a temporary file, so an interrupted run leaves no half-written figure."""
    from ..io import atomic_write

    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix[1:] or "png"))
    return path


def training_curves(history, title: str = "training curves", ax=None):
    """Test accuracy of the live and EMA nets and training accuracy against the noisy and the clean labels."""
    fig, ax = _figure_and_axes(ax, (10, 4.5))
    styles = {"test_acc_live": ("test, live net", "-", "#1f77b4"), "test_acc_ema": ("test, EMA net", "-", "#2ca02c"),
              "train_acc_noisy": ("train vs given labels", "--", "#d62728"),
              "train_acc_clean": ("train vs clean labels", "--", "#9467bd"),
              "val_acc_live": ("noisy validation, live net", ":", "#ff7f0e")}
    for col, (label, ls, color) in styles.items():
        if col in history and history[col].notna().any():
            ax.plot(history["epoch"], history[col] * 100, ls=ls, color=color, label=label)
    if "lc" in history and history["lc"].any():
        ax.axvline(history.loc[history["lc"], "epoch"].min() - 0.5, color="gray", lw=1, ls=":",
                   label="label correction starts")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # beside the curves, never on them
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def confidence_histogram(max_prob, is_noisy, title: str = "max predicted probability on the training set", ax=None):
    """Histograms (100 bins on [0, 1]) of the max probability, clean-label vs noisy-label samples."""
    fig, ax = _figure_and_axes(ax, (7, 4))
    bins = np.linspace(0, 1, 101)
    ax.hist(np.asarray(max_prob)[~np.asarray(is_noisy)], bins=bins, color="#1f77b4", alpha=0.7, label="clean label")
    ax.hist(np.asarray(max_prob)[np.asarray(is_noisy)], bins=bins, color=FLIP_COLOR, alpha=0.7, label="noisy label")
    ax.set_xlabel("max predicted probability")
    ax.set_ylabel("training samples")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def dissection_plot(table, title: str = "sample dissection", ax=None):
    """Stacked shares of label/prediction correctness per loss bin (from nlkit.methods.sln.sample_dissection)."""
    fig, ax = _figure_and_axes(ax, (9, 4))
    colors = ["#2ca02c", "#98df8a", "#ff9896", FLIP_COLOR]
    bottom = np.zeros(len(table))
    for col, color in zip(table.columns, colors):
        ax.bar(table.index, table[col] * 100, bottom=bottom, color=color, width=1.0, label=col, edgecolor="none")
        bottom += table[col].to_numpy() * 100
    ax.set_xlabel("loss bin (training samples sorted by loss w.r.t. the given label, low to high)")
    ax.set_ylabel("share of the bin (%)")
    ax.set_xlim(-0.5, len(table) - 0.5)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.tight_layout()
    return fig
