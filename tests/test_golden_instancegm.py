"""InstanceGM against goldens of the original code (arpit2412/InstanceGM at 39cf8a4, tests/golden/instancegm/,
written by tests/golden/make_instancegm.py): the generative part of one step (Gumbel sample and uniform noise given,
encoder, double-sigmoid continuous-Bernoulli reconstruction, noisy-label classifier, label prior, KL) with its loss
terms and gradients, through the kit's state-dict mapping of the original VAE; and the part-dependent noise
generator's flip probabilities and labels. float32 tolerances as stated."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nlkit.methods.instancegm.generative import GenerativeModule, generative_state_from_original, vae_loss
from nlkit.noise import idn_ptd, ptd_flip_probabilities

GOLDEN = Path(__file__).resolve().parent / "golden"
sys.path.insert(0, str(GOLDEN))
from dividemix_recipes import TinyNet, arrays_to_state, recipe_state  # noqa: E402

RTOL = 1e-4   # float32; the CB log-density is computed by a different (equivalent) formula than torch's


def load(name):
    return np.load(GOLDEN / "instancegm" / f"{name}.npz", allow_pickle=False)


def shapes_of(g, prefix):
    flat, out, pos = g[f"{prefix}_shapes_flat"], [], 0
    for length in g[f"{prefix}_shape_lengths"]:
        out.append(tuple(int(s) for s in flat[pos:pos + length]))
        pos += length
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
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
        torch.testing.assert_close(parts[key], torch.from_numpy(g[ref]), rtol=RTOL, atol=1e-6, msg=key)
    loss.backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, torch.from_numpy(g[f"netgrad/{name}"]), rtol=RTOL, atol=1e-6, msg=name)
    kit_names = generative_state_from_original({k: k for k in original})   # kit name -> original name
    params = dict(gm.named_parameters())
    checked = 0
    for kit_name, p in params.items():
        name = kit_names[kit_name]
        flat = p.grad.reshape(-1)
        if f"grad/{name}" in g.files:
            torch.testing.assert_close(flat, torch.from_numpy(g[f"grad/{name}"]), rtol=RTOL, atol=1e-6, msg=name)
        else:
            idx = torch.linspace(0, flat.numel() - 1, 256).round().long()
            torch.testing.assert_close(flat[idx], torch.from_numpy(g[f"gradsample/{name}"]), rtol=RTOL, atol=1e-6,
                                       msg=name)
            torch.testing.assert_close(flat.abs().sum(), torch.from_numpy(g[f"gradabs/{name}"]), rtol=RTOL,
                                       atol=1e-6, msg=name)
        checked += 1
    assert checked == len(params)
    stored = [k for k in g.files if k.startswith("buffer/")]   # BN statistics after the train-mode forward
    assert len(stored) == 2 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in gm.modules())
    for kit_name, buf in gm.named_buffers():
        if "running" in kit_name:
            torch.testing.assert_close(buf, torch.from_numpy(g[f"buffer/{kit_names[kit_name]}"]), rtol=RTOL,
                                       atol=1e-6, msg=kit_name)


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
        torch.testing.assert_close(out[key], torch.from_numpy(g[ref]), rtol=RTOL, atol=1e-6, msg=key)
    flat = out["lam"].reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, 256).round().long()
    torch.testing.assert_close(flat[idx], torch.from_numpy(g["x_hat_sample"]), rtol=RTOL, atol=1e-6)
    torch.testing.assert_close(flat.sum(), torch.from_numpy(g["x_hat_sum"]), rtol=RTOL, atol=1e-4)


def test_ptd_flip_probabilities_equal_the_original():
    """tools.py get_instance_noisy_label's rows p_i for given features, labels, flip rates q and projection W."""
    g = load("ptd_noise")
    images, labels = g["low/images"], g["low/labels"]
    x = images.reshape(len(images), -1).astype(np.float32)   # HWC flatten, as the original's x.view(1, -1)
    P = ptd_flip_probabilities(x, labels, g["low/q"], g["low/W"])
    np.testing.assert_allclose(P, g["low/P"], rtol=0, atol=1e-6)
    assert 0.01 < P[np.arange(len(labels)), labels].std()   # dark images: the rows are not one-hot


@pytest.mark.parametrize("tag", ["low", "full"])
def test_ptd_noisy_labels_equal_the_original(tag):
    """The whole generator from seed 123: same flip rates, W, rows and per-sample draws, so the same labels."""
    g = load("ptd_noise")
    res = idn_ptd(g[f"{tag}/images"], g[f"{tag}/labels"], float(g[f"{tag}/rate"]), 10, seed=123)
    assert np.array_equal(res.noisy, g[f"{tag}/noisy"])
