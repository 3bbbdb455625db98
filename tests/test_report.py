"""The summary and the reading a researcher sees first, computed from (fake) table rows."""

import math

import pandas as pd


def fake_table() -> pd.DataFrame:
    base = {"paper": "bench", "table": "B1", "wall_seconds": 1.0, "device": "cpu", "metric": "acc_last", "cell": "x",
            "expected_source": "", "expected_tag": "", "stand_in": False, "ran": "", "reduced": "", "published": "",
            "paper_unverified": False, "dataset": "CIFAR-10"}
    rows = [("A", "c1", 80.0, 0.5, 3, 80.5), ("B", "c1", 70.0, 0.5, 3, 75.0), ("C", "c1", 60.0, 0.5, 3, None),
            ("A", "c2", math.nan, math.nan, 0, 50.0), ("D", "c1", 65.0, 0.0, 1, 70.0)]
    out = []
    for row, column, mean, std, n, paper in rows:
        stand_in = row == "D"
        delta = mean - paper if n and paper is not None and not stand_in else math.nan
        out.append({**base, "row": row, "column": column, "reproduced_mean": mean, "reproduced_std": std,
                    "n_seeds": n, "paper_value": math.nan if paper is None else paper, "delta": delta,
                    "stand_in": stand_in, "ran": "digits stand-in" if stand_in else ""})
    return pd.DataFrame(out)


def test_summary_counts_results_tolerance_stand_ins_and_empties():
    from nlkit.pipeline.report import summary, summary_line

    s = summary("cpu", "bench", fake_table())
    assert s["cells"] == 5 and s["with results"] == 4 and s["not run"] == 1 and s["stand-ins"] == 1
    assert s["comparable with the paper"] == 2 and s["within tolerance"] == 1   # A is 0.5 off, B 5 points off
    assert summary_line(s).startswith("4 of 5 cells have results; 1 of 2 comparable with the paper are within")


def test_reading_states_the_leader_its_margin_against_seed_noise_and_the_gap_to_the_paper():
    from nlkit.pipeline.report import reading

    lines = reading(fake_table(), "bench")
    assert lines[0] == ("B1: c1: A 80.0 leads B 70.0 by 10.0 points (more than twice the seeds' std 0.5), "
                        "lowest C 60.0.")
    assert lines[1] == ("Against the paper: 1 of 2 comparable cells within tolerance; mean Δ -2.8 points, "
                        "largest B / c1 -5.0 points.")
    close = fake_table()
    close.loc[close["row"] == "B", "reproduced_mean"] = 79.5
    assert "within two std of the seeds, 0.5: not a separation" in reading(close, "bench")[0]


def test_markdown_for_reading_folds_the_cells_not_run_into_one_line():
    from nlkit.pipeline.tables import to_markdown

    unranked = fake_table().assign(table="X1")  # a table without `ranks:` in _tables.yaml
    text = to_markdown(unranked, "bench", "cpu", hide_empty=True, brief=True)
    assert "1 cell not run: A (c2)." in text and "| A | c2 |" not in text
    assert "| A | c1 | 80.00 ± 0.50 | 3 | 80.50 | -0.50 |" in text and "source of the paper value" not in text
    assert "Rank in each column" not in text
    full = to_markdown(unranked, "bench", "cpu")
    assert "| A | c2 |" in full and "not run:" not in full
    many = pd.concat([unranked] + [unranked[unranked["n_seeds"] == 0].assign(row=f"row {i:03d}", column=f"c{i}")
                                   for i in range(60)])
    text = to_markdown(many, "bench", "cpu", hide_empty=True, brief=True)
    assert "61 cells not run: 61 rows, e.g. A, row 000, row 001; every one is listed in " \
           "`outputs/cpu/tables/bench.md`." in text and "row 059" not in text


def test_markdown_for_reading_shows_a_ranked_table_as_its_grid_alone():
    from nlkit.pipeline.tables import to_markdown

    text = to_markdown(fake_table(), "bench", "cpu", hide_empty=True, brief=True)   # B1 has `ranks: true`
    assert "| A | 80.00 ± 0.50 (#1) | — |" in text and "| D | 65.00 (#3) | — |" in text
    assert "| A | c1 |" not in text and "not run:" not in text
    full = to_markdown(fake_table(), "bench", "cpu")
    assert "| A | c1 | 80.00 ± 0.50 |" in full and "| A | 80.00 ± 0.50 (#1) | — |" in full
