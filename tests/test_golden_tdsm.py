"""Differential tests against the original TDSM and EDM code (goldens written by tests/golden/make_tdsm.py; what
each file holds and the tolerances: tests/golden/tdsm/README.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from nlkit.diffusion import (
    EDMPrecond,
    build_classifier,
    build_unet,
    edm_loss,
    heun_sample,
    precond_coefficients,
    sample_sigma,
)
from nlkit.diffusion.original_layout import classifier_state_dict_to_kit, songunet_state_dict_to_kit
from nlkit.errors import UserError
from nlkit.methods.tdsm.objective import forward_corrected_ce, tdsm_loss, volmin_loss
from nlkit.methods.tdsm.train import affine_denoiser
from nlkit.methods.tdsm.weights import build_transition, tdsm_weights, volmin_transition

GOLDEN = Path(__file__).parent / "golden" / "tdsm"
RTOL, ATOL = 1e-5, 1e-6          # float32 networks and losses
RTOL64, ATOL64 = 1e-12, 1e-12    # the float64 sampler with the float64 analytic denoiser
# Gradients are sums of many float32 terms that partly cancel; the summation order differs (and the kit's weights
# are computed in float64), so their absolute tolerance is relative to the largest entry of the tensor: 1e-6 for
# the toy denoiser, 1e-5 through the UNet (float32 backward through GroupNorm and attention, with the original's
# own attention backward and convolution-based resampling; observed up to 3e-6).
GRAD_ATOL_REL = {"toy": 1e-6, "unet": 1e-5}

_spec = importlib.util.spec_from_file_location("tdsm_toys", GOLDEN.parent / "tdsm_toys.py")
toys = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toys)


def load(name: str) -> dict:
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def t(a, dtype=None):
    out = torch.from_numpy(np.array(a))
    return out if dtype is None else out.to(dtype)


def close(actual, expected, rtol=RTOL, atol=ATOL):
    torch.testing.assert_close(torch.as_tensor(actual).detach(), t(expected).to(torch.as_tensor(actual).dtype),
                               rtol=rtol, atol=atol)


def kit_unet(g: dict, state: dict | None = None) -> EDMPrecond:
    """The kit's SongUNet with the golden's settings, wrapped in the kit's EDMPrecond, carrying the original's
    weights (`sd/<original name>` arrays) mapped to the kit's layout."""
    unet = build_unet("ddpmpp_tiny", img_resolution=int(g["cfg_img_resolution"]),
                      in_channels=int(g["cfg_img_channels"]), label_dim=int(g["cfg_label_dim"]),
                      augment_dim=int(g["cfg_augment_dim"]), dropout=float(g["cfg_dropout"]),
                      model_channels=int(g["cfg_model_channels"]), channel_mult=list(g["cfg_channel_mult"]),
                      num_blocks=int(g["cfg_num_blocks"]), attn_resolutions=list(g["cfg_attn_resolutions"]))
    state = load("songunet") if state is None else state
    original = {k[3:]: t(v) for k, v in state.items() if k.startswith("sd/")}
    unet.load_state_dict(songunet_state_dict_to_kit(original), strict=True)
    return EDMPrecond(unet)


# ---------------------------------------------------------------------------------------------- networks

def test_songunet_forward_matches_original():
    g = load("songunet")
    net = kit_unet(g).eval()
    x, c_noise, labels, aug = t(g["x"]), t(g["noise_labels"]), t(g["labels"]), t(g["augment_labels"])
    with torch.no_grad():
        close(net.model(x, c_noise, labels, aug), g["F_aug"])
        close(net.model(x, c_noise, labels, None), g["F_noaug"])
        close(net(x, t(g["sigma"]), labels, aug), g["D_aug"])
        close(net(x, t(g["sigma"]), labels), g["D_noaug"])


def test_state_dict_mapping_covers_every_tensor_and_refuses_ncsnpp():
    g = load("songunet")
    original = {k[3:]: t(v) for k, v in g.items() if k.startswith("sd/")}
    mapped = songunet_state_dict_to_kit({f"model.{k}": v for k, v in original.items()})
    assert all(k.startswith("model.") for k in mapped)
    assert "model.out_conv.weight" in mapped and not any("resample_filter" in k for k in mapped)
    with pytest.raises(UserError, match="DDPM\\+\\+"):
        songunet_state_dict_to_kit({"map_noise.freqs": torch.zeros(4)})


def test_precond_coefficients_match_original():
    g = load("precond")
    c_skip, c_out, c_in, c_noise = precond_coefficients(t(g["sigma"]))
    for name, value in (("c_skip", c_skip), ("c_out", c_out), ("c_in", c_in), ("c_noise", c_noise)):
        close(value, g[name])


def test_edm_loss_matches_original():
    g = load("edm_loss")
    net = kit_unet(load("songunet")).train()
    n = len(g["normal"])
    sigma = sample_sigma(n, normal=t(g["normal"]))
    loss = edm_loss(net, t(g["images"]), t(g["labels"]), sigma=sigma, noise=t(g["noise"]))
    close(loss, g["loss_per_sample"])


def test_heun_sampler_matches_original_deterministic_with_trajectory():
    g = load("sampler")
    den = toys.MixtureDenoiser(g["means"], float(g["variance"]))
    calls = []

    def recording(x, sigma, labels):
        calls.append((x.clone(), torch.as_tensor(sigma, dtype=torch.float64)))
        return den(x, sigma, labels)

    out = heun_sample(recording, t(g["latents"]), t(g["labels"]))
    assert len(calls) == len(g["call_sigma"]) == 35
    close(torch.stack([s for _, s in calls]), g["call_sigma"], RTOL64, ATOL64)
    close(torch.stack([x for x, _ in calls]), g["call_x"], RTOL64, ATOL64)
    close(out, g["out_det"], RTOL64, ATOL64)


def test_heun_sampler_with_churn_matches_original():
    g = load("sampler")
    den = toys.MixtureDenoiser(g["means"], float(g["variance"]))
    draws = list(t(g["step_noise"]))
    churn = {k: float(g[f"churn_{k}"]) for k in ("S_churn", "S_min", "S_max", "S_noise")}
    out = heun_sample(den, t(g["latents"]), t(g["labels"]), randn_like=lambda x: draws.pop(0), **churn)
    assert not draws
    close(out, g["out_churn"], RTOL64, ATOL64)


def test_heun_sampler_with_affine_score_matches_original():
    g = load("sampler")
    den = toys.MixtureDenoiser(g["means"], float(g["variance"]))
    other = toys.MixtureDenoiser(g["other_means"], float(g["other_variance"]))
    out = heun_sample(affine_denoiser(den, other, float(g["affine_weight"])), t(g["latents"]), t(g["labels"]))
    close(out, g["out_affine"], RTOL64, ATOL64)


def test_heun_sampler_with_songunet_matches_original():
    g = load("sampler")
    net = kit_unet(load("songunet")).eval()
    out = heun_sample(net, t(g["latents_unet"]), t(g["labels_unet"]))
    close(out, g["out_unet"])


@pytest.mark.parametrize("arch", ["cnn_mnist", "resnet18_cond"])
def test_noise_conditioned_classifier_matches_original(arch):
    g = load(f"classifier_{arch}")
    original = {}
    for name, shape in zip(g["names"], g["shapes"]):
        shape = tuple(int(d) for d in str(shape).split(",") if d)
        original[str(name)] = (torch.zeros(shape, dtype=torch.long) if name.endswith("num_batches_tracked")
                               else torch.from_numpy(toys.recipe_tensor(str(name), shape)))
    x = t(g["x"])
    net = build_classifier(arch, num_classes=int(g["num_classes"]), in_channels=x.shape[1], img_resolution=x.shape[2],
                           augment_dim=9)
    net.load_state_dict(classifier_state_dict_to_kit(original, arch), strict=True)
    net.eval()
    with torch.no_grad():
        for aug, key in ((t(g["augment_labels"]), "logits_aug"), (None, "logits_noaug")):
            logits = net(x, t(g["sigma"]), aug)
            close(logits, g[key], RTOL, ATOL * max(float(np.abs(g[key]).max()), 1.0))


@pytest.mark.parametrize("name,kind,asym_map", [("sym", "sym", None), ("asym_c10", "asym", "asym_c10"),
                                                ("asym_mnist", "asym", "asym_mnist_tdsm")])
def test_forward_corrected_classifier_loss_matches_original(name, kind, asym_map):
    g = load("classifier_losses")
    S = torch.as_tensor(build_transition(kind, float(g["noise_rate"]), 10, asym_map), dtype=torch.float32)
    close(forward_corrected_ce(t(g["logits"]), t(g["noisy"]), S), g[f"ce_{name}"])


def test_volmin_transition_loss_and_gradient_match_original():
    g = load("classifier_losses")
    A = t(g["volmin_A"]).requires_grad_(True)
    T = volmin_transition(A)
    close(T, g["volmin_T"])
    loss = volmin_loss(t(g["logits"]), t(g["noisy"]), T, 1e-4)
    close(loss, g["volmin_loss"])
    loss.sum().backward()
    close(A.grad, g["volmin_grad_A"])


# ---------------------------------------------------------------------------------------------- TDSM loss

def _transition(name: str, g: dict) -> np.ndarray:
    """The kit's own S for the named settings (checked against the one the original hard-codes)."""
    rate = float(g["noise_rate"])
    if name.startswith("learn"):
        return g["S"]
    S = build_transition("asym", rate, 10, "asym_mnist_tdsm") if "asym" in name else build_transition("sym", rate, 10)
    np.testing.assert_allclose(S, g["S"], rtol=0, atol=1e-15)
    return S


@pytest.mark.parametrize("form", ["rinv", "closed"])
@pytest.mark.parametrize("name", ["learn_k3", "sym_k10", "asym_mnist", "unet_sym_k10"])
def test_tdsm_loss_and_gradient_match_original(name, form):
    g = load(f"tdsm_{name}")
    S = torch.as_tensor(_transition(name, g), dtype=torch.float64)
    k = S.shape[0]
    if name.startswith("unet"):
        net = kit_unet(g, load("songunet")).train()
        params = dict(net.model.named_parameters())
        to_original = songunet_state_dict_to_kit({k[5:]: k[5:] for k in g if k.startswith("grad/")})
    else:
        net = toys.ToyDenoiser(k, g["images"].shape[1]).load_arrays({k[6:]: v for k, v in g.items()
                                                                     if k.startswith("param/")}).train()
        params = dict(net.named_parameters())
        to_original = {key: key for key in params}
    noisy = t(g["noisy"])
    # as the training loop does: q = softmax(logits / T) (float64), weights from S, then the loss
    q = torch.softmax(t(g["logits"]).double() / float(g["temp"]), 1)
    w = tdsm_weights(q, noisy, S, form).float()
    sigma = sample_sigma(len(noisy), normal=t(g["normal"]))
    loss, extra = tdsm_loss(net, t(g["images"]), noisy, w, k, sigma=sigma, noise=t(g["noise"]),
                            augment_labels=t(g["augment_labels"]), tau=float(g["tau"]))
    close(loss, g["loss_per_sample"])
    assert int(extra) == int(g["extra_passes"]) > 0
    loss.sum().backward()
    assert set(to_original.values()) == {k[5:] for k in g if k.startswith("grad/")}
    for kit_name, p in params.items():
        expected = g[f"grad/{to_original[kit_name]}"]
        close(p.grad, expected, RTOL, GRAD_ATOL_REL["unet" if name.startswith("unet") else "toy"] * max(float(np.abs(expected).max()), 1.0))
