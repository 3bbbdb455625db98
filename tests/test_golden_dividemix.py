"""DivideMix against goldens of the original code (LiJunnan1992/DivideMix at d9d3058, tests/golden/dividemix/,
written by tests/golden/make_dividemix.py): a whole semi-supervised epoch of the main loop (eval_train of both
networks, co-divided training of each for several iterations, the ensemble test) through the kit's epoch path
(DivideMix.co_divide_epoch and test, with the run's configuration and the original's draws); one semi-supervised
step, the asymmetric-noise warm-up step, eval_train's GMM, the λ_u ramp, and the PreAct ResNet-18 through the kit's
state-dict mapping. float32 tolerances scaled to each tensor's magnitude, as stated."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlkit.data import DeviceBatcher
from nlkit.methods.instancegm import dividemix as dm
from nlkit.methods.instancegm.train import InstanceGMConfig
from nlkit.models import build_model, preact_state_from_dividemix
from nlkit.pipeline import load_cell

GOLDEN = Path(__file__).resolve().parent / "golden"
PARAMS = GOLDEN.parents[1] / "params" / "instancegm"
sys.path.insert(0, str(GOLDEN))
from dividemix_recipes import TinyNet, arrays_to_state, assert_close_scaled, augment, recipe_state  # noqa: E402

# float32; the kit and the original differ only in the order of a few sums. Every comparison scales its absolute
# part to the tensor's own magnitude: |kit - orig| <= RTOL |orig| + ATOL_REL max|orig|
RTOL, ATOL_REL = 1e-5, 1e-5


def load(name):
    return np.load(GOLDEN / "dividemix" / f"{name}.npz", allow_pickle=False)


@pytest.fixture(autouse=True)
def _at_most_two_threads():
    """The tolerances are checked with 1 and 2 threads (OMP_NUM_THREADS=1 keeps one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)


def tiny(g, prefix):
    net = TinyNet(5)
    net.load_state_dict(arrays_to_state(g, prefix))
    return net


def assert_state_close(net, g, prefix, rtol=RTOL, atol_rel=ATOL_REL):
    expected = arrays_to_state(g, prefix)
    assert set(expected) == set(net.state_dict())
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            assert int(value) == int(expected[key]), key
        else:
            assert_close_scaled(value, expected[key], rtol, atol_rel, msg=f"{prefix}/{key}")


class StoredDraws:
    """The kit's `Draws` for network k's epoch, answered from a golden's stored draws (keys `k{k}/...`, written by
    make_dividemix.draw_epoch / make_instancegm): each view is the stored augmentation of the training images, read
    through the kit's DeviceBatcher. `check_done` asserts that the epoch asked for every stored draw."""

    def __init__(self, g, k: int, images: np.ndarray, extra: bool = False):
        p = f"k{k}/"
        self.gmm_seed = int(g["gmm_seeds"][k])
        self.g, self.p, self.images, self.pad = g, p, images, int(g["pad"])
        self._lab = [torch.from_numpy(g[p + "labelled_order"])]
        self._unl = [torch.from_numpy(o) for o in g[p + "unlabelled_orders"]]
        self._views = list(range(len(g[p + "flips"])))
        self._beta = [float(v) for v in g[p + "beta"]]
        self._perm = [torch.from_numpy(g[f"{p}mix_perm/{it}"]) for it in range(int(g[p + "iters"]))]
        self._extra = {key: [torch.from_numpy(v) for v in g[p + key]] if extra else []
                       for key in ("extra_batch", "exponentials", "noise")}

    @staticmethod
    def _pop(queue, n=None):
        assert queue, "the epoch asked for more draws than the original made"
        out = queue.pop(0)
        assert n is None or len(out) == n, (len(out), n)
        return out

    def labelled_order(self, n):
        return self._pop(self._lab, n)

    def unlabelled_order(self, n):
        return self._pop(self._unl, n)

    def view(self, idx):
        c = self._pop(self._views)
        images = augment(self.images, self.g[self.p + "flips"][c], self.g[self.p + "offsets"][c], self.pad)
        return DeviceBatcher(images, batch_size=len(images), shuffle=False, device="cpu").gather(idx)

    def beta(self, alpha):
        assert alpha == 4.0
        return self._pop(self._beta)

    def mix_perm(self, rows):
        return self._pop(self._perm, rows)

    def extra_batch(self, n, size):
        return self._pop(self._extra["extra_batch"], size)

    def exponentials(self, shape):
        out = self._pop(self._extra["exponentials"])
        assert tuple(out.shape) == tuple(shape)
        return out

    def noise(self, shape, dist):
        out = self._pop(self._extra["noise"])
        assert dist == "uniform" and tuple(out.shape) == tuple(shape)
        return out

    def check_done(self):
        # the unlabelled orders hold whole passes; the last may be partly used, so only the others must be drawn
        assert not self._lab and not self._views and not self._beta and not self._perm, "draws left unused"
        assert not any(self._extra.values()), "generative draws left unused"


def run_config(method: str, g, **sizes) -> InstanceGMConfig:
    """The configuration a CIFAR-10 run of `method` takes (its params cell, paper profile), with the golden's
    sizes; the golden's warm-up and epoch must be the cell's."""
    cfg = InstanceGMConfig.from_cell(load_cell(PARAMS / f"cifar10-idn-0.50-{method}.yaml", "paper"))
    assert cfg.warmup_epochs == int(g["warm_up"]) and cfg.epochs > int(g["epoch"])
    return replace(cfg, bf16=False, **sizes)


def stored_draws(g, images, extra=False):
    """DivideMix(draws=...) for a golden of epoch g["epoch"]: one StoredDraws per network, asked for again by
    clean_probability (the GMM seed) and train_epoch."""
    made = {}

    def draws(epoch0, k):
        assert epoch0 == int(g["epoch"])
        made[k] = StoredDraws(g, k, images, extra)
        return made[k]

    return draws, made


def test_co_divide_epoch_equals_the_original_main_loop():
    """The kit's epoch path (DivideMix.co_divide_epoch, then test) against the original's main loop: eval_train for
    both networks, net1 trained on net2's division and net2 on net1's by Train_cifar.py::train from the same draws
    (labelled order, unlabelled passes, augmented views, Beta λ, MixMatch permutations), then the ensemble test."""
    g = load("co_divide_epoch")
    images, noisy = g["images"], torch.from_numpy(g["noisy"])
    nets = [tiny(g, "net1_before"), tiny(g, "net2_before")]
    epoch0, b = int(g["epoch"]), int(g["batch_size"])
    cfg = run_config("dividemix", g, batch_size=b, eval_batch_size=int(g["eval_batch_size"]))
    train_b = DeviceBatcher(images, batch_size=b, shuffle=True, device="cpu")
    eval_b = DeviceBatcher(images, batch_size=cfg.eval_batch_size, shuffle=False, device="cpu")
    draws, made = stored_draws(g, images)
    trainer = dm.DivideMix(nets, cfg, train_b, eval_b, noisy, 5, seed=0, draws=draws)
    trainer.set_lr(epoch0)
    probs, stats = trainer.co_divide_epoch(epoch0)
    for k in range(2):   # the divisions, from eval-mode per-sample losses and the seeded GMM
        np.testing.assert_allclose(probs[k], g[f"prob{k + 1}"], rtol=0, atol=1e-5)
        assert np.array_equal(probs[k] > 0.5, g[f"prob{k + 1}"] > 0.5)
    for k in range(2):   # net k trained on the other's division: per-iteration losses (the kit reports means)
        made[k].check_done()
        assert stats[k]["n_iter"] == int(g[f"k{k}/iters"])
        assert stats[k]["lambda_u"] == pytest.approx(float(g[f"k{k}/lamb"][-1]), rel=1e-12)
        for key in ("lx", "lu", "penalty", "loss"):
            assert float(stats[k][key]) == pytest.approx(float(np.mean(g[f"k{k}/{key}"])), rel=1e-5, abs=1e-7), key
    for k in range(2):   # weights, BN statistics (moved by the no-grad passes in train mode) after both epochs
        assert_state_close(nets[k], g, f"net{k + 1}_after")
    test_b = DeviceBatcher(g["test_images"], batch_size=8, shuffle=False, device="cpu")
    acc = trainer.test(test_b, torch.from_numpy(g["test_labels"]))
    assert float(acc["test_acc"]) * 100 == pytest.approx(float(g["test_acc"]), abs=0.005)


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
    for key in ("lx", "lu", "penalty", "loss"):
        assert_close_scaled(parts[key] if key != "loss" else loss, g[key], RTOL, 0, msg=key)
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
    assert_close_scaled(stats["loss"], g["loss"], RTOL, 0, msg="loss")
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
        assert_close_scaled(net(x), g["logits_eval"], 1e-4, 1e-5, msg="eval")
        net.train()
        assert_close_scaled(net(x), g["logits_train"], 1e-4, 1e-5, msg="train")
