"""InstanceGM against goldens of the original code (arpit2412/InstanceGM at 39cf8a4, tests/golden/instancegm/,
written by tests/golden/make_instancegm.py): a whole semi-supervised epoch of the main loop with the joint
DivideMix + VAE step, through the kit's epoch path (DivideMix.co_divide_epoch with vae_extra_loss, the run's
configuration, the original's draws); the generative part of one step (Gumbel sample and uniform noise given,
encoder, double-sigmoid continuous-Bernoulli reconstruction, noisy-label classifier, label prior, KL) with its loss
terms and gradients, through the kit's state-dict mapping of the original VAE; and the part-dependent noise
generator's flip probabilities and labels. float32 tolerances scaled to each tensor's magnitude, as stated."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_golden_dividemix import assert_state_close, run_config, stored_draws

from nlkit.data import DeviceBatcher
from nlkit.methods.instancegm import dividemix as dm
from nlkit.methods.instancegm.generative import GenerativeModule, generative_state_from_original, vae_loss
from nlkit.methods.instancegm.train import vae_extra_loss
from nlkit.noise import idn_ptd, ptd_flip_probabilities

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
from dividemix_recipes import TinyNet, arrays_to_state, assert_close_scaled, recipe_state  # noqa: E402

# float32; the CB log-density is computed by a different (equivalent) formula than torch's. Every comparison is
# |kit - orig| <= RTOL |orig| + ATOL_REL * scale, scale = max|orig| of the tensor (of the layer, for gradients)
RTOL, ATOL_REL = 1e-4, 1e-5
# The joint epoch's Adam steps (eps 1e-8) turn any gradient difference above ~1e-8 into an O(lr) difference in the
# update of the elements whose gradient is small, so the two codes' round-off (the CB log-density's formula) grows
# over the iterations: the VAE's updates are compared by their relative L2 error per tensor (measured <= 3.3e-2),
# the classifiers, which the VAE loss reaches through c, and the losses with looser rtol/atol_rel (measured:
# losses 3e-5 relative, classifier weights 2.9e-3 of their tensor's max)
JOINT_RTOL, JOINT_ATOL_REL, ADAM_L2_REL = 1e-3, 1e-2, 0.15


def load(name):
    return np.load(GOLDEN / "instancegm" / f"{name}.npz", allow_pickle=False)


def shapes_of(g, prefix):
    flat, out, pos = g[f"{prefix}_shapes_flat"], [], 0
    for length in g[f"{prefix}_shape_lengths"]:
        out.append(tuple(int(s) for s in flat[pos:pos + length]))
        pos += length
    return out


@pytest.fixture(autouse=True)
def _at_most_two_threads():
    """The tolerances are checked with 1 and 2 threads (OMP_NUM_THREADS=1 keeps one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(before, 2))
    yield
    torch.set_num_threads(before)


def test_vae_part_of_a_step_equals_the_original():
    g = load("vae_step")
    names = [str(n) for n in g["vae_names"]]
    original = recipe_state(names, shapes_of(g, "vae"))
    gm = GenerativeModule(3, 32, 10, int(g["z_dim"]))
    mapped = generative_state_from_original(original)
    assert set(mapped) == set(gm.state_dict()) and all(mapped[k].shape == gm.state_dict()[k].shape for k in mapped)
    gm.load_state_dict(mapped)
    net = TinyNet(10)
    net.load_state_dict(arrays_to_state(g, "net"))
    net.train()
    gm.train()
    x, targets = torch.from_numpy(g["x"]), torch.from_numpy(g["targets"])
    out = gm(x, net(x), exponentials=torch.from_numpy(g["exponentials"]), eps=torch.from_numpy(g["uniforms"]))
    loss, parts = vae_loss(out, x, targets)   # CIFAR weights (1, 1, -1e-5, -3e-4), KL summed over the batch
    for key, ref in (("recon", "l1"), ("noisy_ce", "l2"), ("prior", "l3"), ("kl", "l4"), ("vae", "loss")):
        assert_close_scaled(parts[key], g[ref], RTOL, 0, msg=key)
    loss.backward()
    for name, p in net.named_parameters():
        assert_close_scaled(p.grad, g[f"netgrad/{name}"], RTOL, ATOL_REL, msg=name)
    kit_names = generative_state_from_original({k: k for k in original})   # kit name -> original name
    params = dict(gm.named_parameters())
    # a layer's scale (the max |gradient| over its weight and bias): a conv bias feeding a train-mode BatchNorm has
    # a zero gradient in exact arithmetic, so its stored values are round-off and only the layer's scale is a fair one
    layer_scale: dict = {}
    for kit_name in params:
        name = kit_names[kit_name]
        stored = g[f"grad/{name}"] if f"grad/{name}" in g.files else g[f"gradsample/{name}"]
        layer = kit_name.rsplit(".", 1)[0]
        layer_scale[layer] = max(layer_scale.get(layer, 0.0), float(np.abs(stored).max()))
    checked = 0
    for kit_name, p in params.items():
        name, scale = kit_names[kit_name], layer_scale[kit_name.rsplit(".", 1)[0]]
        flat = p.grad.reshape(-1)
        if f"grad/{name}" in g.files:
            assert_close_scaled(flat, g[f"grad/{name}"], RTOL, ATOL_REL, scale, msg=name)
        else:
            idx = torch.linspace(0, flat.numel() - 1, 256).round().long()
            assert_close_scaled(flat[idx], g[f"gradsample/{name}"], RTOL, ATOL_REL, scale, msg=name)
            assert_close_scaled(flat.abs().sum(), g[f"gradabs/{name}"], RTOL, 0, msg=name)
        checked += 1
    assert checked == len(params)
    stored = [k for k in g.files if k.startswith("buffer/")]   # BN statistics after the train-mode forward
    assert len(stored) == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in gm.modules())
    for kit_name, buf in gm.named_buffers():
        if "running" in kit_name:
            assert_close_scaled(buf, g[f"buffer/{kit_names[kit_name]}"], RTOL, ATOL_REL, msg=kit_name)


def biases_feeding_batchnorm(module: torch.nn.Module) -> dict:
    """{conv bias: the BatchNorm after it} within a Sequential: the bias has a zero gradient in exact arithmetic."""
    names = {m: n for n, m in module.named_modules()}
    out = {}
    for seq in module.modules():
        if isinstance(seq, torch.nn.Sequential):
            for a, b in zip(seq, list(seq)[1:]):
                if isinstance(b, torch.nn.BatchNorm2d) and getattr(a, "bias", None) is not None:
                    out[f"{names[a]}.bias"] = names[b]
    return out


def test_joint_epoch_equals_the_original_main_loop():
    """The kit's InstanceGM epoch path (DivideMix.co_divide_epoch with vae_extra_loss: one loss L_DM + L_VAE, one
    backward, the SGD and the Adam step) against instanceGM.py's main loop: eval_train of both networks, then
    `train` of net1 with vae_model1 on net2's division and of net2 with vae_model2 on net1's, from the same draws
    (DivideMix's, plus each iteration's VAE batch, Gumbel Exp(1) draws and uniform noise)."""
    g = load("joint_epoch")
    images, noisy = g["images"], torch.from_numpy(g["noisy"])
    c, epoch0, b = 10, int(g["epoch"]), int(g["batch_size"])
    nets = []
    for k in range(2):
        net = TinyNet(c)
        net.load_state_dict(arrays_to_state(g, f"net{k + 1}_before"))
        nets.append(net)
    names = [str(n) for n in g["vae_names"]]
    kit_names = generative_state_from_original({k: k for k in names})   # kit name -> original name
    modules, before = [], []
    for k in range(2):
        gm = GenerativeModule(3, images.shape[1], c, int(g["z_dim"]))
        gm.load_state_dict(generative_state_from_original(recipe_state(names, shapes_of(g, "vae"), 1000 + 5000 * k)))
        modules.append(gm)
        before.append({n: p.detach().clone() for n, p in gm.named_parameters()})
    cfg = run_config("instancegm", g, batch_size=b, eval_batch_size=int(g["eval_batch_size"]),
                     vae_batch_size=int(g["vae_batch_size"]))
    assert cfg.z_dim == int(g["z_dim"])
    train_b = DeviceBatcher(images, batch_size=b, shuffle=True, device="cpu")
    eval_b = DeviceBatcher(images, batch_size=cfg.eval_batch_size, shuffle=False, device="cpu")
    draws, made = stored_draws(g, images, extra=True)
    trainer = dm.DivideMix(nets, cfg, train_b, eval_b, noisy, c, seed=0,
                           extra=vae_extra_loss(modules, train_b, noisy, cfg), draws=draws)
    trainer.set_lr(epoch0)
    probs, stats = trainer.co_divide_epoch(epoch0)
    for k in range(2):
        np.testing.assert_allclose(probs[k], g[f"prob{k + 1}"], rtol=0, atol=1e-5)
        assert np.array_equal(probs[k] > 0.5, g[f"prob{k + 1}"] > 0.5)
    for k in range(2):   # per-iteration losses (the kit reports means): L_DM + L_VAE, and L_VAE's terms, among
        made[k].check_done()  # them the noisy-label CE against the given label of the VAE batch
        assert stats[k]["n_iter"] == int(g[f"k{k}/iters"])
        for key in ("loss", "vae", "recon", "noisy_ce", "prior", "kl"):
            assert float(stats[k][key]) == pytest.approx(float(np.mean(g[f"k{k}/{key}"])), rel=JOINT_RTOL), key
    for k in range(2):   # the classifiers after both epochs (the VAE loss's gradient reaches them through c)
        assert_state_close(nets[k], g, f"net{k + 1}_after", JOINT_RTOL, JOINT_ATOL_REL)
    lr = 1e-3
    for k in range(2):   # each VAE after its network's epoch: the Adam updates and the BN statistics
        zero_grad = biases_feeding_batchnorm(modules[k])
        assert zero_grad
        bias_bound = 4 * lr * int(g[f"k{k}/iters"])   # Adam moves an element by at most ~lr per step
        for kit_name, p in modules[k].named_parameters():
            name = kit_names[kit_name]
            delta = (p.detach() - before[k][kit_name]).reshape(-1)
            stored = g[f"vae{k + 1}_delta/{name}"]
            if delta.numel() != stored.size:
                delta = delta[torch.linspace(0, delta.numel() - 1, 256).round().long()]
            if kit_name in zero_grad:
                # Adam divides a round-off gradient by its own size: the update is machine noise; only Adam's
                # step bound is checked
                assert float(delta.abs().max()) <= bias_bound, kit_name
                continue
            stored = torch.from_numpy(stored).double()
            err = float((delta.double() - stored).norm() / stored.norm())
            assert err <= ADAM_L2_REL, f"vae{k + 1}/{kit_name}: |Δkit - Δorig| / |Δorig| = {err:.3g}"
        fed = {f"{bn}.running_mean" for bn in zero_grad.values()}
        for kit_name, buf in modules[k].named_buffers():
            if "running" in kit_name:
                expected = torch.from_numpy(g[f"vae{k + 1}_buffer/{kit_names[kit_name]}"])
                if kit_name in fed:   # the batch means include that bias's noise (running momentum 0.1)
                    assert float((buf - expected).abs().max()) <= JOINT_RTOL * float(expected.abs().max()) + \
                        bias_bound, kit_name
                    continue
                assert_close_scaled(buf, expected, JOINT_RTOL, JOINT_ATOL_REL, msg=f"vae{k + 1}/{kit_name}")


def test_animal10n_vae_maps_and_forwards_like_the_original():
    """VAE_ANIMAL (64x64, z_dim 64; its decoder's final layer has the extra 2x2 transposed-conv stage) mapped onto
    GenerativeModule(3, 64, 10, 64): the same outputs in eval mode for the same noise draws."""
    g = load("vae_animal_forward")
    names = [str(n) for n in g["vae_names"]]
    mapped = generative_state_from_original(recipe_state(names, shapes_of(g, "vae")))
    gm = GenerativeModule(3, 64, 10, int(g["z_dim"]))
    assert set(mapped) == set(gm.state_dict()) and all(mapped[k].shape == gm.state_dict()[k].shape for k in mapped)
    gm.load_state_dict(mapped)
    net = TinyNet(10)
    net.load_state_dict(arrays_to_state(g, "net"))
    gm.eval()
    net.eval()
    x = torch.rand((2, 3, 64, 64), generator=torch.Generator().manual_seed(int(g["x_seed"])))
    with torch.no_grad():
        out = gm(x, net(x), exponentials=torch.from_numpy(g["exponentials"]), eps=torch.from_numpy(g["uniforms"]))
    for key, ref in (("y", "y_hat"), ("mu", "mu"), ("logvar", "logvar"), ("n_logits", "n_logits")):
        assert_close_scaled(out[key], g[ref], RTOL, ATOL_REL, msg=key)
    flat = out["lam"].reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, 256).round().long()
    assert_close_scaled(flat[idx], g["x_hat_sample"], RTOL, ATOL_REL, msg="x_hat")
    assert_close_scaled(flat.sum(), g["x_hat_sum"], RTOL, 0, msg="x_hat sum")


def test_ptd_flip_probabilities_equal_the_original():
    """tools.py get_instance_noisy_label's rows p_i for given features, labels, flip rates q and projection W."""
    g = load("ptd_noise")
    images, labels = g["low/images"], g["low/labels"]
    x = images.reshape(len(images), -1).astype(np.float32)   # HWC flatten, as the original's x.view(1, -1)
    P = ptd_flip_probabilities(x, labels, g["low/q"], g["low/W"])
    assert_close_scaled(P, g["low/P"], 0, 1e-6, msg="P")   # probabilities: max|P| is 1
    assert 0.01 < P[np.arange(len(labels)), labels].std()   # dark images: the rows are not one-hot


@pytest.mark.parametrize("tag", ["low", "full"])
def test_ptd_noisy_labels_equal_the_original(tag):
    """The whole generator from seed 123: same flip rates, W, rows and per-sample draws, so the same labels."""
    g = load("ptd_noise")
    res = idn_ptd(g[f"{tag}/images"], g[f"{tag}/labels"], float(g[f"{tag}/rate"]), 10, seed=123)
    assert np.array_equal(res.noisy, g[f"{tag}/noisy"])
