"""Readings: one to three sentences computed from a run's own numbers, printed after each figure and table of the
paper notebooks. A reading says what this run shows, never what the paper claims; where the run cannot show the
paper's effect (a smoke run: stand-in data at a toy budget; or a difference within the noise of the measurement)
it says so.

Accuracies may come as fractions or percentages (both are read as percentages). Differences count as real only
beyond a margin: two binomial standard errors where the number of samples is known, else a fixed floor."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

SMOKE_NOTE = ("Smoke run (stand-in data, a few epochs): it checks the pipeline and does not show the paper's "
              "effect.")
MIN_POINTS = 1.0        # smallest accuracy difference (points) read as real when the sample count is unknown
MIN_SHARE = 0.03        # the same for shares and AUCs on [0, 1]


def smoke_note(profile: str | None) -> str:
    """The smoke caveat for a run under the smoke profile, else ''."""
    return SMOKE_NOTE if profile == "smoke" else ""


def _join(*sentences: str) -> str:
    return " ".join(s for s in sentences if s)


def _percent(values) -> np.ndarray:
    """Accuracies as percentages, whether recorded as fractions (<= 1) or percentages."""
    a = np.asarray(values, dtype=float)
    finite = a[np.isfinite(a)]
    return a * 100 if len(finite) and finite.max() <= 1.0 else a


def _as_percent(value: float) -> float:
    return float(value) * 100 if value is not None and abs(float(value)) <= 1.0 else float(value)


def share_margin(p: float, n: int | None, floor: float = MIN_SHARE) -> float:
    """Two binomial standard errors of a share p measured on n samples (at least `floor`)."""
    if not n:
        return floor
    p = min(max(float(p), 0.0), 1.0)
    return max(floor, 2 * math.sqrt(p * (1 - p) / n))


def accuracy_margin(acc_percent: float, n: int | None) -> float:
    """`share_margin` in points, for an accuracy in percent on n test samples (at least MIN_POINTS)."""
    return 100 * share_margin(acc_percent / 100, n, MIN_POINTS / 100)


def auc_margin(auc: float, n_pos: int | None, n_neg: int | None) -> float:
    """Two standard errors of an AUC (Hanley and McNeil 1982), at least MIN_SHARE."""
    if not n_pos or not n_neg:
        return MIN_SHARE
    a = min(max(float(auc), 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    return max(MIN_SHARE, 2 * math.sqrt(max(var, 0.0)))


def rank_auc(score, positive) -> float:
    """ROC AUC of `score` ranking the `positive` samples first (ties count half); nan without both groups."""
    from sklearn.metrics import roc_auc_score

    score, positive = np.asarray(score, float), np.asarray(positive, bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def _chance_words(value: float, chance: float, margin: float, what: str) -> str:
    if value > chance + margin:
        return f"above {what}"
    if value < chance - margin:
        return f"below {what}"
    return f"at {what} (within {margin:.2f})"


# ---------------------------------------------------------------------------------------- classifier training

def _test_column(history: pd.DataFrame, test_col: str | None) -> str | None:
    if test_col is not None:
        return test_col if test_col in history and history[test_col].notna().any() else None
    for col in ("test_acc", "test_acc_live", "test_acc_ema"):
        if col in history and history[col].notna().any():
            return col
    return next((c for c in history.columns if c.startswith("test_acc") and history[c].notna().any()), None)


def training_curve(history: pd.DataFrame, *, test_col: str | None = None, noise_rate: float | None = None,
                   n_test: int | None = None, profile: str | None = None) -> str:
    """Peak test accuracy and its epoch against the last epoch, the drop in points, and whether the drop comes
    with memorisation: training accuracy against the given labels above the share of correct labels (1 - noise
    rate) means the net predicts wrong labels on training samples it has fitted."""
    col = _test_column(history, test_col)
    if col is None or not len(history):
        return _join("No test accuracy recorded yet.", smoke_note(profile))
    rows = history.dropna(subset=[col])
    acc = _percent(rows[col])
    epochs = rows["epoch"].to_numpy() if "epoch" in rows else np.arange(1, len(rows) + 1)
    at = int(np.argmax(acc))
    peak, last = float(acc[at]), float(acc[-1])
    drop, margin = peak - last, accuracy_margin(peak, n_test)
    fell = drop > margin
    text = (f"Test accuracy peaked at {peak:.1f}% (epoch {epochs[at]}) and ended at {last:.1f}% (epoch {epochs[-1]}): "
            + (f"a drop of {drop:.1f} points." if fell else f"within {margin:.1f} points of the peak, no fall."))
    fit = None
    if "train_acc_noisy" in rows and rows["train_acc_noisy"].notna().any() and noise_rate:
        given = _percent(rows["train_acc_noisy"])
        correct = 100 * (1 - float(noise_rate))
        fitted_wrong = given[-1] > correct + MIN_POINTS
        if fell and fitted_wrong:
            fit = (f"Training accuracy against the given labels rose from {given[at]:.1f}% to {given[-1]:.1f}%, past "
                   f"the {correct:.0f}% of labels that are correct: the net fits wrong labels, so the fall is "
                   "memorisation.")
        elif fell:
            fit = (f"Training accuracy against the given labels ends at {given[-1]:.1f}%, not above the {correct:.0f}% "
                   "of correct labels: the fall is not memorisation of the wrong labels.")
        elif fitted_wrong:
            fit = (f"Training accuracy against the given labels reaches {given[-1]:.1f}%, past the {correct:.0f}% of "
                   "correct labels: the net fits wrong labels, yet test accuracy held.")
        else:
            fit = (f"Training accuracy against the given labels ends at {given[-1]:.1f}%, not above the {correct:.0f}% "
                   "of correct labels: no memorisation in this run.")
    elif fell:
        fit = ("No training accuracy against the given labels is recorded: whether the fall is memorisation is not "
               "measured.")
    return _join(text, fit, smoke_note(profile))


def final_accuracy(metrics: dict, *, n_test: int | None = None, profile: str | None = None,
                   best_epoch_key: str | None = "best_epoch") -> str:
    """The protocol's last-epoch accuracy beside the best-test-epoch one (an oracle; its epoch where
    `best_epoch_key` names it)."""
    last, best = metrics.get("acc_last"), metrics.get("acc_best_test")
    if last is None:
        return _join("No test accuracy was recorded (the run stopped before its first evaluation).",
                     smoke_note(profile))
    last = _as_percent(last)
    text = f"Last-epoch test accuracy {last:.1f}% (the protocol's number)"
    if best is not None:
        best = _as_percent(best)
        epoch = metrics.get(best_epoch_key) if best_epoch_key else None
        text += f"; the best test epoch{f' ({epoch})' if epoch is not None else ''} reached {best:.1f}%"
        lost, margin = best - last, accuracy_margin(best, n_test)
        text += (f", {lost:.1f} points more than the end." if lost > margin else
                 ": the last epoch is the best." if lost < 0.05 else
                 f", within {margin:.1f} points of the end: nothing was lost after the best epoch.")
    else:
        text += "."
    return _join(text, smoke_note(profile))


def against_paper(reproduced: float | None, paper: float | None, *, n_test: int | None = None,
                  what: str = "this cell") -> str:
    """A comparable run's number against the paper's: the difference in points and whether it is within the
    margin of the test set."""
    if reproduced is None or paper is None:
        return f"{what}: no {'result' if reproduced is None else 'paper value'} to compare."
    gap, margin = float(reproduced) - float(paper), accuracy_margin(float(paper), n_test)
    return (f"{what}: {reproduced:.1f} against the paper's {paper:.1f} ({gap:+.1f} points), "
            + (f"within {margin:.1f}: reproduced." if abs(gap) <= margin else
               f"beyond {margin:.1f}: {'above' if gap > 0 else 'below'} the paper."))


def versus(accuracies: dict[str, float], *, expected_best: str, n_test: int | None = None,
           profile: str | None = None) -> str:
    """Two or more methods' test accuracies on the same data: who leads, by how much, against the margin, and
    whether that is the ordering the paper expects (`expected_best` leading)."""
    ranked = sorted(((k, _as_percent(v)) for k, v in accuracies.items() if v is not None), key=lambda kv: -kv[1])
    if len(ranked) < 2:
        return _join("Only one method has a result: nothing to compare.", smoke_note(profile))
    (lead, a), (second, b) = ranked[0], ranked[1]
    margin = accuracy_margin(a, n_test)
    listed = ", ".join(f"{k} {v:.1f}%" for k, v in ranked)
    if a - b <= margin:
        verdict = f"the gap ({a - b:.1f} points) is within {margin:.1f}: no separation in this run."
    elif lead == expected_best:
        verdict = (f"{lead} leads by {a - b:.1f} points, the paper's ordering" +
                   (", but a smoke run is no evidence for it." if profile == "smoke" else "."))
    else:
        verdict = (f"{lead} leads by {a - b:.1f} points: the reverse of the paper's ordering ({expected_best} "
                   "first), so this run does not show the paper's effect.")
    return _join(f"Test accuracy {listed}; {verdict}", smoke_note(profile))


def confidence(max_prob, is_noisy, *, profile: str | None = None) -> str:
    """Mean maximum probability on clean-label and noisy-label samples, and whether low confidence separates
    the noisy labels (AUC against its margin)."""
    p, noisy = np.asarray(max_prob, float), np.asarray(is_noisy, bool)
    if not noisy.any():
        return _join(f"No training sample carries a noisy label (mean max probability {p.mean():.2f}): nothing to "
                     "separate.", smoke_note(profile))
    clean_mean, noisy_mean = float(p[~noisy].mean()), float(p[noisy].mean())
    auc = rank_auc(-p, noisy)
    margin = auc_margin(auc, int(noisy.sum()), int((~noisy).sum()))
    text = (f"Mean max probability {clean_mean:.2f} on clean-label samples, {noisy_mean:.2f} on noisy-label ones; "
            f"low confidence flags the noisy labels with AUC {auc:.2f}")
    if auc > 0.5 + margin:
        verdict = ": the net separates them" + (
            ", though it is confident on both (the wrong labels are largely memorised)." if noisy_mean > 0.9 else ".")
    else:
        verdict = f", {_chance_words(auc, 0.5, margin, 'chance')}: the net does not separate them."
    return _join(text + verdict, smoke_note(profile))


def dissection(analysis: pd.DataFrame, *, profile: str | None = None) -> str:
    """From a per-sample frame (loss, pred, given, clean, noisy): what the net predicts on the noisy-label samples,
    and whether the highest-loss tenth holds more wrong labels than the set."""
    a = analysis
    noisy = a["noisy"].to_numpy(bool)
    if not noisy.any():
        return _join("No noisy-label samples: every bin is clean-label.", smoke_note(profile))
    pred = a["pred"].to_numpy()
    to_clean = float(np.mean(pred[noisy] == a["clean"].to_numpy()[noisy]))
    to_given = float(np.mean(pred[noisy] == a["given"].to_numpy()[noisy]))
    top = a.nlargest(max(1, len(a) // 10), "loss")
    rate, top_rate = float(noisy.mean()), float(top["noisy"].mean())
    margin = share_margin(rate, len(top))
    text = (f"On the noisy-label samples the net predicts the clean class for {to_clean:.0%} and the given (wrong) "
            f"label for {to_given:.0%}; the highest-loss tenth holds {top_rate:.0%} noisy labels against "
            f"{rate:.0%} overall")
    verdict = (": the loss ranks the wrong labels first." if top_rate > rate + margin else
               f", within {margin:.0%}: the loss does not single out the wrong labels.")
    return _join(text + verdict, smoke_note(profile))


# ---------------------------------------------------------------------------------------- DivideMix / InstanceGM

def division(history: pd.DataFrame, *, noise_rate: float | None, n_train: int | None = None,
             profile: str | None = None) -> str:
    """The GMM division's AUC (mean over the networks) at the first and last division, against chance, and the
    precision of its labelled set against that of a random split (1 - noise rate)."""
    aucs = [c for c in ("auc_net1", "auc_net2") if c in history and history[c].notna().any()]
    if not aucs:
        return _join("No division was made (CE, or the run ended within the warm-up).", smoke_note(profile))
    rows = history.dropna(subset=aucs[:1])
    auc = rows[aucs].mean(axis=1).to_numpy()
    first, last = float(auc[0]), float(auc[-1])
    n_noisy = int(round(noise_rate * n_train)) if noise_rate is not None and n_train else None
    margin = auc_margin(last, n_noisy, n_train - n_noisy if n_noisy is not None else None)
    text = (f"The division's AUC against the true noise mask went from {first:.2f} (epoch {rows['epoch'].iloc[0]}) "
            f"to {last:.2f} (epoch {rows['epoch'].iloc[-1]}), {_chance_words(last, 0.5, margin, 'chance')}")
    if last > 0.5 + margin:
        text += ": the clean probability ranks the clean samples first."
    elif last < 0.5 - margin:
        text += ": the division ranks wrong labels as clean, so the labelled set is biased towards them."
    else:
        text += ": the division finds nothing."
    prec = [c for c in ("precision_net1", "precision_net2") if c in rows and rows[c].notna().any()]
    extra = ""
    if prec and noise_rate is not None:
        p = float(rows[prec].iloc[-1].mean())
        share = 1 - float(noise_rate)
        extra = (f"Its labelled set is {p:.0%} clean against {share:.0%} for a random split"
                 + (" (better)." if p > share + share_margin(share, n_train) else " (no better)."))
    return _join(text, extra, smoke_note(profile))


def decoder_range(lam) -> str:
    """The range of the generative module's decoder parameter λ: above 0.5 everywhere, the continuous-Bernoulli
    mean cannot fall below 0.5, so no reconstruction can be dark."""
    lam = np.asarray(lam, float)
    lo, hi = float(lam.min()), float(lam.max())
    return (f"Decoder λ spans {lo:.2f} to {hi:.2f}: "
            + ("above 0.5 everywhere, so the reconstructions can only be light." if lo > 0.5 else
               "it reaches below 0.5, so dark pixels can be reconstructed."))


# ---------------------------------------------------------------------------------------- TDSM

def transition(S, classes=None) -> str:
    """How much the injected noise flips and what it leaves DSM: p(clean = c | noisy = c), the mean and lowest."""
    from ..methods.tdsm import reverse_matrix

    S = np.asarray(S, float)
    diag = np.diag(reverse_matrix(S))
    worst = int(np.argmin(diag))
    name = classes[worst] if classes is not None else worst
    return (f"The noise flips {1 - np.diag(S).mean():.0%} of the labels on average; a DSM sample of class c is "
            f"truly c with probability {diag.mean():.0%} on average (lowest {diag[worst]:.0%}, class {name}), the "
            "ceiling of DSM's label consistency.")


def toy_consistency(table: pd.DataFrame, *, ideal_dsm: float, num_classes: int, n_per_method: int | None = None,
                    profile: str | None = None) -> str:
    """The toy's label consistency per method against chance and the ideal DSM, and whether TDSM beats DSM. The
    toy is the paper's own 2-D experiment (no stand-in), so a smoke run of it can show the effect: the smoke
    caveat is added only where it does not."""
    lc = dict(zip(table["method"], table["label_consistency"]))
    listed = ", ".join(f"{k.upper().replace('SDSM', 'S-DSM')} {v:.2f}" for k, v in lc.items())
    text = f"Label consistency {listed} (chance {1 / num_classes:.2f}, ideal DSM {ideal_dsm:.2f})."
    verdict, shown = "", False
    if "tdsm" in lc and "dsm" in lc:
        gap, margin = lc["tdsm"] - lc["dsm"], share_margin(lc["dsm"], n_per_method)
        shown = gap > margin
        verdict = (f"TDSM puts {gap:.2f} more of its samples on the requested clean class than DSM." if shown
                   else f"TDSM and DSM differ by {gap:+.2f}, within {margin:.2f}: this run does not show TDSM's "
                        "correction.")
    return _join(text, verdict, "" if shown else smoke_note(profile))


def classifier_vs_sigma(diag: pd.DataFrame, *, num_classes: int, n: int | None = None,
                        profile: str | None = None) -> str:
    """The noise-conditioned classifier at small and large σ against chance; whether at small σ it follows the
    clean labels (label correction) or the noisy ones (memorised: the TDSM weights fall back to DSM's)."""
    chance = 1 / num_classes
    small, large = diag[diag["sigma"] <= 0.5], diag[diag["sigma"] >= 5]
    small = small if len(small) else diag.iloc[:1]
    lo = float(small["clean_acc"].mean())
    margin = share_margin(lo, n)
    text = f"At σ ≤ 0.5 argmax q matches the clean label for {lo:.0%} of the samples (chance {chance:.0%})"
    if len(large):
        text += f", at σ ≥ 5 for {float(large['clean_acc'].mean()):.0%}"
    text += "."
    if lo <= chance + margin:
        verdict = "Even at small σ it is at chance: its weights carry no label correction."
    elif "noisy_agreement" in diag and diag["noisy_agreement"].notna().any():
        agree = float(small["noisy_agreement"].mean())
        w = float(small["weight_on_observed"].mean()) if "weight_on_observed" in small else float("nan")
        verdict = (f"It agrees with the noisy label for {agree:.0%}: "
                   + ("it follows the noisy labels, so the TDSM weights fall back towards DSM's"
                      if agree > lo + margin else "it corrects labels, moving the TDSM weights off the observed label")
                   + (f" (weight on it {w:.2f})." if np.isfinite(w) else "."))
    else:
        verdict = "It is above chance where σ is small, as the weights need."
    return _join(text, verdict, smoke_note(profile))


def loss_curve(history: pd.DataFrame, *, x: str = "kimg", y: str = "loss", unit: str = "kimg",
               profile: str | None = None) -> str:
    """How far the training loss came down from the first to the last record."""
    rows = history.dropna(subset=[y]) if y in history else history.iloc[0:0]
    if len(rows) < 2:
        return _join("Too few loss records to read a trend.", smoke_note(profile))
    a, b = float(rows[y].iloc[0]), float(rows[y].iloc[-1])
    change = (a - b) / abs(a) if a else 0.0
    text = f"Training loss went from {a:.3g} to {b:.3g} over {float(rows[x].iloc[-1]):g} {unit}"
    text += (f" ({change:.0%} lower)." if change > 0.05 else
             f": it has not come down ({-change:+.0%}), the model is barely trained.")
    return _join(text, smoke_note(profile))


def label_consistency(metrics: dict, *, num_classes: int, per_method: dict | None = None,
                      n_samples: int | None = None, profile: str | None = None) -> str:
    """Label consistency of the samples against chance (1 / classes) and the ideal DSM, read by an evaluator of
    known accuracy; beside the sibling runs (per-class lists per method) where they exist."""
    lc = metrics.get("label_consistency")
    if lc is None:
        return _join("No samples were scored (the run has not finished).", smoke_note(profile))
    chance, ideal, ev = 1 / num_classes, metrics.get("ideal_dsm_consistency"), metrics.get("evaluator_test_acc")
    margin = share_margin(lc, n_samples)
    text = f"Label consistency {lc:.1%} (chance {chance:.1%}"
    text += f", ideal DSM {ideal:.1%})" if ideal is not None else ")"
    text += f", read by an evaluator of {ev:.1%} clean test accuracy." if ev is not None else "."
    if ev is not None and ev <= chance + share_margin(ev, None):
        verdict = "The evaluator itself is at chance: the consistency says nothing."
    elif lc <= chance + margin:
        verdict = (f"It is {_chance_words(lc, chance, margin, 'chance')}: the samples are not recognisable as their "
                   "class, so this run cannot compare TDSM with DSM.")
    else:
        means = {k: float(np.nanmean(v)) for k, v in (per_method or {}).items() if v}
        if "TDSM" in means and "DSM" in means:
            gap = means["TDSM"] - means["DSM"]
            verdict = (f"TDSM's samples land on the requested class {gap:.1%} more often than DSM's."
                       if gap > margin else
                       f"TDSM and DSM differ by {gap:+.1%}, within {margin:.1%}: no difference in this run."
                       if gap >= -margin else f"TDSM is {-gap:.1%} below DSM: the reverse of the paper's ordering.")
        elif ideal is not None:
            verdict = ("Above the ideal DSM: fewer off-class samples than a perfect noisy-label model makes."
                       if lc > ideal + margin else "Not above the ideal DSM: no label correction visible.")
        else:
            verdict = "Above chance."
    return _join(text, verdict, smoke_note(profile))


def tdsm_cost_or_fit(history: pd.DataFrame, *, noise_rate: float | None = None, profile: str | None = None) -> str:
    """The second panel of the TDSM training curves: the extra no-grad passes TDSM pays per sample, or the
    classifier's agreement with the noisy labels against the share of correct ones (above it: fitting wrong
    labels, which pulls its weights back to the observed label)."""
    if "extra_passes_per_sample" in history and history["extra_passes_per_sample"].notna().any():
        extra = float(history["extra_passes_per_sample"].mean())
        return _join(f"TDSM evaluated {extra:.2f} extra no-grad passes per sample on average beside its gradient "
                     "pass (DSM: none).", smoke_note(profile))
    if "train_acc_noisy" in history and history["train_acc_noisy"].notna().any() and noise_rate is not None:
        fit = float(_percent(history["train_acc_noisy"])[-1])
        correct = 100 * (1 - float(noise_rate))
        return _join(f"Training agreement with the noisy labels ends at {fit:.1f}% against the {correct:.0f}% of "
                     "correct labels: " + ("the classifier fits wrong labels." if fit > correct + MIN_POINTS else
                                           "it has not fitted the wrong labels."), smoke_note(profile))
    return _join("Nothing recorded beside the loss.", smoke_note(profile))


def cas(metrics: dict, *, num_classes: int, profile: str | None = None) -> str:
    """Classification accuracy score (a classifier trained on the samples only, tested on real data) against
    chance."""
    value = metrics.get("cas")
    if value is None:
        return _join("No CAS recorded.", smoke_note(profile))
    value, chance = _as_percent(value), 100 / num_classes
    return _join(f"A classifier trained only on the samples scores {value:.1f}% on the real test set (CAS; chance "
                 f"{chance:.1f}%): " + ("the samples carry their classes." if value > chance + 5 * MIN_POINTS else
                                        "the samples do not teach the classes."), smoke_note(profile))

def classifier_result(metrics: dict, *, num_classes: int, profile: str | None = None) -> str:
    """The classifier cell's result: its clean test accuracy at the smallest σ against chance."""
    acc = metrics.get("acc_last")
    if acc is None:
        return _join("No classifier accuracy recorded.", smoke_note(profile))
    chance = 100 / num_classes
    return _join(f"Clean test accuracy at the smallest σ {acc:.1f}% against chance {chance:.1f}%: "
                 + ("usable for the TDSM weights." if acc > chance + MIN_POINTS * 5 else
                    "no better than chance, so its weights cannot correct labels."), smoke_note(profile))


# ---------------------------------------------------------------------------------------- LRA-Diffusion, retrieval

def lra_accuracy(metrics: dict, *, variant: str = "LRA-Diffusion", n_test: int | None = None,
                 n_train: int | None = None, profile: str | None = None) -> str:
    """The diffusion's test accuracy (at the best clean-val epoch, else the last) against the two baselines on the
    same features, the kNN vote of the neighbours' noisy labels and a linear probe; retrieval purity against the
    share of correct given labels."""
    selected = metrics.get("acc_val_selected") is not None
    acc = metrics.get("acc_val_selected" if selected else "acc_last")
    if acc is None:
        return _join("No test accuracy recorded.", smoke_note(profile))
    acc = _as_percent(acc)
    named = (("kNN vote", "knn_majority_acc"), ("linear probe", "linear_probe_acc"))
    baselines = {name: _as_percent(metrics[key]) for name, key in named if metrics.get(key) is not None}
    text = f"{variant} reaches {acc:.1f}% on test ({'at its best clean-val epoch' if selected else 'last epoch'})"
    verdict = ""
    if baselines:
        text += " against " + " and ".join(f"{v:.1f}% for the {k}" for k, v in baselines.items()) + \
            " on the same features."
        name, best = max(baselines.items(), key=lambda kv: kv[1])
        gap, margin = acc - best, accuracy_margin(best, n_test)
        verdict = (f"It adds {gap:.1f} points over the {name}." if gap > margin else
                   f"It is {-gap:.1f} points below its {name}: the diffusion adds nothing over the features in this "
                   "run." if gap < -margin else
                   f"Within {margin:.1f} points of the {name}: no gain over the features in this run.")
    else:
        text += "."
    purity, given = metrics.get("retrieval_purity"), metrics.get("noisy_label_accuracy")
    retrieval = ""
    if purity is not None and given is not None:
        retrieval = (f"Retrieved labels are {purity:.1f}% correct against {given:.1f}% of the given ones: retrieval "
                     + ("cleans the labels." if purity > given + accuracy_margin(given, n_train) else
                        "does not clean the labels (within noise)." if purity >= given - accuracy_margin(given, n_train)
                        else "makes the labels worse."))
    return _join(text, verdict, retrieval, smoke_note(profile))


def validation_curve(history: pd.DataFrame, *, profile: str | None = None) -> str:
    """The clean-validation accuracy's range over the evaluations and the last one against the best."""
    if "val_acc" not in history or not history["val_acc"].notna().any():
        return _join("No validation evaluation yet.", smoke_note(profile))
    rows = history.dropna(subset=["val_acc"])
    val = _percent(rows["val_acc"])
    at = int(np.argmax(val))
    text = (f"Clean-validation accuracy ranged {val.min():.1f}-{val.max():.1f}% over {len(val)} evaluations, best at "
            f"epoch {rows['epoch'].iloc[at]}; the last is {val.max() - val[-1]:.1f} points below the best.")
    return _join(text, smoke_note(profile))


def per_class_retrieval(purity, accuracy, classes) -> str:
    """The least pure class and whether per-class accuracy follows retrieval purity (correlation over classes)."""
    purity, accuracy = np.asarray(purity, float), np.asarray(accuracy, float)
    ok = np.isfinite(purity)
    if not ok.any():
        return "No per-class retrieval purity recorded."
    worst = int(np.nanargmin(np.where(ok, purity, np.nan)))
    text = f"Retrieval is least pure for class {classes[worst]} ({purity[worst]:.0%} of retrieved labels correct)"
    both = ok & np.isfinite(accuracy)
    if both.sum() >= 3 and np.std(purity[both]) > 0 and np.std(accuracy[both]) > 0:
        r = float(np.corrcoef(purity[both], accuracy[both])[0, 1])
        text += (f"; accuracy follows purity across classes (correlation {r:.2f})." if r > 0.5 else
                 f"; accuracy does not follow purity across classes (correlation {r:.2f}).")
    else:
        text += "."
    return text


def knn_accuracy(acc_percent: float, *, num_classes: int, n_test: int | None = None,
                 profile: str | None = None) -> str:
    """A kNN classifier's accuracy with the clean labels (the features' class information) against chance."""
    chance = 100 / num_classes
    margin = accuracy_margin(chance, n_test)
    text = (f"kNN with the clean labels reaches {acc_percent:.1f}% against chance {chance:.1f}%: "
            + ("the features group the classes." if acc_percent > chance + margin else
               "the features carry no class information."))
    return _join(text, smoke_note(profile))


def neighbour_agreement(agreement: dict, *, num_classes: int, n: int | None = None) -> str:
    """How often the neighbours' majority noisy label is the clean one: on the mislabelled samples (what a
    retrieval could correct) and overall against the given labels."""
    on_wrong = agreement.get("knn_majority_equals_clean_on_noisy_samples")
    overall, given = agreement.get("knn_majority_equals_clean"), agreement.get("noisy_label_equals_clean")
    parts = []
    if on_wrong is not None and np.isfinite(on_wrong):
        parts.append(f"For {on_wrong:.0%} of the mislabelled samples the neighbours' majority is the clean label "
                     f"(chance {1 / num_classes:.0%}).")
    if overall is not None and given is not None:
        margin = share_margin(given, n)
        parts.append(f"Overall the majority is right for {overall:.0%} against {given:.0%} for the given labels: a "
                     + ("neighbour vote would clean the labels." if overall > given + margin else
                        "neighbour vote would not improve on them."))
    return " ".join(parts) or "No agreement measured."
