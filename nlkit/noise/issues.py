"""Per-sample verdicts: which training labels a run suspects, stored as `per_sample.csv` beside its metrics, and
how well those suspicions find the truly wrong labels (when the clean labels are known).

Every scoring method writes the same leading columns (docs/bench.md, "Which samples do the methods flag?"):

- ``index``: the sample's index in the training set the noise was drawn on, also for a run on a subset of it (so
  the rankings of different runs join on it and the image can be looked up);
- ``given``: the label the run trained on (the noisy label); ``clean``: the clean label, empty where unknown;
- ``issue_score``: higher = more likely a label issue (the method's own score, turned so that it ranks issues);
- ``suspected_issue``: the method's own verdict (True: it treats the given label as wrong);

then its own columns (e.g. ``clean_prob`` of DivideMix, ``corrected_label`` of SLN, ``vote_share`` of LRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from ..io import atomic_write

PER_SAMPLE_FILE = "per_sample.csv"
LEADING = ("index", "given", "clean", "issue_score", "suspected_issue")
FLOAT_FORMAT = "%.6g"   # 6 significant digits: enough to rank 50k samples, small on disk


def per_sample_frame(given, issue_score, suspected, *, clean=None, index=None, **columns) -> pd.DataFrame:
    """The leading columns, then the method's own (in the given order). `clean` None: the column stays empty."""
    given = np.asarray(given, np.int64)
    n = len(given)
    frame = pd.DataFrame({
        "index": np.arange(n) if index is None else np.asarray(index, np.int64),
        "given": given,
        "clean": pd.array(np.asarray(clean, np.int64) if clean is not None else [pd.NA] * n, dtype="Int64"),
        "issue_score": np.asarray(issue_score, np.float64),
        "suspected_issue": np.asarray(suspected, bool),
    })
    for name, values in columns.items():
        frame[name] = np.asarray(values)
    if any(len(v) != n for v in frame.to_dict("series").values()):
        raise UserError("per-sample columns differ in length")
    return frame


def loss_verdicts(probs, given, *, clean=None, index=None, **columns) -> pd.DataFrame:
    """The verdict of one trained classifier (CE and the loss-based rows): its cross-entropy on the given label as
    the score, its prediction as the corrected label, suspected where the prediction differs from the given label."""
    probs = np.asarray(probs, np.float64)
    given = np.asarray(given, np.int64)
    p_given = probs[np.arange(len(given)), given]
    loss = -np.log(np.clip(p_given, 1e-12, 1))
    predicted = probs.argmax(1)
    return per_sample_frame(given, loss, predicted != given, clean=clean, index=index, loss=loss,
                            prob_given=p_given, predicted=predicted, pred_prob=probs.max(1),
                            corrected_label=predicted, **columns)


def write_per_sample(out_dir, frame: pd.DataFrame) -> Path | None:
    """`per_sample.csv` in the run folder, atomic; nothing without a folder (a notebook run without `out`)."""
    if out_dir is None:
        return None
    path = Path(out_dir) / PER_SAMPLE_FILE
    text = frame.to_csv(index=False, float_format=FLOAT_FORMAT)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def load_per_sample(source) -> pd.DataFrame:
    """One run's verdicts: a `per_sample.csv`, its run folder, or a frame already loaded."""
    if isinstance(source, pd.DataFrame):
        frame = source
    else:
        path = Path(source)
        path = path / PER_SAMPLE_FILE if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"{path}: no per-sample verdicts (the run predates them, or has not finished)")
        frame = pd.read_csv(path, dtype={"clean": "Int64"})
    missing = [c for c in LEADING if c not in frame]
    if missing:
        raise UserError(f"per-sample verdicts lack the columns {missing}")
    return frame


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """Most suspected first (issue_score descending; ties in index order)."""
    return frame.sort_values(["issue_score", "index"], ascending=[False, True], kind="stable")


def detection_quality(frame: pd.DataFrame, k: int | None = None) -> dict:
    """How well a run's verdicts find the wrong labels (given != clean): precision and recall of its own verdict
    (`suspected_issue`), ROC AUC of its score, and precision@k of its ranking (k = the number of wrong labels by
    default, where precision@k equals recall@k). Numbers are None where the clean labels are unknown."""
    known = frame["clean"].notna().to_numpy()
    flagged = frame["suspected_issue"].to_numpy(bool)
    out = {"n": int(len(frame)), "n_flagged": int(flagged.sum()), "n_known": int(known.sum()), "n_wrong": None,
           "precision": None, "recall": None, "roc_auc": None, "k": k, "precision_at_k": None}
    if not known.any():
        return out
    f = frame[known]
    wrong = (f["given"].to_numpy() != f["clean"].to_numpy(np.int64))
    flagged = flagged[known]
    k = int(wrong.sum()) if k is None else int(k)
    out.update(n_wrong=int(wrong.sum()), k=k)
    if flagged.any():
        out["precision"] = float(wrong[flagged].mean())
    if wrong.any():
        out["recall"] = float(flagged[wrong].mean())
    if wrong.any() and (~wrong).any():
        from sklearn.metrics import roc_auc_score

        out["roc_auc"] = float(roc_auc_score(wrong, f["issue_score"].to_numpy(np.float64)))
    if k > 0:
        top = ranked(f).head(k)
        out["precision_at_k"] = float((top["given"].to_numpy() != top["clean"].to_numpy(np.int64)).mean())
    return out


@dataclass
class IssueComparison:
    frames: dict            # method -> its per-sample frame
    table: pd.DataFrame     # one row per method: detection quality
    overlap: pd.DataFrame   # method x method: share of the top-k they have in common
    k: int
    reading: str            # one paragraph computed from the numbers
    skipped: list           # runs left out: not the same noise


def compare_issue_rankings(sources: dict, k: int | None = None, *, skip_other_noise: bool = False
                           ) -> IssueComparison:
    """Load the verdicts of several runs on the same noisy labels (method -> per_sample.csv, run folder or frame),
    and set their rankings side by side: detection quality per method and the overlap of their top-k suspects
    (k = the number of wrong labels where the clean labels are known, else the median number flagged).

    Runs whose given labels differ from the first one's did not see the same noise: an error, or with
    `skip_other_noise` left out (named in `skipped`)."""
    if not sources:
        raise UserError("no per-sample verdicts to compare")
    frames = {name: load_per_sample(src) for name, src in sources.items()}
    reference = next(iter(frames.values()))[["index", "given"]].to_numpy()
    skipped = [name for name, f in frames.items() if not np.array_equal(f[["index", "given"]].to_numpy(), reference)]
    if skipped and not skip_other_noise:
        raise UserError(f"{', '.join(skipped)}: other training samples or given labels than "
                        f"{next(iter(frames))}'s (not the same noise)")
    frames = {name: f for name, f in frames.items() if name not in skipped}
    first = next(iter(frames.values()))
    if k is None:
        known = first["clean"].notna()
        k = int((first.loc[known, "given"] != first.loc[known, "clean"]).sum()) if known.any() else \
            int(np.median([f["suspected_issue"].sum() for f in frames.values()]))
    k = max(int(k), 1)
    rows = {name: detection_quality(f, k) for name, f in frames.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")[["n", "n_wrong", "n_flagged", "precision", "recall",
                                                          "roc_auc", "precision_at_k"]]
    tops = {name: set(ranked(f).head(k)["index"]) for name, f in frames.items()}
    names = list(frames)
    overlap = pd.DataFrame([[len(tops[a] & tops[b]) / k for b in names] for a in names], index=names, columns=names)
    return IssueComparison(frames, table, overlap, k, _reading(table, overlap, k), skipped)


def _reading(table: pd.DataFrame, overlap: pd.DataFrame, k: int) -> str:
    parts = []
    p = table["precision_at_k"].dropna().astype(float)
    if len(p):
        best, worst = p.idxmax(), p.idxmin()
        parts.append(f"Of each method's {k} most suspected samples, {p[best]:.0%} carry a wrong label for {best}"
                     + (f" and {p[worst]:.0%} for {worst}" if worst != best else "") + ".")
        auc = table["roc_auc"].dropna().astype(float)
        if len(auc):
            parts.append(f"ROC AUC of the scores ranges from {auc.min():.3f} ({auc.idxmin()}) to "
                         f"{auc.max():.3f} ({auc.idxmax()}).")
    else:
        parts.append("The clean labels are unknown: only the methods' agreement can be read.")
    if len(overlap) > 1:
        pairs = overlap.where(np.triu(np.ones(overlap.shape, bool), 1)).stack().dropna()  # each pair once
        (a, b), (c, d) = pairs.idxmax(), pairs.idxmin()
        if len(pairs) == 1:
            parts.append(f"{a} and {b} share {pairs.max():.0%} of their top-{k} suspects.")
        else:
            parts.append(f"Top-{k} suspects shared by two methods: at most {pairs.max():.0%} ({a} / {b}), at least "
                         f"{pairs.min():.0%} ({c} / {d}).")
    return " ".join(parts)
