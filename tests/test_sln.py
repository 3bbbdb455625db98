"""SLN on CPU: the target and loss, the EMA, label correction, the WRN, and one smoke cell end to end."""

import json

import numpy as np
import pytest
import torch

from nlkit.methods import sln
from nlkit.models import build_model
from nlkit.train import EMA


def test_sigma_zero_is_plain_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(16, 10)
    y = torch.randint(0, 10, (16,))
    onehot = torch.nn.functional.one_hot(y, 10).float()
    t = sln.sln_targets(onehot, 0.0, None)
    assert torch.equal(t, onehot)
    torch.testing.assert_close(sln.soft_cross_entropy(logits, t).mean(), torch.nn.functional.cross_entropy(logits, y))


def test_sln_target_noise_statistics():
    gen = torch.Generator().manual_seed(0)
    onehot = torch.zeros(20000, 10)
    t = sln.sln_targets(onehot, 0.5, gen)
    assert abs(t.mean().item()) < 0.01 and abs(t.std().item() - 0.5) < 0.01
    # fresh noise every call (every step), independent across classes
    t2 = sln.sln_targets(onehot, 0.5, gen)
    assert not torch.equal(t, t2)
    assert abs(np.corrcoef(t[:, 0], t[:, 1])[0, 1]) < 0.03


def test_gradient_matches_the_spec_formula():
    torch.manual_seed(1)
    logits = torch.randn(4, 5, requires_grad=True)
    target = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 5).float() + 0.7 * torch.randn(4, 5)
    loss = sln.soft_cross_entropy(logits, target).sum()  # d/dz_i of -sum_c t_ic log p_ic
    loss.backward()
    p = torch.softmax(logits.detach(), 1)
    expected = target.sum(1, keepdim=True) * p - target
    torch.testing.assert_close(logits.grad, expected)


def test_ema_update_covers_weights_and_bn_buffers_without_syncs():
    torch.manual_seed(0)
    net = build_model("small_cnn", num_classes=3, in_channels=1)
    ema = EMA(net, decay=0.9)
    for a, b in zip(net.state_dict().values(), ema.model.state_dict().values()):
        assert torch.equal(a, b)  # starts identical
    live_w = net.head.weight
    with torch.no_grad():
        live_w.add_(1.0)
    net.train()
    net(torch.randn(8, 1, 8, 8))  # moves BN running stats
    before = ema.model.head.weight.clone()
    ema.update()
    torch.testing.assert_close(ema.model.head.weight, 0.9 * before + 0.1 * live_w)
    bn_live, bn_ema = net.body[1], ema.model.body[1]
    assert not torch.equal(bn_ema.running_mean, torch.zeros_like(bn_ema.running_mean))
    torch.testing.assert_close(bn_ema.running_mean, 0.1 * bn_live.running_mean)
    assert bn_ema.num_batches_tracked == bn_live.num_batches_tracked  # integer buffers copied
    params_only = EMA(net, decay=0.9, buffers=False)
    net(torch.randn(8, 1, 8, 8))
    params_only.update()
    assert not torch.equal(params_only.model.body[1].running_mean,
                           0.9 * params_only.model.body[1].running_mean + 0.1 * net.body[1].running_mean)


def test_label_correction_rule_on_toy_data():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    noisy = torch.nn.functional.one_hot(torch.tensor([0, 0, 1]), 2).float()
    new = sln.correct_labels(probs.log(), noisy, noisy)
    losses = -torch.log(torch.tensor([0.9, 0.2, 0.4]))
    w = (losses - losses.min()) / (losses.max() - losses.min())
    # sample 0 has the lowest loss (w = 0): it takes the EMA's argmax; sample 1 the highest (w = 1): its label
    torch.testing.assert_close(new[0], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(new[1], torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(new[2], w[2] * noisy[2] + (1 - w[2]) * torch.tensor([1.0, 0.0]))
    soft = sln.correct_labels(probs.log(), noisy, noisy, soft=True)
    torch.testing.assert_close(soft[0], probs[0])
    # float64 targets (lc_float64): the blend in float64, w's complement taken in the loss's precision first
    new64 = sln.correct_labels(probs.log(), noisy, noisy, dtype=torch.float64)
    assert new64.dtype == torch.float64
    torch.testing.assert_close(new64[2], w[2].double() * noisy[2].double() + (1 - w[2]).double() * torch.tensor(
        [1.0, 0.0], dtype=torch.float64))


def test_label_correction_keeps_losses_beyond_fp32_probabilities():
    """A label with probability e^-60 keeps its loss of 60 (the original's log-softmax), not log(1e-12) = 27.6:
    that loss is the min-max's maximum and so scales every sample's w."""
    logits = torch.tensor([[60.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    noisy = torch.nn.functional.one_hot(torch.tensor([1, 0, 0]), 2).float()
    new = sln.correct_labels(torch.log_softmax(logits, 1), noisy, noisy)
    losses = -torch.log_softmax(logits, 1)[torch.arange(3), torch.tensor([1, 0, 0])]
    w = (losses - losses.min()) / (losses.max() - losses.min())
    assert losses[0] == pytest.approx(60.0)
    torch.testing.assert_close(new[1, 0], w[1])  # label 0, prediction 1: the label's share is w


@pytest.mark.parametrize("profile, bf16, lc_float64, cpu_channels_last", [
    ("paper", False, True, False), ("quick", True, False, True), ("cpu", False, False, False),
    ("smoke", False, False, False)])
def test_precision_per_profile(profile, bf16, lc_float64, cpu_channels_last):
    """The paper profile computes at the original's precision: fp32 (no bf16, no TF32) and LC's targets and the
    loss on them in float64, NCHW on the CPU. quick switches bf16 on; cpu (the setting its committed runs were made
    with) and smoke run fp32 NCHW on the CPU."""
    from nlkit.hardware import use_channels_last
    from nlkit.pipeline.params import load_cell, repo_root

    for cell in ("cifar10-sym-0.40-paper-slnmolc", "animal10n-real-sln"):
        cfg = sln.SLNConfig.from_cell(load_cell(repo_root() / "params" / "sln" / f"{cell}.yaml", profile))
        assert (cfg.bf16, cfg.lc_float64) == (bf16, lc_float64), (cell, profile)
        assert type(cfg.bf16) is type(bf16)
        assert use_channels_last(cfg.channels_last, "cpu", cfg.bf16) is cpu_channels_last, (cell, profile)
    assert sln.SLNConfig().bf16 is False  # a config built in code is fp32 too


def test_lc_float64_trains_on_float64_targets(digits_data):
    run = sln.train_sln(digits_data, small_config(sigma=1.0, epochs=3, lc_start=1, lc_float64=True), seed=0,
                        progress=False)
    assert run.targets.dtype == torch.float64 and np.isfinite(run.history["loss"]).all()
    fp32 = sln.train_sln(digits_data, small_config(sigma=1.0, epochs=3, lc_start=1), seed=0, progress=False)
    assert fp32.targets.dtype == torch.float32
    # the same run up to rounding: the switch changes the precision, nothing else
    torch.testing.assert_close(run.targets.float(), fp32.targets, atol=1e-3, rtol=0)


def test_lc_schedule_official_and_inclusive():
    assert [e for e in range(1, 11) if sln.lc_active(e, 7, 10)] == [8, 9, 10]
    assert [e for e in range(1, 11) if sln.lc_active(e, 7, 10, inclusive=True)] == [7, 8, 9, 10]
    assert not any(sln.lc_active(e, None, 10) for e in range(1, 11))
    assert not any(sln.lc_active(e, 10, 10) for e in range(1, 11))


def test_wrn28_2_parameter_count():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(build_model("wrn28_2", num_classes=10)) == 1_469_642
    assert count(build_model("wrn28_2", num_classes=100)) == 1_481_252
    net = build_model("wrn28_2", num_classes=10)
    assert net.bn.momentum == 0.9 and net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert net.features(torch.zeros(2, 3, 32, 32)).shape == (2, 128)


def test_resnet9_layout_and_a_bf16_channels_last_step_on_the_cpu():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    sizes = {w: count(build_model("resnet9", num_classes=10, in_channels=3, width_mult=w)) for w in (1.0, 0.5, 0.25)}
    assert sizes == {1.0: 6_573_120, 0.5: 1_646_112, 0.25: 412_944}
    net = build_model("resnet9", num_classes=10, in_channels=3, width_mult=0.25)
    assert net.feature_dim == 128 and net.features(torch.zeros(2, 3, 32, 32)).shape == (2, 128)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():   # the 1/8 output scale of the speed runs
        assert torch.allclose(net(x), net.head(net.features(x)) / 8)
    net = net.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)),
                                                 torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    with pytest.raises(Exception, match="width_mult"):
        build_model("resnet9", width_mult=0)


def test_dissection_shares_sum_to_one():
    import pandas as pd

    rng = np.random.default_rng(0)
    a = pd.DataFrame({"loss": rng.random(500), "pred": rng.integers(0, 3, 500), "clean": rng.integers(0, 3, 500),
                      "noisy": rng.random(500) < 0.3})
    table = sln.sample_dissection(a, bins=10)
    assert table.shape == (10, 4)
    np.testing.assert_allclose(table.sum(axis=1), 1.0)


@pytest.fixture
def digits_data():
    return sln.prepare_data({"dataset": "digits", "noise": {"model": "sym", "rate": 0.4, "seed": 0}}, seed=0)


def small_config(**kw):
    base = dict(epochs=4, batch_size=64, lr=0.01, arch="small_cnn", crop_padding=1, flip=False, ema_decay=0.9)
    return sln.SLNConfig(**{**base, **kw})


def test_training_runs_changes_targets_after_lc_and_is_deterministic(digits_data):
    run = sln.train_sln(digits_data, small_config(sigma=1.0, lc_start=2), seed=0, progress=False)
    h = run.history
    assert list(h["lc"]) == [False, False, True, True] and list(h["sigma"]) == [1.0, 1.0, 0.0, 0.0]
    assert np.isfinite(h["loss"]).all()
    noisy_onehot = torch.nn.functional.one_hot(torch.as_tensor(digits_data.noisy), 10).float()
    assert not torch.equal(run.targets, noisy_onehot)
    ema_w, live_w = run.trainer.ema.model.head.weight, run.trainer.model.head.weight
    assert not torch.equal(ema_w, live_w)
    # per-sample losses and predictions of the last epoch, in dataset order, for every sample
    assert run.trainer.sample_loss.shape == (len(digits_data.noisy),) and (run.trainer.sample_loss > 0).all()
    assert run.trainer.sample_pred.max() < 10
    again = sln.train_sln(digits_data, small_config(sigma=1.0, lc_start=2), seed=0, progress=False)
    np.testing.assert_allclose(again.history["test_acc_live"], h["test_acc_live"])
    # per_sample.csv after label correction: LC's corrected label and its weight, the verdict corrected != given
    verdicts = sln.per_sample_verdicts(run, digits_data)
    assert len(verdicts) == len(digits_data.noisy) and list(verdicts["index"]) == list(range(len(verdicts)))
    np.testing.assert_array_equal(verdicts["corrected_label"], run.targets.argmax(1).numpy())
    np.testing.assert_allclose(verdicts["corrected_confidence"], run.targets.max(1).values.numpy())
    assert (verdicts["suspected_issue"] == (verdicts["corrected_label"] != verdicts["given"])).all()
    assert verdicts["suspected_issue"].any() and not verdicts["suspected_issue"].all()


def test_ce_run_writes_its_per_sample_loss(digits_data, tmp_path):
    """CE's per_sample.csv: one evaluation pass of the final net, its loss on the given label as the score."""
    from nlkit.data import DeviceBatcher
    from nlkit.noise.issues import LEADING, detection_quality, load_per_sample

    output = sln.run(digits_data, small_config(sigma=0.0, method="ce", epochs=2), 0, tmp_path, progress=False)
    verdicts = load_per_sample(tmp_path)
    assert list(verdicts.columns[:5]) == list(LEADING) and len(verdicts) == len(digits_data.noisy)
    np.testing.assert_array_equal(verdicts["clean"], digits_data.clean)
    np.testing.assert_allclose(verdicts["issue_score"], -np.log(verdicts["prob_given"]), rtol=1e-4)
    assert (verdicts["suspected_issue"] == (verdicts["predicted"] != verdicts["given"])).all()
    # the net's own predictions: its accuracy on the training set's clean labels, recomputed from the file
    probs = output.state.trainer.probabilities(
        DeviceBatcher(digits_data.train_images, batch_size=512, shuffle=False, device="cpu",
                          mean=digits_data.mean, std=digits_data.std), 10)
    np.testing.assert_array_equal(verdicts["predicted"], probs.argmax(1).numpy())
    assert detection_quality(verdicts)["roc_auc"] > 0.5     # the loss ranks the wrong labels above chance


def test_training_resumes_from_a_checkpoint(digits_data, tmp_path):
    cfg = small_config(sigma=0.5, epochs=4, checkpoint_every_seconds=0)
    full = sln.train_sln(digits_data, cfg, seed=3, progress=False)
    # the same run, stopped by a time budget after its first epoch (a budget does not change what it computes)
    first = sln.train_sln(digits_data, small_config(sigma=0.5, epochs=4, checkpoint_every_seconds=0,
                                                    time_budget_seconds=0.0), seed=3, out_dir=tmp_path,
                          progress=False)
    assert len(first.history) == 1 and not first.completed and (tmp_path / "checkpoints" / "last.pt").is_file()
    resumed = sln.train_sln(digits_data, cfg, seed=3, out_dir=tmp_path, progress=False)
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]
    assert not list((tmp_path / "checkpoints").glob("last.pt.other-*")), "the checkpoint was not resumed"
    np.testing.assert_allclose(resumed.history["test_acc_live"], full.history["test_acc_live"], atol=1e-6)


def test_sigma_search_holds_out_a_noisy_split():
    data = sln.prepare_data({"dataset": "digits", "noise": {"model": "sym", "rate": 0.4, "seed": 0},
                             "val_fraction": 0.1}, seed=0)
    assert len(data.val_labels) == pytest.approx(0.1 * 1437, abs=2)
    assert len(data.noisy) + len(data.val_labels) == 1437
    run = sln.train_sln(data, small_config(epochs=2), seed=0, progress=False)
    assert "val_acc_last" in run.metrics


def test_reduced_profiles_pool_pixels_after_the_noise_and_narrow_the_net():
    cell = {"dataset": "digits", "noise": {"model": "sym", "rate": 0.4, "seed": 0}}
    full = sln.prepare_data(cell, seed=0)
    pooled = sln.prepare_data({**cell, "downsample": 2}, seed=0)
    assert pooled.train_images.shape[1:3] == (4, 4) and pooled.test_images.shape[1:3] == (4, 4)
    assert np.array_equal(pooled.noisy, full.noisy) and pooled.noise_meta["downsample"] == 2  # the same labels
    cfg = sln.SLNConfig.from_cell({"train": {"arch": "preact_resnet18_dividemix", "width_mult": 0.25}})
    narrow = build_model(cfg.arch, num_classes=10, in_channels=3, width_mult=cfg.width_mult)
    wide = build_model(cfg.arch, num_classes=10, in_channels=3)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters()) / 8


def test_openset_stand_in_replaces_images_not_labels():
    data = sln.prepare_data({"dataset": "digits", "noise": {"model": "openset", "rate": 0.4, "seed": 123,
                                                              "source_dataset": "pixel_shuffled"}}, seed=0)
    assert data.noisy_mask.mean() == pytest.approx(0.4, abs=0.001)
    assert np.array_equal(data.noisy, data.clean)


@pytest.mark.extended  # make test runs SLN cells through the pipeline in test_run_identity.py and test_notebook_runs.py
def test_smoke_cells_through_nlkit_run(kit_project):
    """CE and SLN smoke cells through `nlkit run` (papermill): finite, different numbers."""
    from nlkit.pipeline import run_cell

    metrics = {}
    for method in ("ce", "sln"):
        [result] = run_cell(kit_project / f"params/sln/cifar10-sym-0.40-paper-{method}.yaml", "smoke")
        assert result.status == "done", result.message
        metrics[method] = json.loads((result.out_dir / "metrics.json").read_text())
        for fig in ("curves", "confidence", "dissection"):
            assert (result.out_dir / f"{fig}.png").is_file()
    ce, sl = metrics["ce"], metrics["sln"]
    for m in (ce, sl):
        assert all(np.isfinite(m[k]) for k in ("acc_last", "acc_best_test", "acc_last_ema"))
        assert m["acc_val_selected"] is None and m["epochs"] == 12
    assert ce["acc_last"] != sl["acc_last"]
    assert ce["params"]["train"]["sigma"] == 0.0 and sl["params"]["train"]["sigma"] == 1.0


def test_engine_benchmark_runs(tmp_path):
    """The benchmark script still works (its numbers are recorded by benchmarks/, never asserted)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"
    spec = importlib.util.spec_from_file_location("bench_engine", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure("cpu", steps=1, batch_size=8, n_images=8, compile=False, arch="wrn28_2")
    assert result["images_per_second"] > 0 and result["seconds_per_epoch_50k"] > 0


def test_animal10n_resized_bilinear_after_64px_statistics(tmp_path):
    """re-sln's Animal-10N pipeline: normalisation statistics of the 64x64 training images, then PIL bilinear
    Resize(32) (not a JPEG draft decode straight to 32x32, nor 32x32 statistics)."""
    from PIL import Image

    from data_fixtures import write_animal10n

    names = write_animal10n(tmp_path / "animal10n")
    data = sln.prepare_data({"dataset": "animal10n", "noise": {"model": "clean", "rate": 0.0, "seed": 0},
                             "image_size": 32}, seed=0, data_root=tmp_path)
    full = {f: np.stack([np.asarray(Image.open(tmp_path / "animal10n" / f / n).convert("RGB")) for n in files])
            for f, files in names.items()}
    resized = {f: np.stack([np.asarray(Image.fromarray(a).resize((32, 32), Image.BILINEAR)) for a in arrays])
               for f, arrays in full.items()}
    assert np.array_equal(data.train_images, resized["training"])
    assert np.array_equal(data.test_images, resized["testing"])
    # re-sln (data.py get_normalization_params): mean and std over every 64x64 training pixel, per channel
    np.testing.assert_allclose(data.mean, full["training"].mean(axis=(0, 1, 2)) / 255, atol=5e-5)  # kit: 4 decimals
    np.testing.assert_allclose(data.std, full["training"].std(axis=(0, 1, 2)) / 255, atol=5e-5)


def test_ce_companion_of_an_sln_cell_is_the_ce_cell_of_the_same_setting(monkeypatch, tmp_path):
    """The SLN notebook's CE-vs-SLN comparison trains the CE cell of the same setting (whatever the working folder)."""
    from nlkit.methods.sln import ce_companion
    from nlkit.pipeline.params import repo_root

    monkeypatch.chdir(tmp_path)
    assert ce_companion("params/sln/cifar10-sym-0.40-paper-sln.yaml") == \
        repo_root() / "params/sln/cifar10-sym-0.40-paper-ce.yaml"
    assert ce_companion("params/sln/cifar10-sym-0.40-paper-ce.yaml") is None


def test_cpu_profile_switches_follow_the_cpu(digits_data, monkeypatch):
    """The switches `bf16: auto` + `channels_last: true`: bf16 autocast on a CPU with native bf16 (the run's
    numbers move off the fp32 run's), fp32 on one without (the same run as bf16 false), channels_last either way."""
    import nlkit.hardware as hw

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    fp32 = sln.train_sln(digits_data, small_config(sigma=1.0, epochs=1, channels_last=True), seed=0, progress=False)
    for native in (True, False):
        flags = {"avx2", "avx512f"} | ({"avx512_bf16", "amx_bf16"} if native else set())
        monkeypatch.setattr(hw, "_cpu_flags", lambda flags=flags: flags)
        hw._cpu_isa.cache_clear()
        try:
            auto = sln.train_sln(digits_data, small_config(sigma=1.0, epochs=1, bf16="auto", channels_last=True),
                                 seed=0, progress=False)
        finally:
            hw._cpu_isa.cache_clear()
        weight = next(p for p in auto.trainer.model.parameters() if p.dim() == 4)
        assert weight.is_contiguous(memory_format=torch.channels_last)
        assert np.isfinite(auto.history["loss"]).all()
        same = np.array_equal(auto.history["loss"].to_numpy(), fp32.history["loss"].to_numpy())
        assert same is (not native), native


def test_lr_schedule_constant_is_the_paper_and_cosine_decays_over_the_run():
    constant = sln.SLNConfig(epochs=30, lr=0.05)
    assert [sln.epoch_lr(constant, e) for e in (1, 15, 30)] == [0.05] * 3
    cosine = sln.SLNConfig(epochs=30, lr=0.05, lr_schedule="cosine")
    lrs = [sln.epoch_lr(cosine, e) for e in range(1, 31)]
    assert lrs[0] == pytest.approx(0.05)
    assert lrs[15] == pytest.approx(0.025)             # halfway through the half-cosine
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and 0 < lrs[-1] < 0.05 * 0.01
    with pytest.raises(Exception, match="lr schedule"):
        sln.SLNConfig.from_cell({"train": {"lr_schedule": "step"}})


def test_cosine_schedule_reaches_the_optimiser(digits_data):
    cfg = small_config(epochs=4, sigma=0.0, lr_schedule="cosine", lr=0.04)
    whole = sln.train_sln(digits_data, cfg, seed=0, progress=False)
    expected = [sln.epoch_lr(cfg, e) for e in range(1, 5)]
    np.testing.assert_allclose(whole.history["lr"], expected)
    assert whole.trainer.optimizer.param_groups[0]["lr"] == pytest.approx(expected[-1])
