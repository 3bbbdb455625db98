"""What a researcher reads first about a paper's runs under a profile: a summary (how many cells have results, how
many are within tolerance of the paper, how many ran on a stand-in or at a reduced budget) and a reading computed
from the numbers themselves (which row leads each column, by how much, against how much seed noise; how far the
comparable cells are from the paper). `nlkit.pipeline.tables` builds the tables these are computed from."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .tables import _scale, _unit, collect, table_meta

# |reproduced - paper| counts as within tolerance up to 1 point of a percentage (2% of the paper's value in a table
# of other units: FID, a fraction), or two standard deviations over the seeds where those are larger;
# `_tables.yaml` may set its own `tolerance:` in the unit of its tables
POINTS_TOLERANCE, RELATIVE_TOLERANCE = 1.0, 0.02


def _ran(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["n_seeds"] > 0] if len(df) else df


def _flag(df: pd.DataFrame, column: str) -> pd.Series:
    return df[column].fillna("").astype(bool) if column in df else pd.Series(False, index=df.index)


def within_tolerance(df: pd.DataFrame, paper: str) -> pd.Series:
    """Per row of `collect`'s frame: True where a Δ exists and |Δ| <= max(tolerance, 2 std over the seeds)."""
    meta = table_meta(paper)
    scale = _scale(meta)
    if meta.get("tolerance") is not None:
        tol = pd.Series(float(meta["tolerance"]), index=df.index)
    elif _unit(meta) == "%":
        tol = pd.Series(POINTS_TOLERANCE, index=df.index)
    else:
        tol = (df["paper_value"] * scale).abs() * RELATIVE_TOLERANCE
    gap = (df["delta"] * scale).abs()
    allowed = np.maximum(2 * df["reproduced_std"].fillna(0) * scale, tol)
    return df["delta"].notna() & (gap <= allowed)


def summary(profile: str, paper: str, df: pd.DataFrame | None = None, root=None) -> dict:
    """Counts for one paper under one profile: cells, with results, comparable with the paper (a Δ: same data and
    budget), within tolerance, on a stand-in, at a reduced budget, not run."""
    df = collect(profile, paper, root) if df is None else df
    ran = _ran(df)
    return {"paper": paper, "profile": profile, "cells": int(len(df)), "with results": int(len(ran)),
            "comparable with the paper": int(ran["delta"].notna().sum()) if len(ran) else 0,
            "within tolerance": int(within_tolerance(ran, paper).sum()) if len(ran) else 0,
            "stand-ins": int(_flag(ran, "stand_in").sum()), "reduced budget": int(_flag(ran, "reduced").sum()),
            "not run": int(len(df) - len(ran))}


def summary_line(s: dict) -> str:
    """The summary as one sentence."""
    parts = [f"{s['with results']} of {s['cells']} cells have results"]
    if s["with results"]:
        parts.append(f"{s['within tolerance']} of {s['comparable with the paper']} comparable with the paper are "
                     "within tolerance" if s["comparable with the paper"] else "none is comparable with the paper")
        cuts = [f"{s[k]} {k}" for k in ("stand-ins", "reduced budget") if s[k]]
        if cuts:
            parts.append(" and ".join(cuts) + " (references, no Δ)")
    return "; ".join(parts) + "."


def reading(df: pd.DataFrame, paper: str, max_columns: int = 4) -> list[str]:
    """Statements computed from the results, one per table with results. Per column with two or more results: the
    leading row, its lead over the second set against the seeds' spread (or flagged as one seed), and the lowest
    row; a table with more such columns than `max_columns` is read as which rows lead how many columns and where
    the largest lead is. Then how far the cells comparable with the paper are from it."""
    meta = table_meta(paper)
    scale, unit, digits = _scale(meta), _unit(meta), 1
    pts = " points" if unit == "%" else (f" {unit}" if unit else "")
    lines = []
    ran = _ran(df)
    for table_id, part in ran.groupby("table", sort=True):
        info = (meta.get("tables") or {}).get(table_id, {})
        higher = info.get("higher_is_better", True)
        refs = set(map(str, info.get("reference_rows") or []))
        leads = []
        for column, grp in part[~part["row"].isin(refs)].groupby("column", sort=False):
            if len(grp) < 2:
                continue
            grp = grp.sort_values("reproduced_mean", ascending=not higher)
            a, b, last = grp.iloc[0], grp.iloc[1], grp.iloc[-1]
            lead = abs(a.reproduced_mean - b.reproduced_mean) * scale
            stds = [r.reproduced_std for r in (a, b) if r.n_seeds > 1]
            spread = max(stds) * scale if len(stds) == 2 else math.nan
            leads.append((column, a, b, last, lead, spread))
        if not leads:
            continue
        if len(leads) <= max_columns:
            said = []
            for column, a, b, last, lead, spread in leads:
                text = (f"{column}: {a.row} {a.reproduced_mean * scale:.{digits}f} leads {b.row} "
                        f"{b.reproduced_mean * scale:.{digits}f} by {lead:.{digits}f}{pts}")
                if not math.isnan(spread):
                    text += (f" (more than twice the seeds' std {spread:.{digits}f})" if lead > 2 * spread else
                             f" (within two std of the seeds, {spread:.{digits}f}: not a separation)")
                if last.row != b.row:
                    text += f", lowest {last.row} {last.reproduced_mean * scale:.{digits}f}"
                said.append(text)
            text = "; ".join(said)
        else:
            counts = pd.Series([a.row for _, a, *_ in leads]).value_counts()
            first = ", ".join(f"{row} {n}" for row, n in counts.items())
            column, a, b, _, lead, _ = max(leads, key=lambda t: t[4])
            text = (f"first in {len(leads)} columns: {first}; largest lead {a.row} over {b.row} by "
                    f"{lead:.{digits}f}{pts} on {column}")
        if all(np.isnan(sp) for *_, sp in leads):
            text += " (one seed: the spread between seeds is unknown)"
        lines.append(f"{table_id}: {text}.")
    comparable = ran[ran["delta"].notna()] if len(ran) else ran
    if len(comparable):
        ok = within_tolerance(comparable, paper)
        worst = comparable.loc[(comparable["delta"]).abs().idxmax()]
        lines.append(f"Against the paper: {int(ok.sum())} of {len(comparable)} comparable cells within tolerance; "
                     f"mean Δ {comparable['delta'].mean() * scale:+.{digits}f}{pts}, largest {worst.row} / "
                     f"{worst.column} {worst.delta * scale:+.{digits}f}{pts}.")
    elif len(ran):
        lines.append("No cell is comparable with the paper (stand-ins or reduced budgets): the paper column is a "
                     "reference only.")
    return lines
