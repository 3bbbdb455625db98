"""Differential tests against the original TDSM and EDM code (goldens written by tests/golden/make_tdsm.py; what
each file holds and the tolerances: tests/golden/tdsm/README.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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
# Every comparison scales with the compared tensor (|kit - orig| <= rtol |orig| + atol_rel max |orig|), so that a
# quantity near zero is held to the precision its tensor's magnitude allows, never to a fixed absolute number.
RTOL, ATOL_REL = 1e-5, 1e-6            # float32 networks and losses
RTOL64, ATOL_REL64 = 1e-12, 1e-12      # the float64 sampler with the float64 analytic denoiser; scalar schedules
# Gradients are sums of many float32 terms that partly cancel; the summation order differs (and the kit's weights
# are computed in float64): 1e-6 of the tensor's largest entry for the toy denoiser, 1e-5 through the UNet (float32
# backward through GroupNorm and attention, with the original's own attention backward and convolution-based
# resampling; observed up to 3e-6).
GRAD_ATOL_REL = {"toy": 1e-6, "unet": 1e-5}
# The loop's parameter changes after two Adam steps: Adam divides each gradient entry by its own magnitude, so an
# entry much smaller than its tensor's largest carries that tensor's float32 rounding (relative to the largest)
# into a step of full size lr. 1e-3 of the tensor's largest change; observed up to 6.4e-5.
LOOP_ATOL_REL = 1e-3
# The loop's classifier logits and TDSM weights: float32 through the classifier's 512-wide embedding with other
# kernels, and the original's weights in float32 through R^-1 against the kit's float64; observed up to 5.6e-7.
LOOP_WEIGHTS_ATOL_REL = 1e-5

_spec = importlib.util.spec_from_file_location("tdsm_toys", GOLDEN.parent / "tdsm_toys.py")
toys = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toys)


def load(name: str) -> dict:
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def t(a, dtype=None):
    out = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.array(a))
    return out if dtype is None else out.to(dtype)


def close(actual, expected, rtol=RTOL, atol_rel=ATOL_REL):
    """|actual - expected| <= rtol |expected| + atol_rel max |expected|, elementwise."""
    actual = torch.as_tensor(actual).detach()
    expected = t(expected).to(actual.dtype)
    atol = atol_rel * float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


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
    close(torch.stack([s for _, s in calls]), g["call_sigma"], RTOL64, ATOL_REL64)
    close(torch.stack([x for x, _ in calls]), g["call_x"], RTOL64, ATOL_REL64)
    close(out, g["out_det"], RTOL64, ATOL_REL64)


def test_heun_sampler_with_churn_matches_original():
    g = load("sampler")
    den = toys.MixtureDenoiser(g["means"], float(g["variance"]))
    draws = list(t(g["step_noise"]))
    churn = {k: float(g[f"churn_{k}"]) for k in ("S_churn", "S_min", "S_max", "S_noise")}
    out = heun_sample(den, t(g["latents"]), t(g["labels"]), randn_like=lambda x: draws.pop(0), **churn)
    assert not draws
    close(out, g["out_churn"], RTOL64, ATOL_REL64)


def test_heun_sampler_with_affine_score_matches_original():
    g = load("sampler")
    den = toys.MixtureDenoiser(g["means"], float(g["variance"]))
    other = toys.MixtureDenoiser(g["other_means"], float(g["other_variance"]))
    out = heun_sample(affine_denoiser(den, other, float(g["affine_weight"])), t(g["latents"]), t(g["labels"]))
    close(out, g["out_affine"], RTOL64, ATOL_REL64)


def test_heun_sampler_with_songunet_matches_original():
    g = load("sampler")
    net = kit_unet(load("songunet")).eval()
    out = heun_sample(net, t(g["latents_unet"]), t(g["labels_unet"]))
    close(out, g["out_unet"])


@pytest.mark.parametrize("arch", ["cnn_mnist", "resnet18_cond"])
def test_noise_conditioned_classifier_matches_original(arch):
    g = load(f"classifier_{arch}")
    original = recipe_state(g["names"], g["shapes"])
    x = t(g["x"])
    net = build_classifier(arch, num_classes=int(g["num_classes"]), in_channels=x.shape[1], img_resolution=x.shape[2],
                           augment_dim=9)
    net.load_state_dict(classifier_state_dict_to_kit(original, arch), strict=True)
    net.eval()
    with torch.no_grad():
        for aug, key in ((t(g["augment_labels"]), "logits_aug"), (None, "logits_noaug")):
            logits = net(x, t(g["sigma"]), aug)
            close(logits, g[key])


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
        close(p.grad, expected, RTOL, GRAD_ATOL_REL["unet" if name.startswith("unet") else "toy"])


# ---------------------------------------------------------------------------------------------- the training loop

def recipe_state(names, shapes) -> dict:
    """Original-name -> tensor for weights given as a recipe (names and shapes stored, values from recipe_tensor)."""
    out = {}
    for name, shape in zip(names, shapes):
        shape = tuple(int(d) for d in str(shape).split(",") if d)
        out[str(name)] = (torch.zeros(shape, dtype=torch.long) if name.endswith("num_batches_tracked")
                          else torch.from_numpy(toys.recipe_tensor(str(name), shape)))
    return out


class _Recording(torch.nn.Module):
    """The frozen classifier as the loop holds it, recording where it is queried."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, sigma, augment_labels=None):
        out = self.net(x, sigma, augment_labels)
        self.calls.append((x.detach().clone(), torch.as_tensor(sigma).detach().clone().flatten(), augment_labels,
                           out.detach().clone()))
        return out


@pytest.fixture(scope="module")
def loop_run():
    """`train_diffusion` (method tdsm) as a run calls it, for the golden's three steps. Only what the original loop
    was given is injected: the initial weights (built by the kit from the config, then loaded), the data in stored
    order (the original's sampler was replaced likewise) and the stored sigma / noise draws; spies record the
    weights, losses, learning rates and EMA betas the loop computes."""
    from nlkit.methods.tdsm import method_transition
    from nlkit.methods.tdsm import train as loop

    g = load("tdsm_loop")
    cfg_ = {k[4:]: g[k] for k in g if k.startswith("cfg_")}
    k, b, steps = int(cfg_["label_dim"]), int(cfg_["batch"]), int(cfg_["steps"])
    cfg = loop.TDSMConfig(
        arch="ddpmpp", model_channels=int(cfg_["model_channels"]), channel_mult=[int(c) for c in cfg_["channel_mult"]],
        num_blocks=int(cfg_["num_blocks"]), attn_resolutions=[int(r) for r in cfg_["attn_resolutions"]],
        dropout=float(cfg_["dropout"]), batch_size=b, lr=float(cfg_["lr"]), warmup_kimg=float(cfg_["lr_rampup_kimg"]),
        duration_kimg=b * steps / 1000, kimg_per_tick=b / 1000, ema_halflife_kimg=float(cfg_["ema_halflife_kimg"]),
        ema_rampup=float(cfg_["ema_rampup"]), augment_p=0.0, temp=float(cfg_["temp"]), tau=float(cfg_["tau"]),
        method="tdsm")
    # S as `prepare` builds it for the cell's noise (asym MNIST map of the original, r 0.4; transition "true")
    S_noise = build_transition("asym", float(cfg_["rate"]), k, "asym_mnist_tdsm")
    S, _ = method_transition({"transition": {"kind": "true"}}, S_noise, k)

    cls_orig = recipe_state(g["cls_names"], g["cls_shapes"])
    cls_orig["model.classifier.linear.weight"] *= float(cfg_["classifier_logit_gain"])
    classifier = build_classifier("cnn_mnist", num_classes=k, in_channels=1, img_resolution=32, augment_dim=9)
    classifier.load_state_dict(classifier_state_dict_to_kit(cls_orig, "cnn_mnist"), strict=True)
    classifier = _Recording(classifier)
    unet_orig = recipe_state(g["unet_names"], g["unet_shapes"])
    built, draws, rec = [], list(zip(t(g["normal"]), t(g["noise"]))), {"weights": [], "loss": [], "extra": [],
                                                                     "beta": [], "lr": [], "nimg": []}

    def build_with_golden_weights(*args, **kw):
        unet = real["build_unet"](*args, **kw)
        unet.load_state_dict(songunet_state_dict_to_kit(unet_orig), strict=True)
        built.append(unet)
        return unet

    def stored_draws(x0, generator):
        normal, noise = draws.pop(0)
        return sample_sigma(x0.shape[0], normal=normal), noise

    def spy_loss(*args, **kw):
        rec["weights"].append(args[3].detach().clone())
        per_sample, extra = real["tdsm_loss"](*args, **kw)
        rec["loss"].append(per_sample.detach().clone())
        rec["extra"].append(int(extra))
        return per_sample, extra

    def spy_beta(batch, nimg, *args):
        rec["beta"].append(real["ema_beta"](batch, nimg, *args))
        return rec["beta"][-1]

    def spy_lr(base, nimg, warmup):
        rec["lr"].append(real["learning_rate"](base, nimg, warmup))
        rec["nimg"].append(nimg)
        return rec["lr"][-1]

    real = {name: getattr(loop, name) for name in ("build_unet", "tdsm_loss", "ema_beta", "learning_rate",
                                                     "image_batcher")}
    images = np.ascontiguousarray(g["images"].transpose(0, 2, 3, 1))           # (N, H, W, C) uint8, as `prepare`
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "build_unet", build_with_golden_weights)
        mp.setattr(loop, "draw_step_noise", stored_draws)
        mp.setattr(loop, "image_batcher", lambda imgs, batch, dev, seed, shuffle=True:
                   real["image_batcher"](imgs, batch, dev, seed, shuffle=False))
        mp.setattr(loop, "tdsm_loss", spy_loss)
        mp.setattr(loop, "ema_beta", spy_beta)
        mp.setattr(loop, "learning_rate", spy_lr)
        run = loop.train_diffusion(images, g["noisy"], S, cfg, 0, method="tdsm", classifier=classifier,
                                   device="cpu", progress=False)
    assert not draws and len(built) == 1 and run.completed
    init = songunet_state_dict_to_kit(unet_orig)
    return g, rec, classifier.calls, run, init


def test_training_loop_classifier_queries_match_original(loop_run):
    """The classifier is queried at x0 + sigma n (not x0), with the step's sigma and no augment labels, and returns
    the original's logits (the temperature is applied after, in the weights)."""
    g, _, calls, _, _ = loop_run
    assert len(calls) == len(g["cls_x"])
    for (x, sigma, aug, logits), gx, gs, gl in zip(calls, g["cls_x"], g["cls_sigma"], g["cls_logits"]):
        assert aug is None
        close(x, gx)
        close(sigma, gs)
        close(logits, gl, RTOL, LOOP_WEIGHTS_ATOL_REL)


def test_training_loop_weights_and_losses_match_original(loop_run):
    g, rec, _, _, _ = loop_run
    assert len(rec["weights"]) == len(g["weights"])
    for step, (w, loss) in enumerate(zip(rec["weights"], rec["loss"])):
        close(w, g["weights"][step], RTOL, LOOP_WEIGHTS_ATOL_REL)
        close(loss, g["loss_per_sample"][step])
        # the tau skip: one extra pass per (sample, non-observed class) with weight above tau
        observed = F.one_hot(t(g["noisy"][step * len(w):(step + 1) * len(w)]), w.shape[1]).bool()
        assert rec["extra"][step] == int(((t(g["weights"][step]) > float(g["cfg_tau"])) & ~observed).sum())
    assert sum(rec["extra"]) > 0


def test_training_loop_schedules_match_original(loop_run):
    """Learning rate and EMA beta of each step, both from the image count before the step (EDM's training_loop)."""
    g, rec, _, _, _ = loop_run
    close(np.array(rec["lr"]), g["lr"], RTOL64, ATOL_REL64)
    close(np.array(rec["beta"]), g["ema_beta"], RTOL64, ATOL_REL64)


def test_training_loop_parameters_and_ema_match_original(loop_run):
    """The parameters and the EMA after the last step, compared as changes from the initial weights (each tensor
    to its own magnitude: Adam's steps are about lr whatever the gradient's scale)."""
    g, _, _, run, init = loop_run
    to_original = songunet_state_dict_to_kit({k[4:]: k[4:] for k in g if k.startswith("net/")})
    for prefix, model in (("net", run.net), ("ema", run.ema)):
        params = dict(model.model.named_parameters())
        assert set(params) == set(to_original)
        for name, p in params.items():
            change, expected = p.detach() - init[name], t(g[f"{prefix}/{to_original[name]}"])
            if name.endswith("qkv.bias"):
                # the key bias adds the same q.b to every key of a query, which the softmax cancels: its gradient is
                # zero in exact arithmetic, rounding noise on both sides that Adam scales to steps of size lr.
                # Channels are interleaved (q, k, v) per head channel: compare q and v only.
                keep = torch.arange(len(change)) % 3 != 1
                change, expected = change[keep], expected[keep]
            close(change, expected, RTOL, LOOP_ATOL_REL)
