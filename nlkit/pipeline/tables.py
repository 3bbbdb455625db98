"""Rebuild each paper's tables from the runs' metrics, every reproduced number beside the paper's own.

A cell that was never run (or whose metrics belong to other params) is shown as missing, never filled."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..errors import UserError
from ..io import atomic_write
from .params import find_cells, load_cell, repo_root
from .runner import current_metrics, outputs_root

COLUMNS = ["paper", "table", "row", "column", "reproduced_mean", "reproduced_std", "n_seeds", "paper_value",
           "delta", "wall_seconds", "device"]


def table_entries(resolved: dict) -> list[dict]:
    """The table cells a params file feeds: a `tables:` list (one run can fill several cells, e.g. SLN from the
    live net and SLN-MO from the EMA net of the same run), or the single table/row/column/metric/expected form."""
    if resolved.get("tables"):
        return [{"metric": resolved.get("metric", "acc_last"), **entry} for entry in resolved["tables"]]
    return [{"table": resolved["table"], "row": resolved.get("row", resolved["cell_id"]),
             "column": resolved.get("column", resolved.get("metric", "acc_last")),
             "metric": resolved.get("metric", "acc_last"), "expected": resolved.get("expected") or {}}]


def collect(profile: str, paper: str | None = None, root: Path | None = None) -> pd.DataFrame:
    """One row per table cell: the mean/std over the seeds whose metrics match the cell's current params."""
    rows = []
    for cell in find_cells(paper):
        try:
            resolved = load_cell(cell, profile)
        except UserError as e:  # one bad params file never hides the other cells' results
            warnings.warn(f"skipping {e}", stacklevel=2)
            continue
        runs = [m for seed in resolved.get("seeds") or [0]
                if (m := current_metrics(resolved, int(seed), root, warn=True)) is not None]
        walls = [float(m.get("wall_seconds") or 0) for m in runs]
        devices = sorted({str(m["device"]) for m in runs if m.get("device")})
        for entry in table_entries(resolved):
            values = [float(m[entry["metric"]]) for m in runs if m.get(entry["metric"]) is not None]
            expected = entry.get("expected") or {}
            paper_value = expected.get("value")
            mean = float(np.mean(values)) if values else math.nan
            rows.append({
                "paper": resolved["paper"], "table": entry["table"], "row": entry["row"], "column": entry["column"],
                "reproduced_mean": mean,
                "reproduced_std": float(np.std(values, ddof=1)) if len(values) > 1 else (0.0 if values else math.nan),
                "n_seeds": len(values), "paper_value": paper_value if paper_value is not None else math.nan,
                "delta": mean - paper_value if values and paper_value is not None else math.nan,
                "wall_seconds": float(np.sum(walls)) if walls and values else math.nan,
                "device": "; ".join(devices) if values else "",
                "metric": entry["metric"], "cell": resolved["cell_id"],
                "expected_source": expected.get("source", ""), "expected_tag": expected.get("tag", ""),
            })
    return pd.DataFrame(rows)


def _fmt(value, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table_meta(paper: str) -> dict:
    path = repo_root() / "params" / paper / "_tables.yaml"
    if not path.is_file():
        return {}
    try:
        meta = yaml.safe_load(path.read_text()) or {}
        if not isinstance(meta, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError) as e:  # titles are presentation: the table is still written
        warnings.warn(f"ignoring unreadable {path}: {' '.join(str(e).split())[:200]}", stacklevel=2)
        return {}
    return meta


def to_markdown(df: pd.DataFrame, paper: str, profile: str) -> str:
    meta = table_meta(paper)
    scale = float(meta.get("display_scale", 1.0))
    digits = int(meta.get("digits", 2))
    lines = [f"# {meta.get('title', paper)} — profile `{profile}`", ""]
    if meta.get("description"):
        lines += [meta["description"].strip(), ""]
    if profile in (meta.get("profile_notes") or {}):
        lines += [f"**Profile `{profile}`:** {meta['profile_notes'][profile].strip()}", ""]
    ran = int((df["n_seeds"] > 0).sum())
    lines += [f"{ran} of {len(df)} cells have results; — marks a cell that was not run (or whose data was "
              "missing), never a filled-in value.", ""]
    for table_id, part in df.groupby("table", sort=True):
        info = (meta.get("tables") or {}).get(table_id, {})
        lines += [f"## {table_id}: {info.get('title', '')}".rstrip(": "), ""]
        if info.get("description"):
            lines += [info["description"].strip(), ""]
        lines += ["| row | column | reproduced | n seeds | paper | Δ | source of the paper value | wall s | device |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for _, r in part.iterrows():
            rep = _fmt(r.reproduced_mean * scale, digits)
            if r.n_seeds > 1:
                rep += f" ± {_fmt(r.reproduced_std * scale, digits)}"
            lines.append(f"| {r.row} | {r.column} | {rep} | {r.n_seeds} | {_fmt(r.paper_value * scale, digits)} | "
                         f"{_fmt(r.delta * scale, digits)} | {r.expected_source} {('[' + r.expected_tag + ']') if r.expected_tag else ''} | "
                         f"{_fmt(r.wall_seconds, 1)} | {r.device or '—'} |")
        lines.append("")
    return "\n".join(lines)


def plot_reproduced_vs_paper(df: pd.DataFrame, title: str):
    import matplotlib.pyplot as plt

    ok = df.dropna(subset=["reproduced_mean", "paper_value"])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if len(ok):
        lo = float(min(ok.reproduced_mean.min(), ok.paper_value.min()))
        hi = float(max(ok.reproduced_mean.max(), ok.paper_value.max()))
        pad = 0.05 * (hi - lo or 1)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="gray", ls="--", lw=1, label="reproduced = paper")
        for table_id, part in ok.groupby("table"):
            ax.errorbar(part.paper_value, part.reproduced_mean, yerr=part.reproduced_std.fillna(0), fmt="o",
                        ms=5, capsize=2, label=table_id)
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no cell with both a reproduced\nand a paper value yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("paper value")
    ax.set_ylabel("reproduced (mean over seeds)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def build_tables(profile: str, paper: str | None = None, root: Path | None = None) -> list[Path]:
    """Write outputs/<profile>/tables/<paper>.md, .csv and .png for every paper (or one)."""
    import matplotlib.pyplot as plt

    from ..viz import save_figure

    params_root = repo_root() / "params"
    papers = [paper] if paper else sorted(p.name for p in params_root.iterdir() if p.is_dir())
    out = (root or outputs_root()) / profile / "tables"
    written = []
    for name in papers:
        df = collect(profile, name, root)
        if df.empty:
            continue
        csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(csv_path, lambda tmp: df[COLUMNS].to_csv(tmp, index=False))
        text = to_markdown(df, name, profile)
        atomic_write(md_path, lambda tmp: Path(tmp).write_text(text))
        fig = plot_reproduced_vs_paper(df, f"{name} [{profile}]")
        written += [md_path, csv_path, save_figure(fig, out / f"{name}.png")]
        plt.close(fig)
    return written
