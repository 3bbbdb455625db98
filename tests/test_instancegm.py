"""InstanceGM, DivideMix and CE on CPU: the noise setting, the networks, the continuous-Bernoulli likelihood, the
GMM division, MixMatch and the losses, which parameters one step updates, resuming, the params files, and one smoke
cell end to end."""

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlkit.data import DeviceBatcher
from nlkit.methods import instancegm as igm
from nlkit.methods.instancegm import dividemix as dm
from nlkit.methods.instancegm.generative import GenerativeModule, vae_loss
from nlkit.methods.instancegm.train import vae_extra_loss
from nlkit.models import build_model
from nlkit.noise import idn_ptd
from nlkit.pipeline import find_cells, load_cell
from nlkit.pipeline.params import PROFILES

ROOT = Path(__file__).resolve().parents[1]
CELL = ROOT / "params/instancegm/cifar10-idn-0.50-instancegm.yaml"


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny networks: a second thread only adds synchronisation (and collapses on a shared machine)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- noise and cells

def test_idn_0_45_is_its_own_setting_not_0_50():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2000, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 2000)
    r45, r50 = idn_ptd(images, y, 0.45, 10, seed=123), idn_ptd(images, y, 0.5, 10, seed=123)
    assert r45.meta["expected_rate"] == pytest.approx(0.45, abs=0.01)
    assert r50.meta["expected_rate"] == pytest.approx(0.50, abs=0.01)
    assert not np.array_equal(r45.noisy, r50.noisy)
    assert "%.1f" % 0.45 == "0.5"  # the original code's file name for r = 0.45: it collides with 0.5
    c45 = load_cell(ROOT / "params/instancegm/cifar10-idn-0.45-dividemix.yaml", "paper")
    c50 = load_cell(ROOT / "params/instancegm/cifar10-idn-0.50-dividemix.yaml", "paper")
    assert (c45["noise"]["rate"], c50["noise"]["rate"]) == (0.45, 0.5)
    assert (c45["column"], c50["column"]) == ("0.45", "0.50")


def test_subsets_and_downsampling_keep_the_full_set_labels():
    from nlkit.methods.instancegm.data import downsample

    cell = {"dataset": "digits", "noise": {"model": "idn", "rate": 0.4, "seed": 123}}
    full = igm.prepare(cell, 0)
    part = igm.prepare({**cell, "train_subset": 100, "test_subset": 50}, 0)
    np.testing.assert_array_equal(part.noisy, full.noisy[:100])       # noise drawn on the full set, then cut
    assert len(part.test_labels) == 50 and part.noise_meta["subset"] == {"train": 100, "of": len(full.noisy),
                                                                         "test": 50}
    x = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    assert downsample(x, 2)[0, :, :, 0].tolist() == [[2, 4], [10, 12]]   # 2x2 means, rounded half to even
    with pytest.raises(Exception, match="divide"):
        downsample(x, 3)


def test_every_cell_resolves_under_every_profile():
    cells = find_cells("instancegm")
    names = {c.stem for c in cells}
    pattern = re.compile(r"^(cifar10|cifar100)-idn-0\.\d\d-(ce|dividemix|instancegm)$|"
                         r"^redmini-red-0\.\d\d-(ce|dividemix|instancegm)$|^animal10n-real-(ce|dividemix|instancegm)$|"
                         r"^cifar10n-(aggre|random1|worse)-(ce|dividemix|instancegm)$|"
                         r"^cifar100n-noisy-(ce|dividemix|instancegm)$")
    assert len(cells) == 57 and all(pattern.match(n) for n in names), sorted(names)  # 45 of I1-I4, 12 CIFAR-N
    rows = {}
    for path in cells:
        for profile in PROFILES:
            cell = load_cell(path, profile)
            cfg = igm.Config.from_cell(cell)
            assert cfg.method == path.stem.rsplit("-", 1)[1]
            assert cell["notebook"] == "instancegm" and cell["table"] in ("I1", "I2", "I3", "I4", "I6")
            if profile == "smoke":
                assert cell["dataset"] == "digits" and cfg.epochs <= 3
        rows.setdefault(cell["table"], set()).add(cell["row"])
    assert all(r == {"CE", "DivideMix", "InstanceGM"} for r in rows.values()), rows
    paper = igm.Config.from_cell(load_cell(CELL, "paper"))
    assert (paper.epochs, paper.warmup_epochs, paper.lr, paper.lambda_u, paper.z_dim) == (300, 10, 0.02, 25.0, 25)
    assert (paper.eps_dist, paper.double_sigmoid, paper.kl_reduction, paper.t_decoder_input) == \
        ("uniform", True, "sum", "xhat")
    c100 = igm.Config.from_cell(load_cell(ROOT / "params/instancegm/cifar100-idn-0.50-instancegm.yaml", "quick"))
    assert (c100.warmup_epochs, c100.epochs, c100.lr_drop_epoch) == (30, 100, 80)


def test_precision_is_fp32_except_in_quick_and_cpu():
    """The original code computes in fp32; bf16 autocast is a named speed switch: on in `quick`; smoke, cpu (the
    setting its committed runs were made with) and paper compute in fp32 NCHW on the CPU."""
    from nlkit.hardware import use_channels_last

    assert igm.Config().bf16 is False
    expected = {"quick": True, "cpu": False, "smoke": False, "paper": False}
    for path in find_cells("instancegm"):
        for profile in PROFILES:
            cfg = igm.Config.from_cell(load_cell(path, profile))
            assert cfg.bf16 == expected[profile] and type(cfg.bf16) is type(expected[profile]), (path.stem, profile)
            if profile in ("smoke", "cpu", "paper"):
                assert not use_channels_last(cfg.channels_last, "cpu", cfg.bf16), (path.stem, profile)
        assert load_cell(path, "paper")["train"]["bf16"] is False   # stated, not only a code default


# ---------------------------------------------------------------------------------------------- networks

def test_dividemix_preact_resnet18():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    net = build_model("preact_resnet18_dividemix", num_classes=10)
    assert count(net) == 11_171_274 and net.bn is None   # about 11.2M, no final BN/ReLU (a DivideMix quirk)
    assert isinstance(net.stem[1], torch.nn.BatchNorm2d)  # conv + BN + ReLU stem
    assert count(build_model("preact_resnet18", num_classes=10)) == 11_172_170  # He et al.'s layout is unchanged
    block = net.layers[0]   # identity shortcut: DivideMix adds ReLU(BN(x)), not x
    x = torch.randn(2, 64, 8, 8)
    block.eval()
    with torch.no_grad():
        out = block(x)
        act = torch.relu(block.bn1(x))
        assert torch.allclose(out, block.conv2(torch.relu(block.bn2(block.conv1(act)))) + act)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_animal10n_vgg19_bn_head_is_a_fresh_default_linear(monkeypatch):
    """instanceGM_animal10N.py: torchvision vgg19_bn() (1000 classes, torchvision's init), then classifier[6] =
    nn.Linear(4096, 10) with PyTorch's default init (not torchvision's N(0, 0.01) head with zero bias). A narrow
    stand-in for torchvision's builder keeps the test fast; the random draws happen in the same order."""
    import torchvision

    calls = []

    def narrow_vgg19_bn(**kwargs):   # torchvision's VGG layout, 64 features instead of 4096
        calls.append(kwargs)
        net = torch.nn.Module()
        net.features = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1))
        net.classifier = torch.nn.Sequential(*[torch.nn.Identity()] * 6, torch.nn.Linear(64, 1000))
        torch.nn.init.normal_(net.classifier[6].weight, 0, 0.01)
        torch.nn.init.zeros_(net.classifier[6].bias)
        return net

    monkeypatch.setattr(torchvision.models, "vgg19_bn", narrow_vgg19_bn)
    torch.manual_seed(11)
    kit = igm.build_classifier("vgg19_bn", 10, 3)
    torch.manual_seed(11)
    narrow_vgg19_bn()
    head = torch.nn.Linear(64, 10)
    assert calls[0] == {"weights": None}   # built with its 1000-class head, as the original
    assert torch.equal(kit.classifier[6].weight, head.weight) and torch.equal(kit.classifier[6].bias, head.bias)


def test_generative_module_layout():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    gm = GenerativeModule(3, 32, 10, 25)
    assert count(gm.z_encoder) == 452_190 and count(gm.t_decoder) == 411_190  # about 0.45M and 0.41M
    assert 430_000 < count(gm.x_decoder) < 450_000
    out = gm(torch.rand(4, 3, 32, 32), torch.randn(4, 10), torch.Generator().manual_seed(0))
    assert out["lam"].shape == (4, 3, 32, 32) and out["n_logits"].shape == (4, 10)
    assert out["lam"].min() > 0.5   # the double sigmoid: λ in (0.5, 0.731)
    assert (out["z"] >= out["mu"]).all()  # uniform noise in [0, 1): z = μ + U σ >= μ
    for side, channels in ((8, 1), (64, 3)):
        small = GenerativeModule(channels, side, 10, 8)
        assert small(torch.rand(2, channels, side, side), torch.randn(2, 10))["lam"].shape == (2, channels, side, side)


def test_continuous_bernoulli_log_density_matches_torch():
    torch.manual_seed(0)
    lam = torch.cat([torch.rand(500) * 0.998 + 0.001, 0.5 + (torch.rand(200) - 0.5) * 0.004, torch.tensor([0.5])])
    x = torch.rand(len(lam))
    ref = torch.distributions.ContinuousBernoulli(probs=lam).log_prob(x)
    torch.testing.assert_close(igm.cb_log_prob(x, lam), ref, atol=1e-5, rtol=1e-5)
    # C(0.5) = 2: log CB(x; 0.5) = log 0.5 + log 2 = 0 for every x, with a finite gradient
    half = torch.full((5,), 0.5, requires_grad=True)
    value = igm.cb_log_prob(torch.linspace(0, 1, 5), half)
    torch.testing.assert_close(value, torch.zeros(5))
    value.sum().backward()
    assert torch.isfinite(half.grad).all()
    torch.testing.assert_close(igm.cb_mean(lam).double(), torch.distributions.ContinuousBernoulli(
        probs=lam.double()).mean, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- DivideMix pieces

def test_gmm_split_on_bimodal_losses():
    rng = np.random.default_rng(0)
    clean = np.r_[np.ones(700, bool), np.zeros(300, bool)]
    losses = np.where(clean, rng.normal(0.2, 0.05, 1000), rng.normal(0.8, 0.08, 1000))
    w = dm.gmm_clean_probability(dm.normalise_losses(losses), seed=3)
    assert w[clean].mean() > 0.95 and w[~clean].mean() < 0.05
    np.testing.assert_array_equal(w, dm.gmm_clean_probability(dm.normalise_losses(losses), seed=3))  # seeded
    q = dm.division_quality(w, clean, 0.5)
    assert q["auc"] > 0.99 and q["precision"] > 0.99 and q["recall"] > 0.99
    assert q["n_labelled"] == pytest.approx(700, abs=5)
    assert sum(q["hist_clean"]) == 700 and sum(q["hist_noisy"]) == 300
    assert dm.normalise_losses(np.ones(4)).tolist() == [0, 0, 0, 0]


def test_semi_loss_ramp_and_penalty():
    torch.manual_seed(0)
    logits_u, targets_u = torch.randn(6, 4), torch.softmax(torch.randn(6, 4), 1)
    logits_x, targets_x = torch.randn(4, 4), torch.softmax(torch.randn(4, 4), 1)
    lx, lu = dm.semi_loss(logits_x, targets_x, logits_u, targets_u)
    assert lu.item() == pytest.approx(((torch.softmax(logits_u, 1) - targets_u) ** 2).sum().item() / (6 * 4))
    assert lx.item() == pytest.approx(-(targets_x * torch.log_softmax(logits_x, 1)).sum(1).mean().item())
    assert dm.linear_rampup(10, 10, 25) == 0 and dm.linear_rampup(10 + 16, 10, 25) == 25
    assert dm.linear_rampup(18, 10, 25) == pytest.approx(12.5) and dm.linear_rampup(40, 10, 25) == 25
    uniform = torch.zeros(3, 5)
    assert dm.uniform_prior_penalty(uniform).item() == pytest.approx(0.0, abs=1e-7)
    assert dm.learning_rate(149, dm.DivideMixConfig()) == 0.02 and dm.learning_rate(150, dm.DivideMixConfig()) == \
        pytest.approx(0.002)


def test_subset_stream_cycles_like_a_restarted_loader():
    g = torch.Generator().manual_seed(0)
    stream = dm.SubsetStream(torch.arange(10, 20), 4, lambda n: torch.randperm(n, generator=g))
    batches = [stream.next() for _ in range(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]          # partial last batch of each pass
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10, 20))
    assert not dm.SubsetStream(torch.arange(0), 4, lambda n: torch.randperm(n, generator=g))


def reference_dividemix_loss(net, peer, x1, x2, labels_x, w_x, u1, u2, lam, perm, lambda_u, T=0.5):
    """The DivideMix/InstanceGM code's train() loss, transcribed (SemiLoss, the prior penalty)."""
    with torch.no_grad():
        pu = (torch.softmax(net(u1), 1) + torch.softmax(net(u2), 1) + torch.softmax(peer(u1), 1)
              + torch.softmax(peer(u2), 1)) / 4
        ptu = pu ** (1 / T)
        targets_u = ptu / ptu.sum(dim=1, keepdim=True)
        px = (torch.softmax(net(x1), 1) + torch.softmax(net(x2), 1)) / 2
        px = w_x * labels_x + (1 - w_x) * px
        ptx = px ** (1 / T)
        targets_x = ptx / ptx.sum(dim=1, keepdim=True)
    all_inputs = torch.cat([x1, x2, u1, u2])
    all_targets = torch.cat([targets_x, targets_x, targets_u, targets_u])
    mixed_input = lam * all_inputs + (1 - lam) * all_inputs[perm]
    mixed_target = lam * all_targets + (1 - lam) * all_targets[perm]
    logits = net(mixed_input)
    b = x1.shape[0]
    lx = -torch.mean(torch.sum(F.log_softmax(logits[:2 * b], 1) * mixed_target[:2 * b], 1))
    lu = torch.mean((torch.softmax(logits[2 * b:], 1) - mixed_target[2 * b:]) ** 2)
    prior = torch.ones(logits.shape[1]) / logits.shape[1]
    penalty = torch.sum(prior * torch.log(prior / torch.softmax(logits, 1).mean(0)))
    return lx + lambda_u * lu + penalty


def small_net(seed):
    torch.manual_seed(seed)
    return build_model("small_cnn", num_classes=4, in_channels=1, width=4)


def test_dividemix_loss_equals_the_code_and_vae_gradient_reaches_the_net():
    torch.manual_seed(1)
    x1, x2, u1, u2 = (torch.rand(3, 1, 8, 8) for _ in range(4))
    labels = F.one_hot(torch.tensor([0, 1, 3]), 4).float()
    w = torch.tensor([0.9, 0.6, 0.7])
    perm = torch.randperm(12)
    states = []
    for fn in (reference_dividemix_loss, None):
        net, peer = small_net(0), small_net(1)
        net.train()
        peer.eval()
        if fn is None:
            loss, parts = dm.dividemix_loss(net, peer, x1, x2, labels, w, u1, u2, 0.7, 12.5, 0.5, perm)
        else:
            loss = fn(net, peer, x1, x2, labels, w.view(-1, 1), u1, u2, 0.7, perm, 12.5)
        loss.backward()
        states.append((loss.detach(), [p.grad.clone() for p in net.parameters()], net.state_dict()))
    torch.testing.assert_close(states[0][0], states[1][0])
    for a, b in zip(states[0][1], states[1][1]):
        torch.testing.assert_close(a, b)
    for key in states[0][2]:   # the no-grad co-guess/co-refine passes update BN statistics the same way
        torch.testing.assert_close(states[0][2][key], states[1][2][key])
    # with the generative module on, L_VAE alone sends a gradient into the network through the Gumbel sample
    net, gm = small_net(0), GenerativeModule(1, 8, 4, 5)
    x = torch.rand(6, 1, 8, 8)
    out = gm(x, net(x), torch.Generator().manual_seed(0))
    total, parts = vae_loss(out, x, torch.tensor([0, 1, 2, 3, 0, 1]))
    assert all(torch.isfinite(v) for v in parts.values())
    assert parts["prior"].item() == pytest.approx(-1e-5 * np.log(4), rel=1e-4)   # a constant
    total.backward()
    assert net.head.weight.grad.abs().sum() > 0 and net.body[0].weight.grad.abs().sum() > 0


def tiny_setup(method, n=48, seed=0, **cfg_kw):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 8, 8, 1), dtype=np.uint8)
    noisy = torch.as_tensor(rng.integers(0, 4, n))
    cfg = igm.InstanceGMConfig(method=method, epochs=3, warmup_epochs=1, batch_size=8, warmup_batch_size=16,
                               vae_batch_size=8, arch="small_cnn", crop_padding=1, flip=True, **cfg_kw)
    train_b = DeviceBatcher(images, batch_size=16, shuffle=True, crop_padding=1, flip=True, seed=seed)
    eval_b = DeviceBatcher(images, batch_size=64, shuffle=False)
    nets = [small_net(1), small_net(2)]
    gms = extra = None
    if method == "instancegm":
        gms = [GenerativeModule(1, 8, 4, 5) for _ in range(2)]
        extra = vae_extra_loss(gms, train_b, noisy, cfg)
    trainer = dm.DivideMix(nets, cfg, train_b, eval_b, noisy, 4, seed, extra)
    return trainer, gms


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("method", ["dividemix", "instancegm"])
def test_one_step_updates_exactly_the_right_parameters(method, monkeypatch):
    trainer, gms = tiny_setup(method)
    nets = trainer.nets
    before = [snapshot(m) for m in nets + (gms or [])]
    seen = {}
    real = dm.mixmatch

    def spy(inputs, targets, lam, perm):
        seen.update(rows=inputs.shape[0], perm=perm.clone(), lam=lam)
        return real(inputs, targets, lam, perm)

    monkeypatch.setattr(dm, "mixmatch", spy)
    prob = np.zeros(48)
    prob[:8] = 0.9          # 8 labelled samples: exactly one iteration of batch 8; 40 unlabelled
    stats = trainer.train_epoch(0, epoch0=1, prob=prob)
    assert stats["n_iter"] == 1 and np.isfinite(float(stats["loss"]))
    # MixMatch: lambda' >= 0.5 and one permutation over the 2b labelled + 2b unlabelled rows
    assert seen["rows"] == 32 and sorted(seen["perm"].tolist()) == list(range(32)) and seen["lam"] >= 0.5
    assert ((seen["perm"][:16] >= 16).any() or (seen["perm"][16:] < 16).any())
    assert changed(before[0], nets[0])                   # the network under training (weights and BN)
    assert not changed(before[1], nets[1])               # the peer: eval mode, no step
    if method == "instancegm":
        assert {k.split(".")[0] for k in changed(before[2], gms[0])} == {"z_encoder", "x_decoder", "t_decoder"}
        assert not changed(before[3], gms[1])             # the other generative module is untouched
        assert np.isfinite(float(stats["vae"])) and trainer.extra.optimizers[0].state
        assert not trainer.extra.optimizers[1].state
    assert not trainer.optimizers[1].state               # the peer's SGD never stepped


# ---------------------------------------------------------------------------------------------- whole runs

def smoke_config(**kw):
    cell = load_cell(CELL, "smoke")
    return cell, igm.Config.from_cell({**cell, "train": {**cell["train"], **kw}})


@pytest.fixture(scope="module")
def smoke_data():
    return igm.prepare(load_cell(CELL, "smoke"), 0)


def test_runs_exactly_the_epochs_and_ce_has_one_network(smoke_data):
    _, cfg = smoke_config()
    run = igm.train_instancegm(smoke_data, cfg, 0, progress=False)
    h = run.history
    assert list(h["epoch"]) == [1, 2, 3] and list(h["phase"]) == ["warmup", "ssl", "ssl"]
    assert (h.loc[h.phase == "ssl", "n_labelled_net1"] > 0).all() and np.isfinite(h["vae_net1"].iloc[1:]).all()
    assert run.metrics["acc_last"] == pytest.approx(h["test_acc"].iloc[-1] * 100)
    assert len(run.divisions) == 4 and run.divisions[0]["hist_clean"] is not None
    # per_sample.csv: the last division's clean probabilities (epoch 3) per network and averaged
    verdicts = igm.per_sample_verdicts(run, smoke_data)
    assert len(verdicts) == len(smoke_data.noisy) and (verdicts["division_epoch"] == 3).all()
    np.testing.assert_allclose(verdicts["clean_prob"], (verdicts["clean_prob_net1"] + verdicts["clean_prob_net2"]) / 2)
    np.testing.assert_allclose(verdicts["issue_score"], 1 - verdicts["clean_prob"])
    assert (verdicts["suspected_issue"] == (verdicts["clean_prob"] <= cfg.p_threshold)).all()
    net1 = verdicts["clean_prob_net1"] > cfg.p_threshold   # network 1's labelled set, as its division counted it
    assert net1.sum() == run.divisions[-2]["n_labelled"] and run.divisions[-2]["net"] == 1
    ce = igm.train_instancegm(smoke_data, replace(cfg, method="ce"), 0, progress=False)
    assert len(ce.trainer.nets) == 1 and list(ce.history["phase"]) == ["ce"] * 3 and not ce.divisions
    assert ce.metrics["acc_last"] == pytest.approx(ce.metrics["acc_last_net1"])


def test_unknown_true_labels_give_no_division_scores(smoke_data, tmp_path):
    """Real-world noise (Red Mini-ImageNet, Animal-10N): the division is made, but not scored."""
    _, cfg = smoke_config(epochs=2)
    run = igm.run(replace(smoke_data, clean=None), replace(cfg, method="dividemix"), 0, tmp_path, progress=False)
    assert run.metrics["noise_rate"] is None and run.metrics["auc_last"] is None
    assert run.state.divisions[0]["hist_all"] and run.state.divisions[0]["n_labelled"] >= 0
    # per_sample.csv: the verdicts without clean labels (an empty column)
    from nlkit.noise.issues import LEADING, load_per_sample

    verdicts = load_per_sample(tmp_path)
    assert list(verdicts.columns[:5]) == list(LEADING) and len(verdicts) == len(smoke_data.noisy)
    assert verdicts["clean"].isna().all() and verdicts["clean_prob"].between(0, 1).all()
    assert (verdicts["division_epoch"] == 2).all()


def test_resume_mid_run_gives_the_uninterrupted_result(smoke_data, tmp_path):
    _, cfg = smoke_config(checkpoint_every_seconds=0)
    full = igm.train_instancegm(smoke_data, cfg, 5, progress=False)
    first = igm.train_instancegm(smoke_data, replace(cfg, time_budget_seconds=0), 5, out_dir=tmp_path,
                                 progress=False)
    assert not first.completed and len(first.history) == 1
    resumed = igm.train_instancegm(smoke_data, cfg, 5, out_dir=tmp_path, progress=False)
    assert resumed.completed and list(resumed.history["epoch"]) == [1, 2, 3]
    for col in ("test_acc", "test_acc_net1", "auc_net1", "n_labelled_net2", "vae_net2"):
        np.testing.assert_allclose(resumed.history[col], full.history[col], rtol=1e-6)


@pytest.mark.extended  # make test runs InstanceGM's cells through the pipeline in test_run_identity.py
def test_smoke_cell_through_nlkit_run(kit_project, monkeypatch):
    """The InstanceGM smoke cell through `nlkit run` (papermill): finite numbers, every figure."""
    from nlkit.pipeline import run_cell

    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # the kernel's torch: tiny networks, one thread

    [result] = run_cell(kit_project / "params/instancegm/cifar10-idn-0.50-instancegm.yaml", "smoke")
    assert result.status == "done", result.message
    m = json.loads((result.out_dir / "metrics.json").read_text())
    assert m["method"] == "instancegm" and m["epochs"] == 3 and m["acc_val_selected"] is None
    assert all(np.isfinite(m[k]) for k in ("acc_last", "acc_best_test", "acc_last10", "auc_last"))
    assert m["n_labelled_first"] > 0
    for fig in ("accuracy", "division", "division_histograms", "vae"):
        assert (result.out_dir / f"{fig}.png").stat().st_size > 5_000


def test_instancegm_benchmark_runs(tmp_path):
    """The benchmark script still works (its numbers are recorded by benchmarks/, never asserted)."""
    import importlib.util

    path = ROOT / "benchmarks" / "bench_instancegm.py"
    spec = importlib.util.spec_from_file_location("bench_instancegm", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.measure("cpu", n_images=64, n_test=32, iterations=1, width_mult=0.125, batch_size=8,
                           vae_batch_size=8)
    assert result["seconds_per_dividemix_epoch"] > 0 and result["seconds_per_instancegm_epoch"] > 0
