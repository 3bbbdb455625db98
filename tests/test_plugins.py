"""Method plug-ins: the registry (papers, the kit's plug-ins, installed packages' entry points), GCE and
Co-teaching against their papers' equations on hand-computed cases, and a smoke run of each on digits."""

import json
import math
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nlkit.errors import UserError
from nlkit.methods import PAPER_MODULES, Roots, available_methods, get_method, method_for, write_results
from nlkit.methods import coteaching, gce
from nlkit.methods.registry import BUILTIN_PLUGINS, ENTRY_POINT_GROUP, broken_plugins

FIXTURE = Path(__file__).parent / "fixtures" / "nlkit_plugin_example"

# one benchmark row's data: digits with 40% symmetric noise, a stratified 600-image subset for speed
CELL = {"dataset": "digits", "noise": {"model": "sym", "rate": 0.4, "seed": 0}, "train_subset": 600}


def benchmark_row(name: str, train: dict, workdir: Path, seed: int = 0) -> dict:
    """What a benchmark row does with a method it knows only by name: settings, data, run, stored results."""
    method = get_method(name)
    cell = {**CELL, "train": train}
    config = method.Config.from_cell(cell)
    data = method.prepare(cell, seed, Roots())
    output = method.run(data, config, seed, workdir, progress=False)
    for metric in ("acc_last", "acc_best_test", "acc_val_selected"):
        assert metric in method.SPEC.metrics and metric in output.metrics
    return json.loads(write_results(workdir, output, cell=cell, seed=seed).read_text())


# ---------------------------------------------------------------------------------------------- registry

def test_the_registry_lists_the_papers_and_the_kits_plugins():
    names = available_methods()
    assert set(PAPER_MODULES) <= set(names) and {"gce", "coteaching"} <= set(names)
    assert get_method("gce") is gce and method_for("coteaching") is coteaching
    assert get_method("sln").SPEC.paper == "sln"
    for name in BUILTIN_PLUGINS:
        method = get_method(name)
        assert method.SPEC.paper == name and callable(method.prepare) and callable(method.run)
    with pytest.raises(UserError, match="no method is registered under 'nope'; known: .*gce"):
        get_method("nope")


def _install(fixture: Path, target: Path) -> None:
    """What `pip install --target` leaves (the package and its dist-info with the entry points of its pyproject),
    without a build backend or network: importlib.metadata finds the dist-info on sys.path."""
    project = tomllib.loads((fixture / "pyproject.toml").read_text())["project"]
    for package in (fixture / p for p in ("nlkit_plugin_example",)):
        shutil.copytree(package, target / package.name)
    _dist_info(target, project["name"], project["version"], project["entry-points"][ENTRY_POINT_GROUP])


def _dist_info(target: Path, name: str, version: str, methods: dict) -> None:
    info = target / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = [f"[{ENTRY_POINT_GROUP}]"] + [f"{key} = {value}" for key, value in methods.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path standing for site-packages; the plug-in modules are forgotten afterwards."""
    target = tmp_path / "site"
    target.mkdir()
    monkeypatch.syspath_prepend(str(target))
    yield target
    for module in [m for m in sys.modules if m.startswith(("nlkit_plugin_example", "nlkit_plugin_missing"))]:
        del sys.modules[module]


def test_an_installed_package_s_method_is_listed_and_runs_like_a_benchmark_row(site, tmp_path):
    assert "example" not in available_methods()
    _install(FIXTURE, site)
    assert "example" in available_methods()
    method = get_method("example")
    assert method.__name__ == "nlkit_plugin_example.method" and method.SPEC.paper == "example"
    results = benchmark_row("example", {"epochs": 1, "smoothing": 0.2}, tmp_path / "run")
    assert 0 <= results["acc_last"] <= 100 and results["completed"] is True
    assert (tmp_path / "run" / "history.csv").is_file()


def test_a_broken_plugin_is_reported_in_one_line_and_skipped(site, capsys):
    _install(FIXTURE, site)
    _dist_info(site, "broken-plugins", "1.0", {"broken": "nlkit_plugin_missing.method", "notamethod": "json",
                                                "sln": "somewhere.else"})
    names = available_methods()
    assert "example" in names and "broken" not in names and "notamethod" not in names
    assert get_method("sln").__name__ == "nlkit.methods.sln"  # a plug-in cannot take a kit method's name
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3, lines
    assert any("'broken'" in line and "ModuleNotFoundError" in line and "nlkit_plugin_missing" in line
               for line in lines)
    assert any("'notamethod'" in line and "lacks SPEC, Config, prepare, run" in line for line in lines)
    assert any("'sln'" in line and "kit's own method" in line for line in lines)
    assert set(broken_plugins()) == {"broken", "notamethod", "sln"}
    with pytest.raises(UserError, match="method plug-in 'broken' cannot be used: .*ModuleNotFoundError"):
        get_method("broken")
    available_methods()
    assert capsys.readouterr().err == ""  # reported once, not at every look-up


# ---------------------------------------------------------------------------------------------- GCE

def test_gce_value_and_gradient_match_the_paper():
    # logits (0, ln 3) give p = (1/4, 3/4): sample 0 labelled 1 (p_y = 3/4), sample 1 labelled 0 (p_y = 1/4)
    logits = torch.tensor([[0.0, math.log(3)], [0.0, math.log(3)]], dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([1, 0])
    loss = gce.gce_loss(logits, labels, q=0.7)
    expected = [(1 - 0.75 ** 0.7) / 0.7, (1 - 0.25 ** 0.7) / 0.7]  # eq. 6: (1 - p_y^q) / q
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)
    assert loss.dtype == torch.float32  # computed in fp32, whatever the logits' precision
    loss.sum().backward()
    # d/dz_j = -p_y^q (1[j = y] - p_j): the cross-entropy's gradient weighted by p_y^q
    grad = [[-0.75 ** 0.7 * (0 - 0.25), -0.75 ** 0.7 * (1 - 0.75)],
            [-0.25 ** 0.7 * (1 - 0.25), -0.25 ** 0.7 * (0 - 0.75)]]
    torch.testing.assert_close(logits.grad, torch.tensor(grad, dtype=torch.float64), rtol=1e-6, atol=1e-7)


def test_gce_limits_and_truncation():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    labels = torch.tensor([0, 1])
    p_y = torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1)
    torch.testing.assert_close(gce.gce_loss(logits, labels, q=1.0), 1 - p_y)          # q = 1: MAE (up to 2)
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(gce.gce_loss(logits, labels, q=1e-4), ce, rtol=1e-3, atol=1e-3)  # q -> 0: CE
    # truncated (eq. 9, k = 0.5): sample 1 (p_y < k) gets the constant L_q(k) and no gradient
    z = logits.clone().requires_grad_(True)
    loss = gce.gce_loss(z, labels, q=0.7, truncate_k=0.5)
    assert loss[1].item() == pytest.approx((1 - 0.5 ** 0.7) / 0.7)
    assert loss[0].item() == pytest.approx(((1 - p_y[0] ** 0.7) / 0.7).item())
    loss.sum().backward()
    assert torch.all(z.grad[1] == 0) and torch.any(z.grad[0] != 0)


def test_gce_settings_and_schedule():
    cfg = gce.Config.from_cell({"train": {"q": 0.7, "lr_milestones": [40, 80]}})
    assert cfg.lr_milestones == (40, 80)
    assert [gce.lr_at(e, cfg) for e in (1, 40, 41, 80, 81)] == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])
    with pytest.raises(UserError, match="train.q"):
        gce.Config.from_cell({"train": {"q": 1.5}})
    with pytest.raises(UserError, match="unknown GCE training settings"):
        gce.Config.from_cell({"train": {"sigma": 1.0}})


# ---------------------------------------------------------------------------------------------- Co-teaching

def test_coteaching_schedule_matches_the_paper():
    # R(T) = 1 - min(T / T_k * tau, tau), T epochs already trained; tau = 0.5, T_k = 10
    rates = [coteaching.remember_rate(epoch, 0.5, 10) for epoch in (1, 2, 6, 10, 11, 12, 200)]
    assert rates == pytest.approx([1.0, 0.95, 0.75, 0.55, 0.5, 0.5, 0.5])


def test_coteaching_keeps_the_small_loss_samples():
    losses = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    assert coteaching.small_loss_indices(losses, 0.7).tolist() == [1, 5, 3, 7, 2, 8, 4]
    # epoch 4 with tau = 0.5, T_k = 10: R = 1 - 3/10 * 0.5 = 0.85 -> floor(8.5) = 8 samples
    rate = coteaching.remember_rate(4, 0.5, 10)
    assert coteaching.small_loss_indices(losses, rate).tolist() == [1, 5, 3, 7, 2, 8, 4, 6]
    assert len(coteaching.small_loss_indices(losses, 1 - 0.3)) == 7  # 0.7 * 10 = 7.000000000000001


def test_coteaching_updates_each_network_on_its_peers_selection():
    # per-sample CE of a logit row (z, 0) with label 0 is log(1 + e^-z): larger z, smaller loss
    z1 = torch.tensor([3.0, 2.0, 1.0, 0.0], requires_grad=True)   # net 1 ranks samples 0 < 1 < 2 < 3
    z2 = torch.tensor([0.0, 1.0, 2.0, 3.0], requires_grad=True)   # net 2 ranks samples 3 < 2 < 1 < 0
    logits1 = torch.stack([z1, torch.zeros(4)], 1)
    logits2 = torch.stack([z2, torch.zeros(4)], 1)
    labels = torch.zeros(4, dtype=torch.long)
    loss1, loss2, kept1, kept2 = coteaching.coteaching_losses(logits1, logits2, labels, rate=0.5)
    assert kept1.tolist() == [0, 1] and kept2.tolist() == [3, 2]
    ce = lambda z: math.log1p(math.exp(-z))  # noqa: E731
    assert loss1.item() == pytest.approx((ce(0.0) + ce(1.0)) / 2)   # net 1 learns from net 2's samples 3, 2
    assert loss2.item() == pytest.approx((ce(0.0) + ce(1.0)) / 2)   # net 2 learns from net 1's samples 0, 1
    (loss1 + loss2).backward()
    assert z1.grad[[0, 1]].eq(0).all() and z1.grad[[2, 3]].ne(0).all()
    assert z2.grad[[2, 3]].eq(0).all() and z2.grad[[0, 1]].ne(0).all()


def test_coteaching_settings():
    cfg = coteaching.Config.from_cell({"train": {"forget_rate": 0.4, "optimizer": "sgd"}})
    assert cfg.forget_rate == 0.4 and cfg.num_gradual == 10
    with pytest.raises(UserError, match="optimizer"):
        coteaching.Config.from_cell({"train": {"optimizer": "rmsprop"}})
    cfg = coteaching.Config(epochs=10, decay_start=6, lr=0.001)
    # lr constant to decay_start, then linearly to lr / (epochs - decay_start) at the last epoch; beta1 0.1
    steps = [value for e in (6, 7, 10) for value in coteaching.schedule(e, cfg)]
    assert steps == pytest.approx([0.001, 0.9, 0.001, 0.1, 0.00025, 0.1])


# ---------------------------------------------------------------------------------------------- smoke runs

SMALL = {"batch_size": 64, "arch": "small_cnn", "crop_padding": 0, "flip": False}


def check_per_sample(workdir: Path, extra: tuple = ()) -> pd.DataFrame:
    """A loss-scored row's per_sample.csv: one row per training image of CELL, the loss on the given label."""
    from nlkit.noise.issues import LEADING, load_per_sample

    verdicts = load_per_sample(workdir)
    assert list(verdicts.columns[:5]) == list(LEADING) and len(verdicts) == CELL["train_subset"]
    assert {"loss", "prob_given", "corrected_label", *extra} <= set(verdicts.columns)
    np.testing.assert_allclose(verdicts["issue_score"], -np.log(verdicts["prob_given"]), rtol=1e-4)
    assert verdicts["clean"].notna().all() and (verdicts["given"] != verdicts["clean"]).mean() == pytest.approx(
        CELL["noise"]["rate"], abs=0.1)
    return verdicts


def test_gce_smoke_run_on_digits(tmp_path):
    results = benchmark_row("gce", {**SMALL, "epochs": 2, "lr": 0.05}, tmp_path)
    assert 0 <= results["acc_last"] <= 100 and results["epochs"] == 2
    assert results["noise_rate"] == pytest.approx(0.4, abs=0.1)
    check_per_sample(tmp_path)


def test_coteaching_smoke_run_on_digits(tmp_path):
    results = benchmark_row("coteaching", {**SMALL, "epochs": 3, "lr": 0.003, "num_gradual": 2}, tmp_path)
    assert 0 <= results["acc_last"] <= 100 and 0 <= results["acc_last_net2"] <= 100
    assert results["forget_rate"] == pytest.approx(results["noise_rate"])   # tau: the realised noise rate
    # the small-loss samples are cleaner than the data once the networks have learnt something
    assert results["label_precision_last"] > 1 - results["noise_rate"]
    verdicts = check_per_sample(tmp_path, extra=("loss_net2",))
    # Co-teaching's own verdict: the forget rate's share of largest losses of network 1
    assert verdicts["suspected_issue"].sum() == round(results["forget_rate"] * len(verdicts))
    assert verdicts.loc[verdicts["suspected_issue"], "loss"].min() >= verdicts.loc[~verdicts["suspected_issue"],
                                                                                    "loss"].max()


# ---------------------------------------------------------------------------------------------- params

def test_a_plugins_params_folder_is_checked_against_its_contract(tmp_path, monkeypatch):
    from nlkit.pipeline.params import load_cell

    folder = tmp_path / "params" / "gce"
    folder.mkdir(parents=True)
    cell = folder / "digits-sym-0.40.yaml"
    cell.write_text("notebook: benchmark\ndataset: digits\nnoise: {model: sym, rate: 0.4, seed: 0}\n"
                    "table: G1\nrow: GCE\ncolumn: sym 0.4\nmetric: acc_last\ntrain: {q: 0.7, epochs: 2}\n")
    monkeypatch.setenv("NLKIT_ROOT", str(tmp_path))
    resolved = load_cell(cell, "smoke")
    assert resolved["paper"] == "gce" and gce.Config.from_cell(resolved).epochs == 2
    cell.write_text(cell.read_text().replace("q: 0.7", "q: 1.5").replace("acc_last", "acc_lst"))
    with pytest.raises(UserError, match=r"train\.q: .*; metric: 'acc_lst' is not one gce produces"):
        load_cell(cell, "smoke")
    cell.write_text(cell.read_text() + "sigma: 1.0\n")   # an SLN key: not one of GCE's CELL_KEYS
    with pytest.raises(UserError, match="sigma: Extra inputs"):
        load_cell(cell, "smoke")


def test_coteaching_resumes_both_networks_from_a_checkpoint(tmp_path, capsys):
    method = get_method("coteaching")
    cell = {**CELL, "train": {**SMALL, "epochs": 2, "lr": 0.003, "num_gradual": 1}}
    data = method.prepare(cell, 0)
    full = method.run(data, method.Config.from_cell(cell), 0, progress=False)
    # a time budget stops the run after its first epoch (a checkpoint); the next call continues it
    stopped = method.run(data, method.Config.from_cell({**cell, "train": {**cell["train"], "time_budget_seconds":
                                                                          1e-6}}), 0, tmp_path, progress=False)
    assert not stopped.completed and list(stopped.history["epoch"]) == [1]
    capsys.readouterr()
    resumed = method.run(data, method.Config.from_cell(cell), 0, tmp_path, progress=False)
    assert "another run" not in capsys.readouterr().err   # continued, not started afresh
    assert resumed.completed and list(resumed.history["epoch"]) == [1, 2]
    for column in ("test_acc_net1", "test_acc_net2", "label_precision"):
        assert resumed.history[column].tolist() == pytest.approx(full.history[column].tolist(), abs=1e-6)
