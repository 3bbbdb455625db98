"""The benchmark study (params/bench, nlkit.methods.bench): every row resolves into its own method's Config under
the shared budget, every row sees the same data, one cell runs end to end, and the tables rank the rows and draw
the heat map."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest

from nlkit.errors import UserError
from nlkit.methods import bench, get_method
from nlkit.pipeline.params import PROFILES, find_cells, load_cell, repo_root

ROOT = repo_root()


def cell_path(name: str):
    return ROOT / "params" / "bench" / f"{name}.yaml"


@pytest.mark.parametrize("row", sorted(bench.ROWS))
def test_each_row_builds_its_own_methods_config_at_the_shared_budget(row):
    budgets = {}
    for profile in PROFILES:
        cell = load_cell(cell_path(f"sym-0.5-{row}"), profile)
        config = bench.Config.from_cell(cell)
        method = get_method(bench.ROWS[row].method)
        assert isinstance(config.inner, method.Config) and config.method == bench.ROWS[row].method
        budgets[profile] = (config.epochs, config.arch, cell["dataset"])
    assert budgets["smoke"] == (10, "small_cnn", "digits")
    assert budgets["cpu"] == (8, "small_cnn", "mnist")
    assert budgets["paper"] == (200, "preact_resnet18", "cifar10")


def test_rows_select_their_variant_inside_the_method():
    def inner(row):
        return bench.Config.from_cell(load_cell(cell_path(f"asym-0.4-{row}"), "cpu")).inner

    assert inner("ce").sigma == 0 and inner("ce").method == "ce"
    assert inner("sln").sigma == 0.5 and inner("sln").method == "sln"
    slnmolc = inner("slnmolc")
    assert slnmolc.report_net == "ema" and 0 < slnmolc.lc_start < slnmolc.epochs
    assert inner("dividemix").method == "dividemix" and inner("instancegm").method == "instancegm"
    assert list(inner("gce").lr_milestones) == [3, 5]     # 40/120 and 80/120 of 8 epochs
    with pytest.raises(UserError, match="bench_method"):
        bench.Config.from_cell({**load_cell(cell_path("sym-0.5-ce"), "smoke"), "bench_method": "lra"})


def test_there_is_one_cell_per_row_and_setting_and_make_cells_wrote_them(tmp_path):
    assert len(find_cells("bench")) == 7 * 9      # 6 generated noise settings and 3 CIFAR-10N label sets
    spec = importlib.util.spec_from_file_location("make_cells", ROOT / "params" / "bench" / "make_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    written = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    assert written == {p.name: p.read_text() for p in find_cells("bench")}


def test_every_row_gets_the_same_images_and_noisy_labels():
    data = {row: bench.prepare(load_cell(cell_path(f"sym-0.5-{row}"), "smoke"), seed)
            for row, seed in (("ce", 0), ("gce", 1), ("dividemix", 2))}
    first = data["ce"]
    for other in data.values():
        assert np.array_equal(other.noisy, first.noisy) and np.array_equal(other.train_images, first.train_images)
        assert np.array_equal(other.test_labels, first.test_labels)
    assert 0.45 < first.noisy_mask.mean() < 0.55
    config = bench.Config.from_cell(load_cell(cell_path("sym-0.5-dividemix"), "smoke"))
    igm = bench.as_method_data(first, config)
    assert igm.train_images is first.train_images and igm.noisy is first.noisy and igm.noise_rate == pytest.approx(
        first.noisy_mask.mean())


def test_two_smoke_cells_run_end_to_end_and_fill_the_ranked_table(kit_project):
    from nlkit.pipeline.runner import run_cell
    from nlkit.pipeline.tables import build_tables

    for name in ("sym-0.5-gce", "sym-0.5-sln"):
        [result] = run_cell(cell_path(name), "smoke", executor="direct")
        assert result.status == "done", result.message
        metrics = json.loads((kit_project / "outputs/smoke/bench" / name / "seed0/metrics.json").read_text())
        assert 0 <= metrics["acc_last"] <= 100 and metrics["acc_best_test"] >= metrics["acc_last"]
        assert metrics["bench_method"] == name.rsplit("-", 1)[1]
    written = build_tables("smoke", paper="bench")
    text = next(p for p in written if p.suffix == ".md").read_text()
    assert "mean rank" in text and "(#1)" in text and "| SLN-MO |" in text
    assert next(p for p in written if p.suffix == ".png").stat().st_size > 10_000


def fake_results() -> pd.DataFrame:
    rows = []
    values = {("CE", "sym 0.5"): 60.0, ("SLN", "sym 0.5"): 80.0, ("GCE", "sym 0.5"): 80.0,
              ("CE", "sym 0.8"): 20.0, ("SLN", "sym 0.8"): 50.0, ("GCE", "sym 0.8"): math.nan}
    for (row, column), value in values.items():
        rows.append({"paper": "bench", "table": "B1", "row": row, "column": column, "reproduced_mean": value,
                     "reproduced_std": 1.5, "n_seeds": 0 if math.isnan(value) else 3, "paper_value": math.nan,
                     "delta": math.nan, "wall_seconds": 10.0, "device": "cpu", "metric": "acc_last", "cell": "x",
                     "expected_source": "", "expected_tag": "", "stand_in": False, "ran": "", "reduced": "",
                     "published": ""})
    return pd.DataFrame(rows)


def test_ranks_per_column_share_ties_and_skip_missing_cells():
    from nlkit.pipeline.tables import rank_grid, rank_grid_markdown

    info = {"rows": ["CE", "SLN", "GCE"], "columns": ["sym 0.5", "sym 0.8"]}
    means, ranks = rank_grid(fake_results(), info)
    assert list(means.index) == ["CE", "SLN", "GCE"] and list(means.columns) == ["sym 0.5", "sym 0.8"]
    assert ranks["sym 0.5"].tolist() == [3, 1, 1]              # tie at 80: both first
    assert ranks.at["SLN", "sym 0.8"] == 1 and ranks.at["CE", "sym 0.8"] == 2
    assert math.isnan(ranks.at["GCE", "sym 0.8"])              # not run: no rank
    lines = "\n".join(rank_grid_markdown(fake_results(), info, 1.0, 2))
    assert "| CE | 60.00 ± 1.50 (#3) | 20.00 ± 1.50 (#2) | 2.5 |" in lines
    assert "| GCE | 80.00 ± 1.50 (#1) | — | 1.0 |" in lines


def test_heat_map_shows_every_method_and_setting_with_value_and_rank():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nlkit.pipeline.tables import plot_rank_heatmap

    fig = plot_rank_heatmap(fake_results(), "fake", "bench")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "60.0\n#3" in texts and "50.0\n#1" in texts and "—" in texts
    assert [t.get_text() for t in ax.get_yticklabels()][:3] == ["CE", "SLN", "GCE"]
    plt.close(fig)
