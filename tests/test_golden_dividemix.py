"""DivideMix against goldens of the original code (LiJunnan1992/DivideMix at d9d3058, tests/golden/dividemix/,
written by tests/golden/make_dividemix.py): one semi-supervised step, the asymmetric-noise warm-up step, eval_train's
GMM, the λ_u ramp, and the PreAct ResNet-18 through the kit's state-dict mapping. float32 tolerances as stated."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlkit.data import DeviceBatcher
from nlkit.methods.instancegm import dividemix as dm
from nlkit.models import build_model, preact_state_from_dividemix

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
from dividemix_recipes import TinyNet, arrays_to_state, recipe_state  # noqa: E402

RTOL, ATOL = 1e-5, 1e-6   # float32: the kit and the original differ only in the order of a few sums


def load(name):
    return np.load(GOLDEN / "dividemix" / f"{name}.npz", allow_pickle=False)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(g, prefix):
    net = TinyNet(5)
    net.load_state_dict(arrays_to_state(g, prefix))
    return net


def assert_state_close(net, g, prefix):
    expected = arrays_to_state(g, prefix)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=RTOL, atol=ATOL, msg=key)


def test_semi_supervised_step_equals_the_original():
    """Co-guessing (net in train mode, peer in eval mode), co-refinement, sharpening with T, MixMatch with the given
    λ and permutation, L_x, L_u, the prior penalty, the λ_u ramp value, and the SGD step."""
    g = load("train_step")
    net, peer = tiny(g, "net_before"), tiny(g, "peer_before")
    net.train()
    peer.eval()
    t = {k: torch.from_numpy(g[k]) for k in ("x1", "x2", "u1", "u2")}
    onehot = F.one_hot(torch.from_numpy(g["labels"]), 5).float()
    w = torch.from_numpy(g["w"]).float()
    lam = max(float(g["lam_draw"]), 1 - float(g["lam_draw"]))
    lamb = dm.linear_rampup(float(g["epoch"]) + 0 / int(g["num_iter"]), int(g["warm_up"]), float(g["lambda_u"]))
    assert lamb == pytest.approx(float(g["lamb"]), rel=1e-12)
    loss, parts = dm.dividemix_loss(net, peer, t["x1"], t["x2"], onehot, w, t["u1"], t["u2"], lam, lamb,
                                    float(g["T"]), torch.from_numpy(g["perm"]), bf16=False)
    for key in ("lx", "lu", "penalty"):
        torch.testing.assert_close(parts[key], torch.from_numpy(g[key]), rtol=RTOL, atol=1e-7, msg=key)
    torch.testing.assert_close(loss.detach(), torch.from_numpy(g["loss"]), rtol=RTOL, atol=ATOL)
    cfg = dm.DivideMixConfig()
    opt = torch.optim.SGD(net.parameters(), lr=float(g["lr"]), momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert_state_close(net, g, "net_after")    # weights and the BN statistics moved by the no-grad passes
    assert_state_close(peer, g, "peer_after")  # the peer is untouched


def test_warmup_step_with_negative_entropy_equals_the_original():
    """DivideMix.warmup_epoch with warmup_neg_entropy (the asym case: CE + NegEntropy), one batch of all samples."""
    g = load("warmup_step")
    images = torch.from_numpy(g["images"])
    n = images.shape[0]
    net = tiny(g, "net_before")
    cfg = dm.DivideMixConfig(warmup_neg_entropy=True, warmup_batch_size=n)
    train_b = DeviceBatcher(images, batch_size=n, shuffle=False, device="cpu")
    trainer = dm.DivideMix([net, tiny(g, "net_before")], cfg, train_b, train_b, torch.from_numpy(g["labels"]), 5,
                           seed=0)
    trainer.set_lr(0)
    stats = trainer.warmup_epoch(0, 0)
    torch.testing.assert_close(stats["loss"], torch.from_numpy(g["loss"]), rtol=RTOL, atol=ATOL)
    assert_state_close(net, g, "net_after")


def test_eval_train_gmm_equals_the_original():
    """Per-sample CE, min-max normalisation and the 2-component GMM (max_iter 10, tol 1e-2, reg_covar 5e-4) with the
    same k-means initialisation draws: the clean posteriors agree."""
    g = load("eval_train_gmm")
    losses = F.cross_entropy(torch.from_numpy(g["logits"]), torch.from_numpy(g["noisy"]), reduction="none")
    prob = dm.gmm_clean_probability(dm.normalise_losses(losses.numpy()), int(g["gmm_seed"]))
    np.testing.assert_allclose(prob, g["prob"], rtol=0, atol=1e-5)
    assert np.array_equal(prob > 0.5, g["prob"] > 0.5)


def test_lambda_u_ramp_equals_the_original():
    g = load("eval_train_gmm")
    for cur, value in zip(g["rampup_current"], g["rampup_value"]):
        assert dm.linear_rampup(float(cur), int(g["rampup_warm_up"]), float(g["rampup_lambda_u"])) == \
            pytest.approx(float(value), rel=1e-12, abs=0)


def test_preact_resnet18_maps_from_the_original_state_dict():
    """PreResNet.py ResNet18 filled with the recipe weights (in its own state-dict order) -> kit mapping ->
    PreActResNet(dividemix=True): names and shapes match one to one and both modes' logits agree."""
    g = load("preact_resnet18")
    names = [str(n) for n in g["names"]]
    flat, shapes, pos = g["shapes_flat"], [], 0
    for length in g["shape_lengths"]:
        shapes.append(tuple(int(s) for s in flat[pos:pos + length]))
        pos += length
    mapped = preact_state_from_dividemix(recipe_state(names, shapes))
    net = build_model("preact_resnet18_dividemix", num_classes=10)
    kit_state = net.state_dict()
    assert set(mapped) == set(kit_state) and len(mapped) == len(names)
    assert all(mapped[k].shape == kit_state[k].shape for k in mapped)
    net.load_state_dict(mapped)
    x = torch.from_numpy(g["x"])
    with torch.no_grad():
        net.eval()
        torch.testing.assert_close(net(x), torch.from_numpy(g["logits_eval"]), rtol=1e-4, atol=1e-5)
        net.train()
        torch.testing.assert_close(net(x), torch.from_numpy(g["logits_train"]), rtol=1e-4, atol=1e-5)
