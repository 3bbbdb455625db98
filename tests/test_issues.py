"""Per-sample verdicts (per_sample.csv): the file, the detection scores and the comparison of rankings, on data
with a known answer."""

import numpy as np
import pandas as pd
import pytest

from nlkit.errors import UserError
from nlkit.noise.issues import (
    LEADING,
    compare_issue_rankings,
    detection_quality,
    load_per_sample,
    loss_verdicts,
    per_sample_frame,
    ranked,
    write_per_sample,
)

# 10 samples, the last 4 with a wrong given label (clean 0, given 1)
GIVEN = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
CLEAN = np.zeros(10, int)


def frame(score, suspected, **kw):
    return per_sample_frame(GIVEN, score, suspected, clean=CLEAN, **kw)


# A ranks all 4 wrong labels first; B puts two clean samples (rows 0, 1) above two wrong ones (rows 6, 7)
PERFECT = frame(np.arange(10) / 10, np.arange(10) >= 6)
MIXED = frame([0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.2, 0.3, 0.95, 0.85], [True, True] + [False] * 4 + [False, False,
                                                                                                 True, True])


def test_detection_quality_known_answer():
    q = detection_quality(PERFECT)
    assert (q["n_wrong"], q["n_flagged"], q["k"]) == (4, 4, 4)
    assert q["precision"] == q["recall"] == q["roc_auc"] == q["precision_at_k"] == 1.0
    q = detection_quality(MIXED)
    # flagged rows 0, 1, 8, 9: 2 of 4 wrong; 2 of the 4 wrong flagged; top-4 by score = 8, 0, 9, 1 -> 2 wrong
    assert q["precision"] == 0.5 and q["recall"] == 0.5 and q["precision_at_k"] == 0.5
    # AUC: (wrong, clean) pairs where the wrong sample scores higher: row 8 beats all 6, row 9 all but row 0 (0.9),
    # rows 6 and 7 the four 0.1s
    assert q["roc_auc"] == pytest.approx((6 + 5 + 4 + 4) / 24)
    assert detection_quality(MIXED, k=1)["precision_at_k"] == 1.0    # the top one is row 8


def test_ties_rank_in_index_order_and_unknown_clean_labels_give_no_scores():
    tied = per_sample_frame(GIVEN, np.ones(10), np.zeros(10, bool))
    assert list(ranked(tied)["index"]) == list(range(10))
    q = detection_quality(tied)
    assert q["n_known"] == 0 and q["precision"] is None and q["roc_auc"] is None and q["precision_at_k"] is None


def test_comparison_of_two_rankings_known_answer():
    c = compare_issue_rankings({"A": PERFECT, "B": MIXED})
    assert c.k == 4 and c.skipped == []
    assert c.table.loc["A", "precision_at_k"] == 1.0 and c.table.loc["B", "precision_at_k"] == 0.5
    # top-4: A = {6, 7, 8, 9}, B = {8, 0, 9, 1}: 2 in common
    assert c.overlap.loc["A", "B"] == c.overlap.loc["B", "A"] == 0.5 and c.overlap.loc["A", "A"] == 1.0
    assert "100% carry a wrong label for A and 50% for B" in c.reading and "A and B share 50%" in c.reading


def test_runs_on_other_noise_are_refused_or_skipped():
    other = per_sample_frame(np.roll(GIVEN, 1), np.zeros(10), np.zeros(10, bool), clean=CLEAN)
    with pytest.raises(UserError, match="not the same noise"):
        compare_issue_rankings({"A": PERFECT, "C": other})
    c = compare_issue_rankings({"A": PERFECT, "C": other}, skip_other_noise=True)
    assert c.skipped == ["C"] and list(c.table.index) == ["A"]


def test_file_round_trip_keeps_columns_and_empty_clean_labels(tmp_path):
    probs = np.full((10, 2), 0.5)
    probs[6:] = [0.9, 0.1]            # the model says 0 where the given label is 1
    written = loss_verdicts(probs, GIVEN)          # clean labels unknown
    path = write_per_sample(tmp_path, written)
    assert write_per_sample(None, written) is None
    text = path.read_text().splitlines()
    assert text[0].split(",")[:5] == list(LEADING) and len(text) == 11
    assert text[7].split(",")[2] == ""             # the empty clean label
    back = load_per_sample(tmp_path)
    assert back["clean"].isna().all() and list(back["suspected_issue"]) == [False] * 6 + [True] * 4
    np.testing.assert_allclose(back["loss"], -np.log(back["prob_given"]), rtol=1e-5)
    assert list(back["corrected_label"][6:]) == [0] * 4
    with pytest.raises(UserError, match="no per-sample verdicts"):
        load_per_sample(tmp_path / "missing")
    with pytest.raises(UserError, match="lack the columns"):
        load_per_sample(pd.DataFrame({"index": [0]}))


def test_issue_grid_draws_the_top_suspects_and_counts_the_wrong_ones():
    import matplotlib

    matplotlib.use("Agg")
    from nlkit.viz import issue_grid

    images = np.zeros((10, 8, 8, 1), np.uint8)
    fig = issue_grid(images, MIXED.assign(corrected_label=0), ["zero", "one"], n=4, cols=4)
    assert "2 of 4 carry a wrong label" in fig._suptitle.get_text()
    titles = [t.get_text() for t in fig.axes[0].texts]
    assert titles[0] == "one → zero\n(zero)" and titles[1] == "zero → zero\n(zero)"   # rows 8 and 0 first
