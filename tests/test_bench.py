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
    # LRA-Diffusion classifies with its denoiser over f_p features: the shared backbone is not its network
    net = {p: "LRA denoiser, image encoder " + ("none" if p in ("smoke", "cpu") else "resnet34") for p in PROFILES} \
        if row == "lra" else {"smoke": "small_cnn", "cpu": "small_cnn", "paper": "preact_resnet18"}
    assert budgets["smoke"] == (10, net["smoke"], "digits")
    assert budgets["cpu"] == (30, net["cpu"], "mnist")
    assert budgets["paper"] == (200, net["paper"], "cifar10")


def test_rows_select_their_variant_inside_the_method():
    def inner(row):
        return bench.Config.from_cell(load_cell(cell_path(f"asym-0.4-{row}"), "cpu")).inner

    assert inner("ce").sigma == 0 and inner("ce").method == "ce"
    assert inner("sln").sigma == 0.5 and inner("sln").method == "sln"
    slnmolc = inner("slnmolc")
    assert slnmolc.report_net == "ema" and 0 < slnmolc.lc_start < slnmolc.epochs
    assert inner("dividemix").method == "dividemix" and inner("instancegm").method == "instancegm"
    assert list(inner("gce").lr_milestones) == [10, 20]     # 40/120 and 80/120 of 30 epochs
    # the cpu budget's two measured departures (docs/bench.md §5): GCE's lr, the two-network methods' warm-up
    assert inner("gce").lr == 0.05 and inner("dividemix").warmup_epochs == inner("instancegm").warmup_epochs == 5
    lra = inner("lra")
    assert (lra.warmup_epochs, lra.eval_every, lra.lr_horizon) == (1, 1, 150)   # 5/200, 5/200, 1000/200 of 30
    with pytest.raises(UserError, match="bench_method"):
        bench.Config.from_cell({**load_cell(cell_path("sym-0.5-ce"), "smoke"), "bench_method": "knn"})


def test_cpu_profile_runs_mnist_subset_and_reduced_cifar10_for_the_label_file_columns():
    mnist = load_cell(cell_path("sym-0.8-ce"), "cpu")
    assert (mnist["dataset"], mnist["image_size"], mnist["train_subset"]) == ("mnist", 16, 5000)
    for name in ("c10n-aggre-dividemix", "pmd-0.35-gce", "pmd-0.70-lra"):
        cell = load_cell(cell_path(name), "cpu")
        assert (cell["dataset"], cell["image_size"], cell["train_subset"], cell["test_subset"]) == \
            ("cifar10", None, 5000, 2000), name
        assert not cell.get("skip")
    pmd = load_cell(cell_path("pmd-0.70-ce"), "paper")["noise"]
    assert pmd["file"] == "lra-pmd/cifar10-1-0.70.npy" and pmd["label_range"] == [0, 45000] and len(pmd["sha256"]) == 64
    # LRA-Diffusion's f_p: PCA of the pixels on MNIST (a stand-in), the SimCLR run it needs on CIFAR-10
    assert load_cell(cell_path("sym-0.5-lra"), "cpu")["encoder"]["name"] == "pca"
    cifar = load_cell(cell_path("c10n-aggre-lra"), "cpu")
    assert cifar["encoder"]["name"] == "simclr" and cifar["needs"]["encoder"]["cell"] == "simclr/cifar10"
    # at the CIFAR-10 scale: the SimCLR ResNet-9 trained on that scale's own 20,000 images
    for name in ("c10-sym-0.5-lra", "c10-ptd-0.4-lra", "c10n-worse-lra"):
        scale = load_cell(cell_path(name), "cpu")
        assert scale["encoder"] == {"name": "simclr", "arch": "resnet9"}, name
        assert scale["needs"] == {"encoder": "simclr/cifar10-resnet9"} and scale["train_subset"] == 20000, name
        encoder = load_cell(ROOT / "params/simclr/cifar10-resnet9.yaml", "cpu")
        assert (encoder["train_subset"], encoder["train"]["arch"]) == (scale["train_subset"], "resnet9")


def test_there_is_one_cell_per_row_and_setting_and_make_cells_wrote_them(tmp_path):
    # 7 generated settings (two of them the cpu CIFAR scale's), 3 CIFAR-10N label sets, 2 PMD files; and the clean
    # column (CE only)
    assert len(find_cells("bench")) == 8 * 13 + 1
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
    # LRA-Diffusion: the very same splits under its encoder's features, and no held-out split to select by
    lra = bench.prepare(load_cell(cell_path("sym-0.5-lra"), "smoke"), 3)
    splits = bench.shared(lra)
    assert np.array_equal(splits.train_images, first.train_images) and np.array_equal(splits.noisy, first.noisy)
    assert np.array_equal(splits.test_images, first.test_images) and len(splits.val_labels) == 0
    assert lra.features["train"].shape == (len(first.noisy), 64) and lra.features["val"].shape == (0, 64)
    assert bench.shared(first) is first


@pytest.mark.extended  # 14 s; make test builds the ranked tables from the committed runs (test_report.py)
def test_two_smoke_cells_run_end_to_end_and_fill_the_ranked_table(kit_project):
    from nlkit.pipeline.runner import run_cell
    from nlkit.pipeline.tables import build_tables

    for name in ("sym-0.5-gce", "sym-0.5-sln", "sym-0.5-lra"):
        [result] = run_cell(cell_path(name), "smoke", executor="direct")
        assert result.status == "done", result.message
        metrics = json.loads((kit_project / "outputs/smoke/bench" / name / "seed0/metrics.json").read_text())
        assert 0 <= metrics["acc_last"] <= 100 and metrics["acc_best_test"] >= metrics["acc_last"]
        assert metrics["bench_method"] == name.rsplit("-", 1)[1]
        assert metrics["noise_rate"] == pytest.approx(0.5, abs=0.05)
        assert (result.out_dir / "label_issues.png").stat().st_size > 10_000   # the notebook's top suspects
    # every row leaves its per-sample verdicts on the same noisy labels: they can be compared
    from nlkit.noise.issues import compare_issue_rankings

    runs = {name: kit_project / "outputs/smoke/bench" / name / "seed0" for name in ("sym-0.5-gce", "sym-0.5-sln",
                                                                                    "sym-0.5-lra")}
    comparison = compare_issue_rankings(runs)
    assert comparison.skipped == [] and comparison.k == comparison.table["n_wrong"].iloc[0] > 0
    assert (comparison.table["n"] == len(comparison.frames["sym-0.5-gce"])).all()
    assert "vote_share" in comparison.frames["sym-0.5-lra"] and "loss" in comparison.frames["sym-0.5-sln"]
    assert comparison.table["roc_auc"].between(0, 1).all() and comparison.reading
    # no row selects on held-out data; LRA-Diffusion also reports the kNN vote it refines
    assert metrics["acc_val_selected"] is None and metrics["best_val_acc"] is None
    assert 0 < metrics["knn_majority_acc"] <= 100
    written = build_tables("smoke", paper="bench")
    text = next(p for p in written if p.suffix == ".md").read_text()
    # two cells of a column ran: it is not complete, so it shows values and no ranks
    assert "mean rank" in text and "(#" not in text and "| SLN-MO |" in text
    assert "| LRA-Diffusion |" in text and "| kNN vote on f_p |" in text
    assert next(p for p in written if p.suffix == ".png").stat().st_size > 10_000


KNN = "kNN vote on f_p"  # a reference row of the benchmark's _tables.yaml


def fake_results() -> pd.DataFrame:
    rows = []
    values = {("CE", "sym 0.5"): 60.0, ("SLN", "sym 0.5"): 80.0, ("GCE", "sym 0.5"): 80.0,
              ("CE", "sym 0.8"): 20.0, ("SLN", "sym 0.8"): 50.0, ("GCE", "sym 0.8"): math.nan,
              (KNN, "sym 0.5"): 90.0, (KNN, "sym 0.8"): 10.0}
    for (row, column), value in values.items():
        rows.append({"paper": "bench", "table": "B1", "row": row, "column": column, "reproduced_mean": value,
                     "reproduced_std": 1.5, "n_seeds": 0 if math.isnan(value) else 3, "paper_value": math.nan,
                     "delta": math.nan, "wall_seconds": 10.0, "device": "cpu", "metric": "acc_last", "cell": "x",
                     "expected_source": "", "expected_tag": "", "stand_in": False, "ran": "", "reduced": "",
                     "published": "", "dataset": "MNIST 16×16"})
    return pd.DataFrame(rows)


INFO = {"rows": ["CE", "SLN", "GCE", KNN], "columns": ["sym 0.5", "sym 0.8"], "reference_rows": [KNN]}


def test_ranks_only_complete_columns_share_ties_and_skip_reference_rows():
    from nlkit.pipeline.tables import rank_grid, rank_grid_markdown

    means, ranks = rank_grid(fake_results(), INFO)
    assert list(means.index) == ["CE", "SLN", "GCE", KNN] and list(means.columns) == ["sym 0.5", "sym 0.8"]
    assert ranks["sym 0.5"].tolist()[:3] == [3, 1, 1]          # tie at 80: both first; the kNN vote's 90 aside
    assert math.isnan(ranks.at[KNN, "sym 0.5"])              # a reference row is never ranked
    assert ranks["sym 0.8"].isna().all()                       # GCE did not run: the column is not ranked
    lines = "\n".join(rank_grid_markdown(fake_results(), INFO, 1.0, 2))
    assert "| CE | 60.00 ± 1.50 (#3) | 20.00 ± 1.50 | 3.0 |" in lines
    assert "| GCE | 80.00 ± 1.50 (#1) | — | 1.0 |" in lines
    assert f"| {KNN} | 90.00 ± 1.50 | 10.00 ± 1.50 | — |" in lines


def test_heat_map_shows_every_method_and_setting_with_value_and_rank():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nlkit.pipeline.tables import plot_rank_heatmap

    fig = plot_rank_heatmap(fake_results(), "fake", "bench")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "60.0\n#3" in texts and "50.0" in texts and "—" in texts   # sym 0.8 is incomplete: values, no ranks
    assert "MNIST 16×16" in texts                                        # the dataset over its columns
    assert [t.get_text() for t in ax.get_yticklabels()][:3] == ["CE", "SLN", "GCE"]
    assert min(t.get_fontsize() for t in ax.texts) >= 10 and fig.get_size_inches()[0] <= 10.5  # read at 100 dpi
    plt.close(fig)


def test_dataset_label_names_the_training_subset_so_two_scales_are_two_groups():
    from nlkit.pipeline.tables import dataset_label

    assert dataset_label({"dataset": "cifar10"}) == "CIFAR-10"
    assert dataset_label({"dataset": "mnist", "image_size": 16, "train_subset": 5000}) == "MNIST 16×16, 5k train"
    assert dataset_label({"dataset": "cifar10", "train_subset": 20000}) != dataset_label(
        {"dataset": "cifar10", "train_subset": 5000})
