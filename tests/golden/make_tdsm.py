"""Write the TDSM/EDM golden files (tests/golden/tdsm/*.npz) from the original code.

    python tests/golden/make_tdsm.py ORIGINAL_TDSM_CHECKOUT [--edm EDM_CHECKOUT]

ORIGINAL_TDSM_CHECKOUT is a checkout of byeonghu-na/tdsm (the TDSM loss `training/loss.py:EDMNoiseLoss`),
EDM_CHECKOUT one of NVlabs/edm (`training/networks.py:SongUNet, EDMPrecond`, `training/loss.py:EDMLoss`,
`generate.py:edm_sampler`); without --edm those come from the TDSM checkout, which carries the same code.
Each checkout's root is put on sys.path in turn (both name their packages `training`, `dnnlib`, `torch_utils`).
Everything runs on the CPU in float32 (float64 where the sampler uses it), with fixed seeds. Random draws of the
original code (sigma's normal sample, the noise) are replaced by given arrays, which are stored with the outputs.
No stub modules are needed with the packages of environment.yml; for the training loop (`training_noise_loop`),
what needs CUDA, several processes or files is replaced in that module's namespace only. `--only loop` writes
tdsm_loop.npz alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "tdsm"
sys.path.insert(0, str(HERE))
from tdsm_toys import MixtureDenoiser, ToyDenoiser, recipe_tensor  # noqa: E402

# The small DDPM++ SongUNet of the goldens (EDM's ddpmpp settings at a reduced width).
UNET = dict(img_resolution=8, img_channels=3, label_dim=10, augment_dim=9, model_channels=8, channel_mult=[1, 2],
            num_blocks=1, attn_resolutions=[8], dropout=0.0)
TAU = 0.01
SHARED_PACKAGES = ("training", "dnnlib", "torch_utils", "generate")


def _forget_shared_packages() -> None:
    for key in [k for k in sys.modules if k.split(".")[0] in SHARED_PACKAGES]:
        del sys.modules[key]


def import_from(checkout: Path, names: list[str]) -> tuple[dict, dict]:
    """Import `names` (modules) from one checkout; returns them and the checkout's entries of sys.modules, to be
    re-activated with `active` (both checkouts name their packages alike)."""
    _forget_shared_packages()
    sys.path.insert(0, str(checkout))
    try:
        modules = {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(str(checkout))
    return modules, {k: m for k, m in sys.modules.items() if k.split(".")[0] in SHARED_PACKAGES}


@contextlib.contextmanager
def active(snapshot: dict):
    """Make one checkout's packages the imported ones (its persistence module checks, when a network is
    constructed, that its classes are the ones importable under their names)."""
    _forget_shared_packages()
    sys.modules.update(snapshot)
    try:
        yield
    finally:
        _forget_shared_packages()


@contextlib.contextmanager
def given_draws(randn: list, randn_like: list):
    """Make torch.randn / torch.randn_like return the given tensors, in order (shapes checked)."""
    real_randn, real_randn_like = torch.randn, torch.randn_like
    randn, randn_like = list(randn), list(randn_like)

    def fake_randn(*size, **kw):
        out = randn.pop(0)
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (list, tuple)) else tuple(size)
        assert tuple(out.shape) == shape, (out.shape, shape)
        return out.clone()

    def fake_randn_like(x, **kw):
        out = randn_like.pop(0)
        assert out.shape == x.shape, (out.shape, x.shape)
        return out.clone().to(x.dtype)

    torch.randn, torch.randn_like = fake_randn, fake_randn_like
    try:
        yield
    finally:
        torch.randn, torch.randn_like = real_randn, real_randn_like
    assert not randn and not randn_like, "not every given draw was used"


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Seeded re-draw of every parameter at a scale where every path matters (the original's init leaves the last
    conv of each block at 1e-5 and GroupNorm at the identity, which would hide mistakes in those layers)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            z = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * z)
            elif p.ndim == 1:
                p.copy_(0.1 * z)
            else:
                p.copy_(z / np.sqrt(p[0].numel()))


def save(name: str, **arrays) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    clean = {}
    for k, v in arrays.items():
        v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
        assert v.dtype != object, k
        clean[k] = v
    np.savez_compressed(OUT / f"{name}.npz", **clean)
    print(f"{name}.npz: {len(clean)} arrays, {(OUT / f'{name}.npz').stat().st_size / 1024:.1f} KiB")


# ---------------------------------------------------------------------------------------------- networks

def build_unet(nets):
    torch.manual_seed(0)
    net = nets.EDMPrecond(img_resolution=UNET["img_resolution"], img_channels=UNET["img_channels"],
                          label_dim=UNET["label_dim"], model_type="SongUNet",
                          **{k: v for k, v in UNET.items() if k not in ("img_resolution", "img_channels", "label_dim")})
    randomize(net, 1)
    return net


def unet_config() -> dict:
    return {f"cfg_{k}": np.asarray(v) for k, v in UNET.items()}


def make_songunet(nets, net) -> None:
    """SongUNet forward (eval) for given x, c_noise, labels, augment labels; EDMPrecond's D on top of it."""
    g = torch.Generator().manual_seed(2)
    b, c, r, k = 5, UNET["img_channels"], UNET["img_resolution"], UNET["label_dim"]
    x = torch.randn(b, c, r, r, generator=g)
    sigma = torch.tensor([0.002, 0.08, 0.7, 5.0, 80.0])
    noise_labels = sigma.log() / 4
    labels = torch.nn.functional.one_hot(torch.tensor([0, 3, 7, 9, 3]), k).float()
    aug = torch.randn(b, UNET["augment_dim"], generator=g) * (torch.rand(b, 1, generator=g) < 0.6)
    net.eval()
    with torch.no_grad():
        f_aug = net.model(x, noise_labels, labels, augment_labels=aug)
        f_noaug = net.model(x, noise_labels, labels)
        d_aug = net(x, sigma, labels, augment_labels=aug)
        d_noaug = net(x, sigma, labels)
    state = {f"sd/{key}": v for key, v in net.model.state_dict().items()}
    save("songunet", x=x, sigma=sigma, noise_labels=noise_labels, labels=labels, augment_labels=aug,
         F_aug=f_aug, F_noaug=f_noaug, D_aug=d_aug, D_noaug=d_noaug, **unet_config(), **state)


class _Probe(torch.nn.Module):
    """Stands in for EDMPrecond's inner network: records c_in x and c_noise and returns a constant F."""

    def __init__(self, value: float):
        super().__init__()
        self.value, self.seen = value, {}

    def forward(self, x, noise_labels, class_labels=None, **kw):
        self.seen = {"x": x.clone(), "c_noise": noise_labels.clone()}
        return torch.full_like(x, self.value)


def make_precond(nets) -> None:
    """c_skip, c_out, c_in, c_noise of the original EDMPrecond, read through a probe network at x = 1."""
    net = nets.EDMPrecond(img_resolution=8, img_channels=1, label_dim=0, model_type="SongUNet", model_channels=8,
                          channel_mult=[1], num_blocks=1, attn_resolutions=[])
    sigma = torch.tensor([0.002, 0.01, 0.1, 0.3, 0.5, 1.0, 2.0, 10.0, 80.0])
    x = torch.ones(len(sigma), 1, 1, 1)
    out = {}
    for value in (0.0, 1.0):
        net.model = _Probe(value)
        out[value] = net(x, sigma)
    c_skip = out[0.0]
    save("precond", sigma=sigma, c_skip=c_skip.flatten(), c_out=(out[1.0] - out[0.0]).flatten(),
         c_in=net.model.seen["x"].flatten(), c_noise=net.model.seen["c_noise"].flatten())


def make_edm_loss(losses, net) -> None:
    """EDMLoss (per pixel, summed per sample here) for given normal draws, noise, labels, augment_pipe = None."""
    g = torch.Generator().manual_seed(3)
    b, c, r, k = 6, UNET["img_channels"], UNET["img_resolution"], UNET["label_dim"]
    images = torch.rand(b, c, r, r, generator=g) * 2 - 1
    labels = torch.nn.functional.one_hot(torch.tensor([1, 0, 9, 4, 4, 2]), k).float()
    normal = torch.tensor([-2.5, -1.0, 0.0, 0.7, 1.5, 3.0]).reshape(b, 1, 1, 1)
    noise = torch.randn(b, c, r, r, generator=g)
    net.train()
    with given_draws([normal], [noise]):
        loss = losses.EDMLoss()(net, images, labels)
    save("edm_loss", images=images, labels=labels, normal=normal.flatten(), noise=noise,
         loss_per_sample=loss.flatten(1).sum(1), loss_per_pixel=loss.detach())


def make_sampler(gen, tdsm_generate, net) -> None:
    """edm_sampler (18 steps): the analytic mixture denoiser deterministic (S_churn = 0, with every denoiser call's
    input recorded) and with churn and given per-step noise; TDSM's affine score (its generate.py's edm_sampler with
    net2 and affine_weight); the SongUNet deterministic."""
    g = torch.Generator().manual_seed(4)
    k, c, r = 3, 1, 8
    means = torch.randn(k, 2, c, r, r, generator=g, dtype=torch.float64) * 0.6
    mixture = MixtureDenoiser(means.numpy(), 0.05)
    calls = []

    class Recording(torch.nn.Module):
        sigma_min, sigma_max = mixture.sigma_min, mixture.sigma_max
        round_sigma = staticmethod(mixture.round_sigma)

        def forward(self, x, sigma, class_labels=None, **kw):
            calls.append((x.clone(), torch.as_tensor(sigma, dtype=torch.float64).clone()))
            return mixture(x, sigma, class_labels)

    b = 4
    latents = torch.randn(b, c, r, r, generator=g)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 1]), k).float()
    out_det = gen.edm_sampler(Recording(), latents, labels)
    churn = dict(S_churn=40.0, S_min=0.05, S_max=50.0, S_noise=1.003)
    step_noise = torch.randn(18, b, c, r, r, generator=g, dtype=torch.float64)
    draws = list(step_noise)
    out_churn = gen.edm_sampler(mixture, latents, labels, randn_like=lambda x: draws.pop(0).clone(), **churn)
    assert not draws

    other = MixtureDenoiser((means * 0.5 + 0.1).numpy(), 0.08)
    out_affine = tdsm_generate.edm_sampler(mixture, latents, labels, net2=other, affine_weight=0.7)

    bu = 2
    latents_unet = torch.randn(bu, UNET["img_channels"], UNET["img_resolution"], UNET["img_resolution"], generator=g)
    labels_unet = torch.nn.functional.one_hot(torch.tensor([5, 8]), UNET["label_dim"]).float()
    net.eval()
    with torch.no_grad():
        out_unet = gen.edm_sampler(net, latents_unet, labels_unet)
    save("sampler", means=means, variance=np.float64(0.05), latents=latents, labels=labels,
         call_x=torch.stack([x for x, _ in calls]), call_sigma=torch.stack([s for _, s in calls]),
         out_det=out_det, step_noise=step_noise, out_churn=out_churn, other_means=other.means,
         other_variance=np.float64(other.variance), affine_weight=np.float64(0.7), out_affine=out_affine,
         **{f"churn_{key}": np.float64(v) for key, v in churn.items()},
         latents_unet=latents_unet, labels_unet=labels_unet, out_unet=out_unet)


# ---------------------------------------------------------------------------------------------- classifiers

def make_classifier(nets, kit_arch: str, model_type: str, channels: int, num_classes: int, **kw) -> None:
    """The noise-conditioned classifier (EDMPrecond_classifier, eval mode as the TDSM loop loads it) with weights
    from `recipe_tensor` (stored as names and shapes only: the full-size networks are too large to store), for
    given x, sigma, with and without augment labels."""
    torch.manual_seed(0)
    net = nets.EDMPrecond_classifier(img_resolution=32, img_channels=channels, label_dim=num_classes,
                                     model_type=model_type, augment_dim=9, dropout=0.0, **kw).eval()
    state = net.state_dict()
    names, shapes = [], []
    with torch.no_grad():
        for key, value in state.items():
            names.append(key)
            shapes.append(",".join(str(d) for d in value.shape))
            if value.is_floating_point():
                value.copy_(torch.from_numpy(recipe_tensor(key, value.shape)))
    g = torch.Generator().manual_seed(5)
    b = 3
    x = torch.randn(b, channels, 32, 32, generator=g)
    sigma = torch.tensor([0.01, 0.6, 12.0])
    aug = torch.randn(b, 9, generator=g)
    with torch.no_grad():
        logits_aug = net(x, sigma, None, augment_labels=aug)
        logits_noaug = net(x, sigma, None)
    save(f"classifier_{kit_arch}", names=np.array(names), shapes=np.array(shapes), x=x, sigma=sigma,
         augment_labels=aug, num_classes=np.int64(num_classes), logits_aug=logits_aug, logits_noaug=logits_noaug)


class _StubLogits(torch.nn.Module):
    """Stands in for the classifier's inner network: the given logits, after checking its input is c_in (y + n)."""

    def __init__(self, logits, expected_x):
        super().__init__()
        self.logits, self.expected_x = logits, expected_x

    def forward(self, x, noise_labels, class_labels=None, augment_labels=None, **kw):
        torch.testing.assert_close(x, self.expected_x)
        return self.logits.clone()


def make_classifier_losses(losses, nets) -> None:
    """The classifier losses for given logits: EDMClassifierLoss (forward-corrected CE) with the sym, asym-CIFAR-10
    and asym-MNIST matrices it hard-codes, and EDMClassifierWithVMLoss (VolMinNet) through the original
    EDMPrecond_classifier_with_transition_matrix with a given parameter A, with the gradient w.r.t. A."""
    g = torch.Generator().manual_seed(6)
    b, k = 8, 10
    images = torch.rand(b, 1, 32, 32, generator=g) * 2 - 1
    noisy = torch.randint(0, k, (b,), generator=g)
    labels = torch.nn.functional.one_hot(noisy, k).float()
    aug = torch.randn(b, 9, generator=g)
    normal = torch.randn(b, 1, 1, 1, generator=g)
    noise = torch.randn(b, 1, 32, 32, generator=g)
    logits = torch.randn(b, k, generator=g) * 3
    sigma = (normal * 1.2 - 1.2).exp()
    c_in = 1 / (0.25 + sigma ** 2).sqrt()
    out = {}
    for name, noise_type, dataset in (("sym", "sym", "cifar10"), ("asym_c10", "asym", "cifar10"),
                                      ("asym_mnist", "asym", "mnist")):
        loss_fn = losses.EDMClassifierLoss(noise_type=noise_type, noise_rate=0.4, num_classes=k, dataset=dataset)

        def net(x, s, class_labels=None, augment_labels=None):
            torch.testing.assert_close(x, images + noise * sigma)
            assert augment_labels is aug
            return logits.clone()

        with given_draws([normal], [noise]):
            out[f"ce_{name}"] = loss_fn(net, images, labels, augment_pipe=lambda x: (x, aug))

    torch.manual_seed(0)
    vm_net = nets.EDMPrecond_classifier_with_transition_matrix(img_resolution=32, img_channels=1, label_dim=k,
                                                               model_type="ClassifierSong_MNIST", augment_dim=9)
    vm_net.model = _StubLogits(logits, c_in * (images + noise * sigma))
    A = torch.randn(k, k, generator=g) - 2
    with torch.no_grad():
        vm_net.transition_matrix.copy_(A)
    _, tm = vm_net(images + noise * sigma, sigma)
    loss_fn = losses.EDMClassifierWithVMLoss(noise_type="learn", num_classes=k)
    with given_draws([normal], [noise]):
        vm = loss_fn(vm_net, images, labels, augment_pipe=lambda x: (x, aug))
    vm.sum().backward()
    save("classifier_losses", noisy=noisy, logits=logits, noise_rate=np.float64(0.4), volmin_A=A,
         volmin_T=tm.detach(), volmin_loss=vm.detach(), volmin_grad_A=vm_net.transition_matrix.grad, **out)


# ---------------------------------------------------------------------------------------------- TDSM loss

class _StubClassifier(torch.nn.Module):
    """cls_net(x, sigma, None) -> the given logits (and the given transition matrix for noise_type 'learn'),
    after checking that it is queried at x = y + sigma n."""

    def __init__(self, logits, expected_x, transition=None):
        super().__init__()
        self.logits, self.expected_x, self.transition = logits, expected_x, transition

    def forward(self, x, sigma, class_labels=None, **kw):
        torch.testing.assert_close(x, self.expected_x)
        return self.logits.clone() if self.transition is None else (self.logits.clone(), self.transition.clone())


class _CountingNet(torch.nn.Module):
    """The denoiser, counting the images of the no-grad (non-observed class) passes."""

    def __init__(self, net):
        super().__init__()
        self.net, self.extra = net, 0

    def forward(self, x, sigma, class_labels=None, augment_labels=None):
        if not torch.is_grad_enabled():
            self.extra += x.shape[0]
        return self.net(x, sigma, class_labels, augment_labels=augment_labels)


def sym_matrix(k: int, rate: float) -> np.ndarray:
    s = np.full((k, k), rate / (k - 1))
    np.fill_diagonal(s, 1 - rate)
    return s


def asym_mnist_matrix(rate: float) -> np.ndarray:
    """TDSM's MNIST flips 2->7, 3->8, 5<->6 (no 7->1), rows clean, columns noisy."""
    s = np.eye(10)
    for src, dst in ((2, 7), (3, 8), (5, 6), (6, 5)):
        s[src, src], s[src, dst] = 1 - rate, rate
    return s


def _posterior_logits(g, b: int, k: int) -> torch.Tensor:
    """Flat to very peaked posteriors, so that some classes pass the tau skip and some are dropped."""
    scale = torch.tensor([0.0, 0.3, 1.0, 2.0, 4.0, 6.0, 9.0, 3.0])[:b].reshape(b, 1)
    return torch.randn(b, k, generator=g) * scale


def _closed_weights(q: np.ndarray, noisy: np.ndarray, S: np.ndarray) -> np.ndarray:
    num = S[:, noisy].T * q
    return num / num.sum(1, keepdims=True)


def make_tdsm_case(losses, name: str, *, k: int, c: int, noise_type: str, rate: float, S: np.ndarray, dataset: str,
                   temp: float, seed: int, net=None, b: int = 8) -> None:
    g = torch.Generator().manual_seed(seed)
    r = 8
    images = torch.rand(b, c, r, r, generator=g) * 2 - 1
    noisy = torch.randint(0, k, (b,), generator=g)
    labels = torch.nn.functional.one_hot(noisy, k).float()
    aug = torch.randn(b, 9, generator=g) * (torch.rand(b, 1, generator=g) < 0.5)
    normal = torch.randn(b, 1, 1, 1, generator=g)
    noise = torch.randn(b, c, r, r, generator=g)
    logits = _posterior_logits(g, b, k)
    # the tau decisions must not be a matter of rounding: every weight clearly on one side of tau
    q = torch.softmax(logits.double() / temp, 1).numpy()
    w = _closed_weights(q, noisy.numpy(), S)
    margin = np.abs(w - TAU).min() / TAU
    assert margin > 1e-3, f"{name}: a weight is within {margin:.1e} of tau; change the seed"
    assert ((w > TAU) & (w < 1 - TAU) & (np.arange(k)[None] != noisy.numpy()[:, None])).any(), "no extra pass"
    assert ((w <= TAU) & (w > 0)).any(), f"{name}: no class is dropped by the tau skip"

    toy = None
    if net is None:
        toy = ToyDenoiser(k, c)
        randomize(toy, seed + 1)
        net = toy
    net.train()
    counting = _CountingNet(net)
    sigma = (normal * 1.2 - 1.2).exp()
    transition = torch.as_tensor(S, dtype=torch.float32) if noise_type == "learn" else None
    cls = _StubClassifier(logits, images + noise * sigma, transition)
    loss_fn = losses.EDMNoiseLoss(noise_type=noise_type, noise_rate=rate, num_classes=k, dataset=dataset, tau=TAU,
                                  temp=temp)
    net.zero_grad(set_to_none=True)
    with given_draws([normal], [noise]):
        loss = loss_fn(net=counting, images=images, labels=labels, augment_pipe=lambda x: (x, aug), cls_net=cls)
    loss.sum().backward()
    params = net.named_parameters() if toy is not None else net.model.named_parameters()
    grads = {f"grad/{key}": p.grad for key, p in params}
    weights = {f"param/{key}": p for key, p in toy.named_parameters()} if toy is not None else unet_config()
    save(f"tdsm_{name}", images=images, noisy=noisy, augment_labels=aug, normal=normal.flatten(), noise=noise,
         logits=logits, temp=np.float32(temp), tau=np.float32(TAU), S=S, noise_rate=np.float64(rate),
         loss_per_sample=loss.flatten(1).sum(1), extra_passes=np.int64(counting.extra), **weights, **grads)


def make_tdsm_cases(tdsm, net) -> None:
    S3 = np.array([[0.70, 0.20, 0.10], [0.15, 0.75, 0.10], [0.05, 0.25, 0.70]])
    make_tdsm_case(tdsm, "learn_k3", k=3, c=1, noise_type="learn", rate=0.0, S=S3, dataset="cifar10", temp=1.0, seed=10)
    make_tdsm_case(tdsm, "sym_k10", k=10, c=3, noise_type="sym", rate=0.4, S=sym_matrix(10, 0.4), dataset="cifar10",
                   temp=1.0, seed=20)
    make_tdsm_case(tdsm, "asym_mnist", k=10, c=1, noise_type="asym", rate=0.4, S=asym_mnist_matrix(0.4),
                   dataset="mnist", temp=2.0, seed=30)
    make_tdsm_case(tdsm, "unet_sym_k10", k=10, c=3, noise_type="sym", rate=0.2, S=sym_matrix(10, 0.2),
                   dataset="cifar10", temp=1.0, seed=40, net=net, b=4)


# ---------------------------------------------------------------------------------------------- TDSM training loop

# The loop golden: TDSM's `training_noise_loop` (EDM's `training_loop` with the classifier and EDMNoiseLoss) for
# three iterations on MNIST-shaped images (1x32x32, what the MNIST classifier takes), asym MNIST noise r 0.4,
# temperature 2. The learning rate ramps over two batches (lr 0, lr/2, lr) and the EMA ramp-up ratio is 0.5, so
# that both schedules (and when in the step they read the image count) show in the parameters and the EMA.
LOOP_UNET = dict(img_resolution=32, img_channels=1, label_dim=10, augment_dim=9, model_channels=4, channel_mult=[1, 2],
                 num_blocks=1, attn_resolutions=[16], dropout=0.0)
LOOP = dict(batch=8, steps=3, rate=0.4, temp=2.0, lr=2e-3, lr_rampup_kimg=0.016, ema_halflife_kimg=500.0,
            ema_rampup=0.5, classifier_logit_gain=4.0)


def _recipe_state(module: torch.nn.Module) -> dict:
    """Load `recipe_tensor` weights (by original name) into every parameter; returns names -> shapes. (The only
    buffers, the UNet's resampling filters, are constants of the architecture.)"""
    shapes = {}
    buffers = {key for key, _ in module.named_buffers()}
    assert all(key.endswith("resample_filter") for key in buffers), buffers
    with torch.no_grad():
        for key, value in module.named_parameters():
            shapes[key] = ",".join(str(d) for d in value.shape)
            value.copy_(torch.from_numpy(recipe_tensor(key, value.shape)))
    return shapes


class _LoopProbe:
    """The training loop's collaborators that cannot run here (distributed setup, statistics, CUDA memory queries,
    the pickle of the classifier snapshot), plus what records the loop's values: the loop calls
    `dist.update_progress` once before the first step and once per tick (here, per step), and the probe reads the
    loop's locals there (net, ema, cur_nimg, ema_beta)."""

    def __init__(self, cls_net):
        self.cls_net, self.ticks = cls_net, []

    # torch_utils.distributed
    def get_rank(self): return 0
    def get_world_size(self): return 1
    def print0(self, *args, **kw): pass
    def should_stop(self): return False

    def update_progress(self, cur, total):
        f = inspect.currentframe().f_back.f_locals
        self.ticks.append({"cur_nimg": f["cur_nimg"], "ema_beta": f.get("ema_beta"),
                           "net": {k: v.detach().clone() for k, v in f["net"].model.named_parameters()},
                           "ema": {k: v.detach().clone() for k, v in f["ema"].model.named_parameters()},
                           "lr": f["optimizer"].param_groups[0]["lr"]})


def _loop_namespace(module, probe, registry):
    """Replace, in the loop module's namespace only, what needs CUDA, several processes or files."""
    stats = types.SimpleNamespace(report=lambda name, value: value, report0=lambda name, value: value,
                                  default_collector=types.SimpleNamespace(update=lambda: None, as_dict=lambda: {}))
    misc = types.SimpleNamespace(
        InfiniteSampler=lambda dataset, **kw: _InOrder(len(dataset)),
        print_module_summary=lambda *a, **kw: None,
        ddp_sync=lambda ddp, sync: contextlib.nullcontext())
    util = types.SimpleNamespace(construct_class_by_name=lambda class_name, **kw: registry[class_name](**kw),
                                 open_url=lambda url, **kw: contextlib.nullcontext(url),
                                 format_time=lambda s: f"{s:.1f}s")

    class TorchNoCuda(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

    fake_torch = TorchNoCuda("torch")
    fake_torch.cuda = types.SimpleNamespace(max_memory_allocated=lambda *a: 0, max_memory_reserved=lambda *a: 0,
                                            reset_peak_memory_stats=lambda *a: None)
    fake_torch.nn = types.SimpleNamespace(parallel=types.SimpleNamespace(
        DistributedDataParallel=lambda net, **kw: net))
    module.dist, module.training_stats, module.misc = probe, stats, misc
    module.dnnlib = types.SimpleNamespace(util=util)
    module.pickle = types.SimpleNamespace(load=lambda f: {"ema": probe.cls_net})
    module.psutil = types.SimpleNamespace(Process=lambda pid: types.SimpleNamespace(
        memory_info=lambda: types.SimpleNamespace(rss=0)))
    module.torch = fake_torch


class _InOrder(torch.utils.data.Sampler):
    """The dataset in stored order, pass after pass (stands in for misc.InfiniteSampler's shuffled stream)."""

    def __init__(self, n):
        self.n = n

    def __iter__(self):
        while True:
            yield from range(self.n)


class _ImageDataset(torch.utils.data.Dataset):
    """training.dataset.Dataset's interface: uint8 CHW images and float32 one-hot labels."""

    def __init__(self, images, noisy, k):
        self.images, self.labels = images, np.eye(k, dtype=np.float32)[noisy]
        self.resolution, self.num_channels, self.label_dim = images.shape[2], images.shape[1], k

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]


class _RecordingClassifier(torch.nn.Module):
    """The classifier as the loop loads it, recording where it is queried and what it returns."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, []

    def forward(self, x, sigma, class_labels=None, **kw):
        out = self.net(x, sigma, class_labels, **kw)
        self.calls.append({"x": x.detach().clone(), "sigma": sigma.detach().clone().flatten(),
                           "logits": out.detach().clone(), "kw": sorted(kw)})
        return out


def make_tdsm_loop(losses, nets, loop_module) -> None:
    """Three iterations of the original TDSM training loop: the loss, weights and classifier queries of each step,
    its learning rate and EMA beta, the parameters and the EMA after the last step."""
    k, b, steps = LOOP_UNET["label_dim"], LOOP["batch"], LOOP["steps"]
    g = torch.Generator().manual_seed(50)
    n = b * steps
    images = torch.randint(0, 256, (n, 1, 32, 32), generator=g, dtype=torch.uint8).numpy()
    # mostly noisy labels that asym MNIST noise can produce from two clean classes (5, 6, 7, 8), so that the weights
    # mix classes; the others (0, 1, 2, 3, 4, 9) have one-hot weights
    noisy = torch.tensor([7, 5, 6, 8, 7, 0, 5, 6, 8, 7, 6, 3, 5, 8, 7, 6, 2, 5, 8, 7, 6, 9, 5, 8])[:n].numpy()
    normal = torch.randn(steps, b, 1, 1, 1, generator=g)
    noise = torch.randn(steps, b, 1, 32, 32, generator=g)

    torch.manual_seed(0)
    cls = nets.EDMPrecond_classifier(img_resolution=32, img_channels=1, label_dim=k, model_type="ClassifierSong_MNIST",
                                     augment_dim=9, dropout=0.0).eval()
    cls_shapes = _recipe_state(cls)
    with torch.no_grad():   # peaked enough posteriors that the tau skip drops some classes and keeps others
        cls.model.classifier.linear.weight.mul_(LOOP["classifier_logit_gain"])
    cls_rec = _RecordingClassifier(cls)

    unet_shapes = {}

    def build_net(**kw):
        assert kw.pop("label_dropout") == 0
        net = nets.EDMPrecond(**kw)
        unet_shapes.update(_recipe_state(net.model))
        return net

    records = {"loss": [], "images": [], "labels": [], "weights": []}

    class RecordingLoss:
        def __init__(self, **kw):
            self.inner = losses.EDMNoiseLoss(**kw)

        def __call__(self, net, images, labels, augment_pipe, cls_net):
            loss = self.inner(net=net, images=images, labels=labels, augment_pipe=augment_pipe, cls_net=cls_net)
            records["loss"].append(loss.detach().flatten(1).sum(1))
            records["images"].append(images.clone())
            records["labels"].append(labels.argmax(1))
            return loss

    # the loss's weights w_x_yt are its last torch.nan_to_num: read them there (in the loss module's namespace)
    class TorchWithWeights(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

        def nan_to_num(self, *args, **kw):
            out = torch.nan_to_num(*args, **kw)
            records["weights"].append(out.detach().clone())
            return out

    loss_torch = losses.torch
    losses.torch = TorchWithWeights("torch")
    registry = {
        "stub.Dataset": lambda: _ImageDataset(images, noisy, k),
        "training.networks.EDMPrecond": build_net,
        "training.loss.EDMNoiseLoss": RecordingLoss,
        "torch.optim.Adam": torch.optim.Adam,
        # augmentation off; the original loss indexes the augment labels of the extra passes (it cannot run without a
        # pipe), so the pipe passes the images through with all-zero augment labels (the kit passes None: same
        # output, since the UNet's augment map has no bias)
        "stub.NoAugment": lambda: (lambda x: (x, torch.zeros(x.shape[0], 9))),
    }
    probe = _LoopProbe(cls_rec)
    _loop_namespace(loop_module, probe, registry)
    net_kw = dict(class_name="training.networks.EDMPrecond", model_type="SongUNet", label_dropout=0,
                  **{key: v for key, v in LOOP_UNET.items()
                     if key not in ("img_resolution", "img_channels", "label_dim")})
    try:
        with tempfile.TemporaryDirectory() as run_dir, given_draws(list(normal), list(noise)):
            loop_module.training_noise_loop(
                run_dir=run_dir, dataset_kwargs=dict(class_name="stub.Dataset"), data_loader_kwargs={},
                network_kwargs=net_kw,
                loss_kwargs=dict(class_name="training.loss.EDMNoiseLoss", noise_type="asym", noise_rate=LOOP["rate"],
                                 num_classes=k, dataset="mnist", tau=TAU, temp=LOOP["temp"]),
                optimizer_kwargs=dict(class_name="torch.optim.Adam", lr=LOOP["lr"], betas=[0.9, 0.999], eps=1e-8),
                augment_kwargs=dict(class_name="stub.NoAugment"), seed=0, batch_size=b,
                total_kimg=n / 1000, ema_halflife_kimg=LOOP["ema_halflife_kimg"], ema_rampup_ratio=LOOP["ema_rampup"],
                lr_rampup_kimg=LOOP["lr_rampup_kimg"], kimg_per_tick=0, snapshot_ticks=None, state_dump_ticks=None,
                cls_pkl="classifier-snapshot", cudnn_benchmark=False, device=torch.device("cpu"))
    finally:
        losses.torch = loss_torch

    ticks = probe.ticks[1:]                     # the first call comes before the first step
    assert len(ticks) == steps and [t["cur_nimg"] for t in ticks] == [b * (i + 1) for i in range(steps)]
    assert len(records["loss"]) == len(cls_rec.calls) == len(records["weights"]) == steps
    assert all(c["kw"] == [] for c in cls_rec.calls), "the classifier is queried without augment labels"
    # the stored order is the loop's order: batch i holds images i*b .. (i+1)*b - 1
    for i in range(steps):
        assert torch.equal(records["labels"][i], torch.as_tensor(noisy[i * b:(i + 1) * b]))
    w = torch.stack(records["weights"]).double()
    margin = float(((w - TAU).abs() / TAU)[w > 0].min())
    assert margin > 1e-3, f"a weight is within {margin:.1e} of tau; change the seed"
    observed = torch.nn.functional.one_hot(torch.as_tensor(noisy).reshape(steps, b), k).bool()
    assert ((w > TAU) & ~observed).any(), "no extra pass"
    assert ((w <= TAU) & (w > 0)).any(), "no class dropped by the tau skip"
    init = probe.ticks[0]["net"]
    save("tdsm_loop", images=images, noisy=noisy, normal=normal.flatten(1), noise=noise,
         **{f"cfg_{key}": np.asarray(v) for key, v in {**LOOP_UNET, **LOOP, "tau": TAU}.items()},
         unet_names=np.array(list(unet_shapes)), unet_shapes=np.array(list(unet_shapes.values())),
         cls_names=np.array(list(cls_shapes)), cls_shapes=np.array(list(cls_shapes.values())),
         cls_x=torch.stack([c["x"] for c in cls_rec.calls]), cls_sigma=torch.stack([c["sigma"] for c in cls_rec.calls]),
         cls_logits=torch.stack([c["logits"] for c in cls_rec.calls]), weights=torch.stack(records["weights"]),
         loss_per_sample=torch.stack(records["loss"]), lr=np.array([t["lr"] for t in ticks]),
         ema_beta=np.array([t["ema_beta"] for t in ticks]), extra_passes_min_margin=np.float64(margin),
         # after the last step, as changes from the initial weights (which are the recipe's)
         **{f"net/{key}": v - init[key] for key, v in ticks[-1]["net"].items()},
         **{f"ema/{key}": v - init[key] for key, v in ticks[-1]["ema"].items()})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tdsm", type=Path, help="checkout of byeonghu-na/tdsm")
    ap.add_argument("--edm", type=Path, default=None, help="checkout of NVlabs/edm (default: the TDSM checkout)")
    ap.add_argument("--only", choices=("loop",), default=None, help="write only tdsm_loop.npz")
    args = ap.parse_args(argv)
    for path in (args.tdsm, args.edm):
        if path is not None and not (path / "training" / "networks.py").is_file():
            print(f"error: {path} is not a checkout of the original code (no training/networks.py)", file=sys.stderr)
            return 2
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    tdsm, tdsm_snapshot = import_from(args.tdsm, ["training.loss", "training.networks", "generate",
                                                  "training.training_noise_loop"])
    if args.only == "loop":
        with active(tdsm_snapshot):
            make_tdsm_loop(tdsm["training.loss"], tdsm["training.networks"], tdsm["training.training_noise_loop"])
        return 0
    edm, edm_snapshot = import_from(args.edm or args.tdsm, ["training.networks", "training.loss", "generate"])
    with active(edm_snapshot):
        net = build_unet(edm["training.networks"])
        make_songunet(edm["training.networks"], net)
        make_precond(edm["training.networks"])
        make_edm_loss(edm["training.loss"], net)
        make_sampler(edm["generate"], tdsm["generate"], net)
    with active(tdsm_snapshot):
        make_tdsm_cases(tdsm["training.loss"], net)
        make_tdsm_loop(tdsm["training.loss"], tdsm["training.networks"], tdsm["training.training_noise_loop"])
        make_classifier_losses(tdsm["training.loss"], tdsm["training.networks"])
        make_classifier(tdsm["training.networks"], "cnn_mnist", "ClassifierSong_MNIST", 1, 10)
        make_classifier(tdsm["training.networks"], "resnet18_cond", "ClassifierSong", 3, 10, encoder_type="resnet18")
    return 0


if __name__ == "__main__":
    sys.exit(main())
