"""Figures of a DivideMix-style run (DivideMix, InstanceGM): accuracy of each network and of the ensemble, the
quality of the GMM division over epochs, the clean-probability histograms of truly clean and noisy samples, and
rows of images (inputs, reconstructions, samples)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .figures import FLIP_COLOR, _figure_and_axes

CLEAN_COLOR = "#1f77b4"


def _shade_warmup(ax, history) -> None:
    if "phase" in history and (history["phase"] == "warmup").any():
        last = history.loc[history["phase"] == "warmup", "epoch"].max()
        ax.axvspan(history["epoch"].min() - 0.5, last + 0.5, color="gray", alpha=0.12, lw=0, label="warm-up (CE)")


def accuracy_curves(history, title: str = "test accuracy", ax=None):
    """Test accuracy per epoch of each network and of the ensemble (sum of logits)."""
    fig, ax = _figure_and_axes(ax, (8, 4.2))
    _shade_warmup(ax, history)
    two = "test_acc_net2" in history and history["test_acc_net2"].notna().any()
    styles = [("test_acc_net1", "network 1", ":", "#9467bd") if two else ("test_acc_net1", "network", "-", "#2f2f2f"),
              ("test_acc_net2", "network 2", ":", "#ff7f0e"),
              ("test_acc", "ensemble (sum of logits)" if two else None, "-", "#2f2f2f")]
    for col, label, ls, color in styles:
        if label and col in history and history[col].notna().any():
            ax.plot(history["epoch"], history[col] * 100, ls=ls, color=color, label=label, marker=".", ms=4)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def division_curves(history, title: str = "GMM division against the true noise mask", ax=None,
                    clean_share: float | None = None):
    """Per network (whose losses were divided): AUC of the clean probability w, precision and recall of the
    labelled set {w > threshold} against the truly clean samples. `clean_share` (the share of correct labels) is
    the precision of a labelled set drawn at random."""
    fig, ax = _figure_and_axes(ax, (8, 4.2))
    colors = {"auc": "#2f2f2f", "precision": "#2ca02c", "recall": CLEAN_COLOR}
    for k, ls in ((1, "-"), (2, "--")):
        for key, color in colors.items():
            col = f"{key}_net{k}"
            if col in history and history[col].notna().any():
                ax.plot(history["epoch"], history[col], ls=ls, color=color, marker=".", ms=4,
                        label=f"{key}, network {k}")
    ax.axhline(0.5, color="gray", lw=1, ls=":", label="chance AUC")
    if clean_share is not None:
        ax.axhline(clean_share, color="#2ca02c", lw=1, ls=":", label="precision of a random split")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def division_histograms(divisions: list[dict], net: int = 1, max_panels: int = 6, threshold: float | None = 0.5):
    """The GMM clean probability w of truly clean and truly noisy samples, one panel per (evenly chosen) epoch."""
    rows = [d for d in divisions if d["net"] == net and d.get("hist_clean") is not None]
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 2.5))
        ax.text(0.5, 0.5, "no division with a known noise mask", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
        return fig
    pick = np.unique(np.linspace(0, len(rows) - 1, min(max_panels, len(rows))).round().astype(int))
    rows = [rows[i] for i in pick]
    cols = min(3, len(rows))
    n_rows = int(np.ceil(len(rows) / cols))
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 2.8 * n_rows), squeeze=False, sharex=True)
    for ax in axes.flat[len(rows):]:
        ax.axis("off")
    for ax, d in zip(axes.flat, rows):
        clean, noisy = np.asarray(d["hist_clean"]), np.asarray(d["hist_noisy"])
        edges = np.linspace(0, 1, len(clean) + 1)
        ax.stairs(clean, edges, fill=True, color=CLEAN_COLOR, alpha=0.45, label="truly clean")
        ax.stairs(noisy, edges, color=FLIP_COLOR, lw=1.8, label="truly noisy")
        if threshold is not None:
            ax.axvline(threshold, color="gray", lw=1, ls=":")
        auc = f", AUC {d['auc']:.3f}" if d.get("auc") is not None else ""
        ax.set_title(f"epoch {d['epoch']}{auc}", fontsize=9)
        ax.set_yscale("symlog", linthresh=10)
    axes.flat[0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("clean probability w")
    fig.suptitle(f"GMM clean probability from network {net}'s losses (trains network {3 - net})", fontsize=10)
    fig.tight_layout()
    return fig


def image_rows(rows: dict, title: str | None = None, scale: float = 1.0):
    """One row of images per entry (name -> array n x H x W x C with values in [0, 1])."""
    names = list(rows)
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(names), n, figsize=(1.1 * n * scale, 1.25 * len(names) * scale), squeeze=False)
    for r, name in enumerate(names):
        for c in range(n):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(rows[name]):
                img = np.clip(np.asarray(rows[name][c]), 0, 1)
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                          vmin=0, vmax=1, interpolation="nearest")
        axes[r, 0].set_ylabel(name, fontsize=8, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
