"""Rebuild each paper's tables from the runs' metrics, every reproduced number beside the paper's own.

A cell that was never run (or whose metrics belong to other params) is shown as missing, never filled."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..io import atomic_write, kit_path
from .describe import is_stand_in, reduced_budget, run_label
from .params import PROFILES, find_cells, load_cell, load_yaml
from .currency import current_metrics, outputs_root

COLUMNS = ["paper", "table", "row", "column", "reproduced_mean", "reproduced_std", "n_seeds", "paper_value",
           "delta", "wall_seconds", "device"]
# Columns holding table values: the .csv writes them in the same unit as the .md (percent; see `csv_frame`).
VALUE_COLUMNS = ("reproduced_mean", "reproduced_std", "paper_value", "delta")


UNVERIFIED_NOTE = "° paper value recalled, not yet checked against the paper: unverified."


def table_entries(resolved: dict) -> list[dict]:
    """The table cells a params file feeds: a `tables:` list (one run can fill several cells, e.g. SLN from the
    live net and SLN-MO from the EMA net of the same run), or the single table/row/column/metric/expected form."""
    if resolved.get("tables"):
        return [{"metric": resolved.get("metric", "acc_last"), **entry} for entry in resolved["tables"]]
    return [{"table": resolved["table"], "row": resolved.get("row", resolved["cell_id"]),
             "column": resolved.get("column", resolved.get("metric", "acc_last")),
             "metric": resolved.get("metric", "acc_last"), "expected": resolved.get("expected") or {}}]


def collect(profile: str, paper: str | None = None, root: Path | None = None, data_root=None) -> pd.DataFrame:
    """One row per table cell: the mean/std over the seeds whose metrics match the cell's current params."""
    rows = []
    for cell in find_cells(paper):
        try:
            resolved = load_cell(cell, profile)
            paper_cell = load_cell(cell, "paper")
        except UserError as e:  # one bad params file never hides the other cells' results
            warnings.warn(f"skipping {e}", stacklevel=2)
            continue
        # a run on other data or features than the paper's cannot be compared with the paper's number
        stand_in = is_stand_in(resolved, paper_cell)
        ran = run_label(resolved, paper_cell) if stand_in else ""
        reduced = reduced_budget(resolved)
        runs = [m for seed in resolved.get("seeds") or [0]
                if (m := current_metrics(resolved, int(seed), root, warn=True, data_root=data_root)) is not None]
        walls = [float(m.get("wall_seconds") or 0) for m in runs]
        # a need met by a published file (e.g. the authors' weights) instead of the kit's own run is marked
        published = sorted({str(fp["published"]) for m in runs for fp in (m.get("needs") or {}).values()
                            if isinstance(fp, dict) and fp.get("published")})
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
                "delta": mean - paper_value if values and paper_value is not None and not (stand_in or reduced)
                else math.nan,
                "wall_seconds": float(np.sum(walls)) if walls and values else math.nan,
                "device": "; ".join(devices) if values else "",
                "metric": entry["metric"], "cell": resolved["cell_id"], "dataset": dataset_label(resolved),
                "expected_source": expected.get("source", ""), "expected_tag": expected.get("tag", ""),
                "paper_unverified": paper_value is not None and bool(expected.get("unverified")
                                                                     or expected.get("tag") == "R"),
                "stand_in": stand_in, "ran": ran, "reduced": reduced if values else "",
                "published": ", ".join(published) if values else "",
            })
    return pd.DataFrame(rows)


_DATASET_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "animal10n": "Animal-10N",
                  "clothing1m": "Clothing1M", "red_mini_imagenet": "Red Mini-ImageNet"}


def dataset_label(resolved: dict) -> str:
    """The data a cell ran on, as a column group of a figure names it: 'MNIST 16×16, 5k train', 'CIFAR-10'. The
    training subset is named so that two scales of one dataset read as two groups."""
    name = _DATASET_NAMES.get(str(resolved.get("dataset")), str(resolved.get("dataset") or ""))
    size = resolved.get("image_size")
    label = f"{name} {size}×{size}" if size else name
    subset = resolved.get("train_subset")
    return f"{label}, {subset / 1000:g}k train" if subset else label


def _fmt(value, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def table_meta(paper: str) -> dict:
    path = kit_path("params") / paper / "_tables.yaml"
    if not path.is_file():
        return {}
    try:
        meta = load_yaml(path.read_text(), path) or {}
        if not isinstance(meta, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError) as e:  # titles are presentation: the table is still written
        warnings.warn(f"ignoring unreadable {path}: {' '.join(str(e).split())[:200]}", stacklevel=2)
        return {}
    return meta


def _scale(meta: dict) -> float:
    return float(meta.get("display_scale", 1.0))


def _unit(meta: dict) -> str:
    """The unit of every value of a paper's tables ('%' unless `_tables.yaml` says otherwise); an empty `unit:`
    means the tables mix units and each column names its own (TDSM: label consistency, CAS (%), FID)."""
    return str(meta.get("unit", "%") or "")


def _in_unit(label: str, unit: str) -> str:
    return f"{label} ({unit})" if unit else label


def csv_frame(df: pd.DataFrame, paper: str) -> pd.DataFrame:
    """The .csv: the values in the unit the .md shows (the paper's `display_scale` applied), the unit in the column
    names, and which stand-in ran where the run's data or encoder was not the paper's."""
    meta = table_meta(paper)
    unit = _unit(meta)
    suffix = "_pct" if unit == "%" else f"_{unit}" if unit else ""
    out = df[COLUMNS].copy()
    for col in VALUE_COLUMNS:
        out[col] = (out[col] * _scale(meta)).round(6)
    out.insert(out.columns.get_loc("delta") + 1, "ran_on_stand_in", df["ran"].fillna(""))
    out.insert(out.columns.get_loc("ran_on_stand_in") + 1, "reduced_budget",
               df["reduced"].fillna("") if "reduced" in df else "")
    return out.rename(columns={c: c + suffix for c in VALUE_COLUMNS})


def profiles_with_results(root: Path | None = None) -> list[tuple[str, int]]:
    """(profile, number of finished runs) for every profile with at least one `metrics.json` under outputs/: the
    real-data profiles first (paper, quick, cpu: the committed evidence), then smoke (digits stand-ins, a pipeline
    check), so a reader sees what the kit shows without running anything."""
    base = root or outputs_root()
    order = ("paper", "quick", "cpu", "smoke")
    counts = [(name, sum(1 for _ in (base / name).glob("*/*/seed*/metrics.json")))
              for name in sorted(PROFILES, key=lambda p: order.index(p) if p in order else len(order))]
    return [c for c in counts if c[1]]


def committed_results(paper: str, root: Path | None = None) -> list[dict]:
    """What the real-data runs of a paper show, for the top of its notebook: per profile with results (quick,
    cpu), its reading and the table figure `make reproduce` wrote (`png`, None when absent)."""
    found = []
    for profile, _ in profiles_with_results(root):
        if profile == "smoke":
            continue
        df = collect(profile, paper, root)
        if df.empty or not (df["n_seeds"] > 0).any():
            continue
        png = (root or outputs_root()) / profile / "tables" / f"{paper}.png"
        found.append({"profile": profile, "reading": reading(paper, profile), "runs": int((df["n_seeds"] > 0).sum()),
                      "png": png if png.is_file() else None})
    return found


def reading(paper: str, profile: str) -> str:
    """The paper's note for this profile (what ran and what its numbers show), or ''."""
    return str((table_meta(paper).get("profile_notes") or {}).get(profile) or "").strip()


NOT_RUN_LIST_CHARS = 400  # the longest list of cells not run that the reading view spells out


def to_markdown(df: pd.DataFrame, paper: str, profile: str, hide_empty: bool = False, brief: bool = False) -> str:
    """The paper's tables as Markdown. `hide_empty`: tables none of whose cells has a result are left out and named
    in one line, and so are the cells without a result of the other tables (for reading; the files `make
    reproduce` writes keep every cell). `brief`: no descriptions and no source, wall-time or device columns, and a
    ranked table as its methods x settings grid alone, without the list of its cells (the notebook's one screen per
    paper; the .md keeps them)."""
    meta = table_meta(paper)
    scale = _scale(meta)
    unit = _unit(meta)
    digits = int(meta.get("digits", 2))
    lines = [] if brief else [f"# {meta.get('title', paper)} — profile `{profile}`", ""]  # brief: under a heading
    if meta.get("description") and not brief:
        lines += [meta["description"].strip(), ""]
    if profile in (meta.get("profile_notes") or {}) and not brief:
        lines += [f"**Profile `{profile}`:** {meta['profile_notes'][profile].strip()}", ""]
    ran = int((df["n_seeds"] > 0).sum())
    units = f"Values in {unit}." if unit else "Units as each column names them."
    if not brief:
        lines += [f"{ran} of {len(df)} cells have results; — marks a cell that was not run (or whose data was "
                  f"missing), never a filled-in value. {units}", ""]
    stand_ins = int((df["stand_in"].astype(bool) & (df["n_seeds"] > 0)).sum()) if "stand_in" in df else 0
    if stand_ins:
        lines += [f"{stand_ins} cells ran on a stand-in (other data or features than the paper's, marked "
                  "†): their paper value is a reference only, and no Δ is given.", ""]
    reduced = df[df["reduced"].astype(bool) & (df["n_seeds"] > 0)] if "reduced" in df else df.iloc[:0]
    if len(reduced):
        cuts = "; ".join(sorted(set(reduced["reduced"])))
        lines += [f"{len(reduced)} cells ran at a reduced budget (marked ‡: {cuts}; see the profile note): their "
                  "paper value is the full recipe's, a reference only, and no Δ is given.", ""]
    published = df[df["published"].astype(bool) & (df["n_seeds"] > 0)] if "published" in df else df.iloc[:0]
    if len(published):
        files = ", ".join(sorted(set(", ".join(published["published"]).split(", "))))
        lines += [f"{len(published)} cells ran with published weights ({files}) in place of the artefact of the "
                  "cell they name under `needs` (marked §).", ""]
    empty = [t for t, part in df.groupby("table", sort=True) if not (part["n_seeds"] > 0).any()]
    for table_id, part in df.groupby("table", sort=True):
        if hide_empty and table_id in empty:
            continue
        info = (meta.get("tables") or {}).get(table_id, {})
        lines += [f"{'####' if brief else '##'} {table_id}: {info.get('title', '')}".rstrip(": "), ""]
        if info.get("description") and not brief:
            lines += [info["description"].strip(), ""]
        if brief and info.get("ranks"):  # for reading, the methods x settings grid says it all in a screen
            lines += rank_grid_markdown(part, info, scale, digits)
            continue
        not_run = part[part["n_seeds"] == 0] if hide_empty else part.iloc[:0]
        part = part[part["n_seeds"] > 0] if hide_empty else part
        best_test = sorted({m for m in part["metric"] if "best_test" in str(m)}) if "metric" in part else []
        if best_test:
            lines += [f"Reproduced here: each run's best test epoch ({', '.join(best_test)}), mean ± std over the "
                      "seeds, as the reference values report it.", ""]
        if brief:
            lines += [f"| row | column | {_in_unit('reproduced', unit)} | n seeds | {_in_unit('paper', unit)} | Δ |",
                      "|---|---|---|---|---|---|"]
        else:
            lines += [f"| row | column | {_in_unit('reproduced', unit)} | n seeds | {_in_unit('paper', unit)} | Δ | "
                      "source of the paper value | wall s | device |",
                      "|---|---|---|---|---|---|---|---|---|"]
        for _, r in part.iterrows():
            rep = _fmt(r.reproduced_mean * scale, digits)
            if r.n_seeds > 1:
                rep += f" ± {_fmt(r.reproduced_std * scale, digits)}"
            delta = _fmt(r.delta * scale, digits)
            if r.get("stand_in") and r.n_seeds > 0:
                rep += f" † ({r.ran})"
                delta = "— (stand-in)"
            elif r.get("reduced") and r.n_seeds > 0:
                rep += " ‡"
                delta = "— (reduced)"
            if r.get("published") and r.n_seeds > 0:
                rep += " §"
            paper_text = _fmt(r.paper_value * scale, digits) + (" °" if r.get("paper_unverified") else "")
            if brief:
                lines.append(f"| {r.row} | {r.column} | {rep} | {r.n_seeds} | {paper_text} | {delta} |")
                continue
            lines.append(f"| {r.row} | {r.column} | {rep} | {r.n_seeds} | {paper_text} | "
                         f"{delta} | {r.expected_source} {('[' + r.expected_tag + ']') if r.expected_tag else ''} | "
                         f"{_fmt(r.wall_seconds, 1)} | {r.device or '—'} |")
        lines.append("")
        if len(not_run):
            per_row = not_run.groupby("row", sort=False)["column"].agg(list)
            listed = "; ".join(f"{row} ({', '.join(map(str, cols))})" for row, cols in per_row.items())
            if len(listed) > NOT_RUN_LIST_CHARS:  # a paragraph nobody reads: count them, point to the full table
                listed = (f"{len(per_row)} rows, e.g. {', '.join(map(str, per_row.index[:3]))}; every one is listed "
                          f"in `outputs/{profile}/tables/{paper}.md`")
            lines += [f"{len(not_run)} cell{'s' if len(not_run) > 1 else ''} not run: {listed}.", ""]
        if "paper_unverified" in part and part["paper_unverified"].astype(bool).any():
            lines += [UNVERIFIED_NOTE, ""]
        if info.get("ranks"):
            lines += rank_grid_markdown(part, info, scale, digits)
    if hide_empty and empty:
        lines += [f"Not shown, no results under `{profile}`: {', '.join(empty)}.", ""]
    return "\n".join(lines)


def _ordered(values, preferred) -> list:
    """`values` in the order `_tables.yaml` lists them (`rows:` / `columns:`), the rest after in first-seen order."""
    seen = list(dict.fromkeys(values))
    preferred = [str(v) for v in preferred or []]
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


def rank_grid(part: pd.DataFrame, info: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One table as rows x columns of reproduced means, and each row's rank within its column (1 = highest; ties
    share the better rank). Only complete columns are ranked (every ranked row has a result: a rank among the
    methods that happened to run says little), and the `reference_rows` of `_tables.yaml` (e.g. the kNN vote, not
    a method) never are. For a table with `ranks: true` in `_tables.yaml`."""
    means = part.pivot_table(index="row", columns="column", values="reproduced_mean", aggfunc="first",
                             dropna=False)
    means = means.reindex(index=_ordered(part["row"], info.get("rows")),
                          columns=_ordered(part["column"], info.get("columns")))
    higher_is_better = info.get("higher_is_better", True)
    methods = [r for r in means.index if r not in set(map(str, info.get("reference_rows") or []))]
    complete = [c for c in means.columns if means.loc[methods, c].notna().all()]
    ranks = pd.DataFrame(np.nan, index=means.index, columns=means.columns)
    if methods and complete:
        ranks.loc[methods, complete] = means.loc[methods, complete].rank(axis=0, method="min",
                                                                         ascending=not higher_is_better)
    return means, ranks


def rank_grid_markdown(part: pd.DataFrame, info: dict, scale: float, digits: int) -> list[str]:
    """The methods x settings grid of a ranked table: mean ± std (rank in the column), and each row's mean rank over
    the columns where it has a result."""
    means, ranks = rank_grid(part, info)
    stds = part.pivot_table(index="row", columns="column", values="reproduced_std", aggfunc="first", dropna=False)
    seeds = part.pivot_table(index="row", columns="column", values="n_seeds", aggfunc="first", dropna=False)
    order = "highest" if info.get("higher_is_better", True) else "lowest"
    lines = [f"Rank in each column (1 = {order}; ties share a rank; only columns where every method has a result "
             "are ranked, and reference rows never are):", "",
             "| | " + " | ".join(map(str, means.columns)) + " | mean rank |",
             "|---|" + "---|" * len(means.columns) + "---|"]
    for row in means.index:
        cells = []
        for column in means.columns:
            mean = means.at[row, column]
            if math.isnan(mean):
                cells.append("—")
                continue
            text = _fmt(mean * scale, digits)
            n = seeds.at[row, column] if row in seeds.index and column in seeds.columns else 0
            if n and n > 1:
                text += f" ± {_fmt(stds.at[row, column] * scale, digits)}"
            rank = ranks.at[row, column]
            cells.append(text if math.isnan(rank) else f"{text} (#{int(rank)})")
        ranked = ranks.loc[row].dropna()
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {_fmt(ranked.mean(), 1) if len(ranked) else '—'} |")
    return lines + [""]


def plot_rank_heatmap(df: pd.DataFrame, title: str, paper: str):
    """Methods x settings at a glance, one panel per table, sized to be read where it is shown (about 10 inches at
    100 dpi, text 10 pt): each cell annotated with its value and, in a complete column, its rank. Colour is each
    column's own scale, from its lowest to its highest value (the columns are different datasets and noise rates,
    whose accuracies are not comparable); the dataset is named over each group of columns; reference rows sit
    below a line, unranked; a cell without a result is grey with a dash."""
    import matplotlib.pyplot as plt

    meta = table_meta(paper)
    scale, digits = _scale(meta), int(meta.get("digits", 2))
    tables = sorted(df["table"].unique()) if len(df) else []
    n = max(len(tables), 1)
    first = df[df["table"] == tables[0]] if tables else df
    n_rows, n_cols = max(first["row"].nunique(), 1), max(first["column"].nunique(), 1)
    # panels stacked: the settings run along the width, which a table of many columns needs
    fig, axes = plt.subplots(n, 1, figsize=(min(max(6.0, 0.78 * n_cols + 1.9), 10.5), (0.42 * n_rows + 2.0) * n + 0.5),
                             squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, table_id in zip(axes.flat, tables or [None]):
        info = (meta.get("tables") or {}).get(table_id, {})
        part = df[df["table"] == table_id]
        means, ranks = rank_grid(part, info) if len(part) else (pd.DataFrame(), pd.DataFrame())
        values = means.to_numpy(dtype=float) * scale
        higher = info.get("higher_is_better", True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-empty column has no range
            lo, hi = np.nanmin(values, axis=0, keepdims=True), np.nanmax(values, axis=0, keepdims=True)
        norm = np.where(hi > lo, (values - lo) / np.where(hi > lo, hi - lo, 1.0), 0.5)
        if not higher:
            norm = 1.0 - norm
        rgba = cmap(np.nan_to_num(norm, nan=0.0))
        rgba[np.isnan(values)] = (0.87, 0.87, 0.87, 1.0)
        if values.size:
            ax.imshow(rgba, aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            if math.isnan(value):
                ax.text(j, i, "—", ha="center", va="center", color="dimgray", fontsize=10)
                continue
            rank = ranks.iat[i, j]
            text = f"{value:.{min(digits, 1)}f}" + ("" if math.isnan(rank) else f"\n#{int(rank)}")
            ax.text(j, i, text, ha="center", va="center", fontsize=10, linespacing=1.1,
                    color="black" if norm[i, j] > 0.55 else "white")
        labels = [str(c) for c in means.columns]
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=10)
        ax.set_yticks(range(len(means.index)), [str(r) for r in means.index], fontsize=10)
        references = [k for k, r in enumerate(means.index) if r in set(map(str, info.get("reference_rows") or []))]
        for k in references:
            ax.get_yticklabels()[k].set_fontstyle("italic")
        if references:
            ax.axhline(min(references) - 0.5, color="white", lw=4)
        # the dataset over each run of columns that share it
        datasets = part.groupby("column")["dataset"].first() if "dataset" in part else pd.Series(dtype=str)
        groups: list[list] = []
        for j, column in enumerate(means.columns):
            name = str(datasets.get(column, "") or "")
            if groups and groups[-1][0] == name:
                groups[-1][2] = j
            else:
                groups.append([name, j, j])
        for g, (name, start, end) in enumerate(groups):
            if g:
                ax.axvline(start - 0.5, color="white", lw=4)
            ax.text((start + end) / 2, -0.62, name, ha="center", va="bottom", fontsize=10, fontweight="bold")
        name = f"{table_id}: {info['title']}" if info.get("title") else str(table_id or "")
        ax.set_title("\n".join(_wrap(name, 95)), fontsize=10, pad=20)
    fig.suptitle("\n".join(_wrap(title, 95)), fontsize=11)
    note = ("colour: each column on its own scale, from its lowest value (dark) to its highest (light); #k: rank in "
            "the column (1 = best), given only where every method has a result; italic rows: references, not "
            "ranked; grey —: not run")
    fig.text(0.5, 0.005, "\n".join(_wrap(note, 120)), ha="center", va="bottom", fontsize=9, color="dimgray")
    fig.tight_layout(rect=(0, 0.045, 1, 1))
    return fig


def table_figure(df: pd.DataFrame, paper: str, profile: str):
    """The figure of a paper's tables: the rank heat map for a study without paper values (the benchmark), else
    reproduced against paper values."""
    title = table_meta(paper).get("title", paper)
    if table_meta(paper).get("figure") == "rank_heatmap":
        return plot_rank_heatmap(df, f"{title}, profile {profile}", paper)
    return plot_reproduced_vs_paper(df, f"{title} — reproduced vs paper, profile {profile}", paper=paper)


_MARKERS = "osD^vP*Xph<>"


def plot_reproduced_vs_paper(df: pd.DataFrame, title: str, paper: str | None = None):
    """One panel per table, titled with the table's name: reproduced against paper value (both in the unit of the
    .md), the identity line, one marker per column of the table; hollow markers are stand-in runs (not comparable
    with the paper). Points are labelled with their row, so overlapping series stay readable."""
    import matplotlib.pyplot as plt

    meta = table_meta(paper or (df["paper"].iloc[0] if len(df) else ""))
    scale, unit = _scale(meta), _unit(meta)
    every = sorted(df["table"].unique()) if len(df) else []
    plotted = df.dropna(subset=["reproduced_mean"]) if len(df) else df
    tables = [t for t in every if t in set(plotted["table"])] or every[:1]
    left_out = [t for t in every if t not in tables]
    n = max(len(tables), 1)
    cols = min(n, 2)  # two panels of 5 inches: about 1000 px at 100 dpi, the width of a notebook's output area
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0 * cols, 8.0), 4.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, table_id in zip(axes.flat, tables or [None]):
        part = df[df["table"] == table_id] if table_id is not None else df
        info = (meta.get("tables") or {}).get(table_id, {})
        name = f"{table_id}: {info['title']}" if info.get("title") else str(table_id or "")
        ax.set_title("\n".join(_wrap(name, 52)), fontsize=10)
        ok = part.dropna(subset=["reproduced_mean", "paper_value"])
        missing = int(part["paper_value"].isna().sum())
        if not len(ok):
            _reproduced_bars(ax, part.dropna(subset=["reproduced_mean"]), scale, unit)
            continue
        x, y = ok.paper_value * scale, ok.reproduced_mean * scale
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        pad = 0.08 * (hi - lo or max(abs(hi), 1))
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="gray", ls="--", lw=1, label="reproduced = paper")
        for i, (column, grp) in enumerate(ok.groupby("column", sort=True)):
            colour = f"C{i % 10}"
            stand = grp["stand_in"].astype(bool) if "stand_in" in grp else pd.Series(False, index=grp.index)
            if "reduced" in grp:
                stand = stand | grp["reduced"].astype(bool)
            for hollow, sub in ((False, grp[~stand]), (True, grp[stand])):
                if not len(sub):
                    continue
                ax.errorbar(sub.paper_value * scale, sub.reproduced_mean * scale,
                            yerr=sub.reproduced_std.fillna(0) * scale, fmt=_MARKERS[i % len(_MARKERS)], ms=7,
                            capsize=2, color=colour, mfc="none" if hollow else colour, alpha=0.85,
                            label=f"{column}" + (" (stand-in or reduced)" if hollow else ""))
        # coincident points get one stacked label, not labels printed over each other
        span = (hi - lo) or 1.0
        spots: dict = {}
        for _, r in ok.iterrows():
            key = (round(r.paper_value * scale / span * 40), round(r.reproduced_mean * scale / span * 40))
            spots.setdefault(key, (r.paper_value * scale, r.reproduced_mean * scale, []))[2].append(str(r.row))
        for px, py, names in spots.values():
            ax.annotate("\n".join(dict.fromkeys(names)), (px, py), fontsize=9, xytext=(5, -3),
                        textcoords="offset points", va="top")
        ax.set_xlim(lo - pad, hi + pad), ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(_in_unit("paper value", unit))
        seeds = int(ok["n_seeds"].max())
        ax.set_ylabel(_in_unit("reproduced, mean over seeds" if seeds > 1 else "reproduced (one seed)", unit))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8.5, loc="best")  # the corner with fewest points
        if missing:
            ax.text(0.98, 0.02, f"{missing} cells without a paper value not shown", ha="right", va="bottom",
                    fontsize=8.5, transform=ax.transAxes, color="gray")
    fig.suptitle("\n".join(_wrap(title, int(fig.get_size_inches()[0] * 11))), fontsize=12)  # about 11 characters an inch
    notes = []
    hollow = df["stand_in"].astype(bool) if "stand_in" in df else pd.Series(False, index=df.index)
    if "reduced" in df:
        hollow = hollow | df["reduced"].astype(bool)
    if bool((hollow & (df["n_seeds"] > 0)).any()):
        notes.append("hollow markers: runs on a stand-in (other data or features than the paper's cell) or at a "
                     "reduced budget; their paper value is a reference, not a target")
    if left_out:
        notes.append(f"not drawn (no reproduced value yet): {', '.join(left_out)}; "
                     "see the .md")
    if notes:
        lines = [line for note in notes for line in _wrap(note, int(fig.get_size_inches()[0] * 12))]  # fits the figure's width
        fig.text(0.5, 0.005, "\n".join(lines), ha="center", va="bottom", fontsize=9, color="dimgray")
        fig.tight_layout(rect=(0, 0.03 * len(lines) / max(rows, 1), 1, 1))
    else:
        fig.tight_layout()
    return fig


def _reproduced_bars(ax, part: pd.DataFrame, scale: float, unit: str) -> None:
    """A table whose reproduced cells have no paper value to set them against (the kit's own reference rows, a
    reduced run of a row the paper does not report): the reproduced values as bars, one per row and column, so
    the panel shows the numbers instead of an empty box."""
    labels = [f"{r.row} · {r.column}" for _, r in part.iterrows()]
    values = (part["reproduced_mean"] * scale).to_numpy()
    hollow = part["stand_in"].astype(bool) | part["reduced"].astype(bool) if "reduced" in part else \
        pd.Series(False, index=part.index)
    pos = np.arange(len(values))[::-1]
    ax.barh(pos, values, color=["none" if h else "C0" for h in hollow], edgecolor="C0", height=0.6)
    for y, v in zip(pos, values):
        ax.text(v, y, f" {v:.1f}", va="center", fontsize=9)
    ax.set_yticks(pos, ["\n".join(_wrap(label, 50)) for label in labels], fontsize=8.5)
    ax.set_xlabel(_in_unit("reproduced (no paper value for these cells)", unit))
    ax.set_xlim(0, max(float(np.nanmax(values)) * 1.18, 1e-9) if len(values) else 1)
    ax.set_ylim(-0.7, max(len(values), 4) - 0.3)  # a lone bar stays a bar, not a filled panel
    ax.grid(alpha=0.3, axis="x")


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def build_tables(profile: str, paper: str | None = None, root: Path | None = None, data_root=None) -> list[Path]:
    """Write outputs/<profile>/tables/<paper>.md, .csv and .png for every paper (or one); `data_root` is where the
    runs looked for published weights (a run counts only if what it used is still what would be used)."""
    import matplotlib.pyplot as plt

    from ..viz import save_figure

    params_root = kit_path("params")
    papers = [paper] if paper else sorted(p.name for p in params_root.iterdir() if p.is_dir())
    out = (root or outputs_root()) / profile / "tables"
    written = []
    for name in papers:
        df = collect(profile, name, root, data_root)
        if df.empty or (paper is None and not (df["n_seeds"] > 0).any()):
            continue  # a paper none of whose cells ran under this profile gets no table of dashes
        csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
        out.mkdir(parents=True, exist_ok=True)
        table = csv_frame(df, name)
        atomic_write(csv_path, lambda tmp: table.to_csv(tmp, index=False))
        text = to_markdown(df, name, profile)
        atomic_write(md_path, lambda tmp: Path(tmp).write_text(text))
        fig = table_figure(df, name, profile)
        # the heat map is drawn at the size it is read (10 pt text): saved at 100 dpi, shown 1:1 in a notebook
        dpi = 100 if table_meta(name).get("figure") == "rank_heatmap" else 130
        written += [md_path, csv_path, save_figure(fig, out / f"{name}.png", dpi=dpi)]
        plt.close(fig)
    return written
