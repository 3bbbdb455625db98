"""TDSM on CPU (docs/tdsm.md §15): transition matrices, noise, the weights, the loss, the theorem on a Gaussian
mixture, the toy, the classifier losses, EDM pieces, dataset IO, the metrics, and the params."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nlkit.diffusion import (
    AugmentPipe,
    EDMPrecond,
    build_classifier,
    build_unet,
    edm_loss,
    ema_beta,
    heun_sample,
    heun_schedule,
    loss_weight,
    precond_coefficients,
    sample_sigma,
    unet_parameter_count,
)
from nlkit.errors import UserError
from nlkit.methods import Roots, tdsm
from nlkit.methods.tdsm import metrics as M
from nlkit.methods.tdsm.objective import forward_corrected_ce, mixture_denoise, tdsm_loss, volmin_loss
from nlkit.methods.tdsm.toy import (
    clean_denoisers,
    clean_posterior,
    make_toy,
    noisy_log_density,
    sample_toy,
    toy_scores,
    train_toy,
)
from nlkit.methods.tdsm.weights import (
    build_transition,
    constant_weights,
    reverse_matrix,
    tdsm_weights,
    volmin_transition,
)
from nlkit.metrics import density_coverage, frechet_distance, inception_score
from nlkit.noise import make_noise, successor

K = 10


def _random_q(b, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(b, k, generator=g, dtype=torch.float64) * 3, 1)


# ---------------------------------------------------------------------------------------------- 1-2 S and noise

def test_transition_builders():
    for kind, amap in (("sym", None), ("asym", "asym_mnist_tdsm"), ("asym", "asym_c10")):
        S = build_transition(kind, 0.4, 10, amap)
        np.testing.assert_allclose(S.sum(1), 1.0)
        assert (S >= 0).all()
    S = build_transition("asym", 0.4, 10, "asym_mnist_tdsm")
    flips = {(i, j) for i in range(10) for j in range(10) if i != j and S[i, j] > 0}
    assert flips == {(2, 7), (3, 8), (5, 6), (6, 5)}  # no 7 -> 1 in TDSM's MNIST map
    succ = successor("asym_c100_superclass", 100)
    assert sorted(succ.tolist()) == list(range(100)) and (succ != np.arange(100)).all()
    assert build_transition("sym", 0.4, 10)[0, 1] == pytest.approx(0.4 / 9)
    with pytest.raises(UserError, match="singular"):
        build_transition("sym", 0.9, 10)
    with pytest.raises(UserError, match="singular"):
        build_transition("asym", 0.5, 10, "asym_mnist_tdsm")  # the 5 <-> 6 swap


def test_noise_injection():
    y = np.repeat(np.arange(10), 2000)
    a = make_noise(y, "sym", 0.4, 10, seed=3)
    b = make_noise(y, "sym", 0.4, 10, seed=3)
    assert np.array_equal(a.noisy, b.noisy)
    flipped = a.noisy != y
    assert abs(flipped.mean() - 0.4) < 4 * math.sqrt(0.24 / len(y))
    asym = make_noise(y, "asym", 0.4, 10, seed=0, asym_map="asym_mnist_tdsm")
    touched = np.unique(y[asym.noisy != y])
    assert set(touched.tolist()) <= {2, 3, 5, 6}
    succ = successor("asym_mnist_tdsm")
    assert (asym.noisy[asym.noisy != y] == succ[y[asym.noisy != y]]).all()


# ---------------------------------------------------------------------------------------------- 3 weights

def test_weights_identity_and_normalisation():
    q = _random_q(64, K)
    y = torch.randint(0, K, (64,), generator=torch.Generator().manual_seed(1))
    w = tdsm_weights(q, y, torch.eye(K, dtype=torch.float64))
    assert torch.equal(w, F.one_hot(y, K).double())
    S = torch.as_tensor(build_transition("sym", 0.4, K))
    for form in ("rinv", "closed"):
        w = tdsm_weights(q, y, S, form)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(1), torch.ones(64, dtype=torch.float64))


@pytest.mark.parametrize("kind,amap", [("sym", None), ("asym", "asym_mnist_tdsm"), ("asym", "asym_c10")])
def test_rinv_path_equals_closed_form(kind, amap):
    S = torch.as_tensor(build_transition(kind, 0.4, K, amap))
    q = _random_q(200, K, seed=2)
    y = torch.randint(0, K, (200,), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(tdsm_weights(q, y, S, "rinv"), tdsm_weights(q, y, S, "closed"), atol=1e-10, rtol=0)


def test_weight_limits():
    S = torch.as_tensor(build_transition("asym", 0.4, K, "asym_mnist_tdsm"))
    y = torch.arange(K)
    uniform = torch.full((K, K), 1.0 / K, dtype=torch.float64)       # q = pi: instance-independent weights
    torch.testing.assert_close(tdsm_weights(uniform, y, S), reverse_matrix(S)[y], atol=1e-12, rtol=0)
    torch.testing.assert_close(constant_weights(y, S), reverse_matrix(S))
    # a confident q on the clean class 2 corrects the observed label 7 (S[2, 7] > 0)
    q = F.one_hot(torch.tensor([2]), K).double()
    w = tdsm_weights(q, torch.tensor([7]), S, "closed")
    assert torch.equal(w, F.one_hot(torch.tensor([2]), K).double())
    R = reverse_matrix(S.numpy())
    assert R[7, 2] == pytest.approx(0.4 / 1.4) and R[7, 7] == pytest.approx(1 / 1.4)


# ---------------------------------------------------------------------------------------------- 4 the loss

class _LinearDenoiser(torch.nn.Module):
    """D(x; sigma, y) = a * x + B y broadcast: linear in its parameters, enough to check gradients."""

    def __init__(self, k=3, dim=4):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.7))
        self.b = torch.nn.Parameter(torch.randn(k, dim, generator=torch.Generator().manual_seed(0)))
        self.calls = []

    def forward(self, x, sigma, labels, aug=None):
        self.calls.append(len(x))
        return self.a * x + (labels @ self.b).reshape(x.shape)


def test_identity_weights_give_the_edm_loss():
    torch.manual_seed(0)
    net = EDMPrecond(build_unet("ddpmpp_tiny", img_resolution=8, in_channels=1, label_dim=K, channel_mult=[1, 2],
                                attn_resolutions=[4], dropout=0.0))
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    sigma = sample_sigma(6, torch.Generator().manual_seed(1))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    ref = edm_loss(net, x0, F.one_hot(y, K).float(), sigma=sigma, noise=noise)
    w = tdsm_weights(_random_q(6, K).float(), y, torch.eye(K))
    loss, extra = tdsm_loss(net, x0, y, w, K, sigma=sigma, noise=noise)
    torch.testing.assert_close(loss, ref, atol=0, rtol=0)
    assert int(extra) == 0
    dsm, extra = tdsm_loss(net, x0, y, None, K, sigma=sigma, noise=noise)
    torch.testing.assert_close(dsm, ref, atol=0, rtol=0)


def test_gradient_flows_only_through_the_observed_branch_and_skips_count():
    net = _LinearDenoiser()
    x = torch.randn(2, 4, 1, 1)
    sigma = torch.ones(2, 1, 1, 1)
    y = torch.tensor([0, 1])
    w = torch.tensor([[0.5, 0.495, 0.005], [0.2, 0.8, 0.0]])
    d, extra = mixture_denoise(net, x, sigma, y, w, 3, tau=0.01)
    assert int(extra) == 2 and net.calls == [2, 2]          # (0, 1) and (1, 0) pass; (0, 2) is below tau
    d.sum().backward()
    # b[c] gets gradient only from the observed branches: w_00 for class 0, w_11 for class 1; class 2 none
    torch.testing.assert_close(net.b.grad[0], torch.full((4,), 0.5))
    torch.testing.assert_close(net.b.grad[1], torch.full((4,), 0.8))
    torch.testing.assert_close(net.b.grad[2], torch.zeros(4))
    # values: the skipped mass (0.005 on class 2) is dropped, not renormalised
    a, b = net.a.detach(), net.b.detach()

    def D(i, c):
        return a * x[i].flatten() + b[c]

    torch.testing.assert_close(d.detach()[0].flatten(), 0.5 * D(0, 0) + 0.495 * D(0, 1))
    torch.testing.assert_close(d.detach()[1].flatten(), 0.8 * D(1, 1) + 0.2 * D(1, 0))
    full = a * x + (w @ b).reshape(2, 4, 1, 1)
    # tau = 0 evaluates every class with positive weight: the full mixture
    net.calls.clear()
    d0, extra0 = mixture_denoise(net, x, sigma, y, w, 3, tau=0.0)
    assert int(extra0) == 3
    torch.testing.assert_close(d0.detach(), full)
    # renormalising after the skip rescales the kept mass to 1
    dr, _ = mixture_denoise(net, x, sigma, y, w, 3, tau=0.01, renorm_after_skip=True)
    torch.testing.assert_close(dr.detach()[0], (d.detach()[0]) / 0.995)


def test_full_grad_switch_reaches_other_classes():
    net = _LinearDenoiser()
    x, sigma, y = torch.randn(1, 4, 1, 1), torch.ones(1, 1, 1, 1), torch.tensor([0])
    w = torch.tensor([[0.6, 0.4, 0.0]])
    d, _ = mixture_denoise(net, x, sigma, y, w, 3, full_grad=True)
    d.sum().backward()
    torch.testing.assert_close(net.b.grad[1], torch.full((4,), 0.4))


# ---------------------------------------------------------------------------------------------- 5 theorem

@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_noisy_score_is_the_weighted_clean_score(sigma):
    toy = make_toy(n=10, rate=0.4)
    means = torch.as_tensor(toy.means, dtype=torch.float64)
    S = torch.as_tensor(toy.S)
    R = reverse_matrix(S)
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.5
    y = torch.arange(20) % 3
    q = clean_posterior(x, torch.full((20,), sigma), means, toy.var)
    w = tdsm_weights(q, y, S, "closed")
    scores = (clean_denoisers(x, sigma, means, toy.var) - x[:, None]) / sigma ** 2        # (B, K, 2)
    mixed = (w[:, :, None] * scores).sum(1)
    h = 1e-5
    for b in range(20):
        grad = []
        for d in range(2):
            e = torch.zeros(1, 2, dtype=torch.float64)
            e[0, d] = h
            f = lambda z: noisy_log_density(z, sigma, int(y[b]), means, toy.var, R)  # noqa: E731
            grad.append(float((f(x[b:b + 1] + e) - f(x[b:b + 1] - e)) / (2 * h)))
        np.testing.assert_allclose(grad, mixed[b].numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- 6 toy

def test_toy_tdsm_recovers_the_clean_means_and_dsm_does_not():
    toy = make_toy(n=4000, rate=0.4, seed=0)
    out = {}
    for method in ("dsm", "tdsm"):
        net, extra, _ = train_toy(toy, method, steps=500, batch=256, lr=3e-3, seed=0)
        out[method] = toy_scores(*sample_toy(net, 3, 200, seed=0), toy)
        if method == "dsm":
            assert extra == 0
    assert out["tdsm"]["label_consistency"] > 0.85 and out["dsm"]["label_consistency"] < 0.75
    assert out["tdsm"]["mean_error"] < 0.5 * out["dsm"]["mean_error"]


# ---------------------------------------------------------------------------------------------- 7 classifier losses

def test_classifier_losses():
    logits = torch.randn(8, K, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8)
    torch.testing.assert_close(forward_corrected_ce(logits, y, torch.eye(K)),
                               F.cross_entropy(logits, y, reduction="none"))
    S = torch.as_tensor(build_transition("sym", 0.4, K), dtype=torch.float32)
    expected = -torch.log((torch.softmax(logits, 1) @ S)[torch.arange(8), y])
    torch.testing.assert_close(forward_corrected_ce(logits, y, S), expected)
    T = volmin_transition(torch.full((K, K), -2.0))
    torch.testing.assert_close(T.sum(1), torch.ones(K))
    assert (T > 0).all() and (T.argmax(1) == torch.arange(K)).all()  # 1 / (1 + 9 sigmoid(-2)) = 0.48 on the diagonal
    assert volmin_loss(logits, y, T).shape == (8,)
    clf = build_classifier("cnn_mnist", num_classes=K, in_channels=1, img_resolution=32, augment_dim=9)
    assert 0.37e6 < sum(p.numel() for p in clf.parameters()) < 0.40e6
    assert clf(torch.zeros(2, 1, 32, 32), torch.tensor([0.1, 10.0])).shape == (2, K)


# ---------------------------------------------------------------------------------------------- 8 EDM pieces

def test_edm_coefficients_sampler_and_schedule():
    s = torch.tensor([0.5, 2.0])
    c_skip, c_out, c_in, c_noise = precond_coefficients(s)
    torch.testing.assert_close(c_skip, torch.tensor([0.5, 0.25 / 4.25]))
    torch.testing.assert_close(c_out, torch.tensor([0.25 / math.sqrt(0.5), 1.0 / math.sqrt(4.25)]))
    torch.testing.assert_close(c_in, torch.tensor([1 / math.sqrt(0.5), 1 / math.sqrt(4.25)]))
    torch.testing.assert_close(c_noise, torch.log(s) / 4)
    torch.testing.assert_close(loss_weight(s), torch.tensor([0.5 / 0.0625, 4.25 / 1.0]))
    log_sigma = sample_sigma(200_000, torch.Generator().manual_seed(0)).log()
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=0.01)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.01)
    t = heun_schedule(18)
    assert len(t) == 19 and float(t[0]) == pytest.approx(80) and float(t[17]) == pytest.approx(0.002)
    assert float(t[18]) == 0 and (t[:-1].diff() < 0).all()
    calls = []

    def stub(x, sigma, labels):
        calls.append(float(sigma))
        return torch.zeros_like(x)

    out = heun_sample(stub, torch.randn(3, 1, 2, 2), torch.eye(3))
    assert len(calls) == 35 and out.dtype == torch.float64
    assert torch.allclose(out, torch.zeros_like(out), atol=1e-12)  # D = 0 carries every sample to 0
    assert ema_beta(512, 10_000_000, 500_000, 0.05) == pytest.approx(0.5 ** (512 / 500_000))
    assert ema_beta(512, 1000, 500_000, 0.05) == pytest.approx(0.5 ** (512 / 50))


def test_unet_presets_and_augment_pipe():
    assert unet_parameter_count("ddpmpp", img_resolution=32, in_channels=3, label_dim=10) == pytest.approx(55.7e6, rel=2e-3)
    assert unet_parameter_count("ddpmpp_mnist", img_resolution=32, in_channels=1, label_dim=10) == \
        pytest.approx(1.56e6, rel=3e-3)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    same, labels = AugmentPipe(p=0.0)(x)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    assert labels.shape == (4, 9) and not labels.any()
    flipped, labels = AugmentPipe(p=1.0, yflip=0, scale=0, rotate_frac=0, aniso=0, translate_frac=0)(
        x, torch.Generator().manual_seed(0))
    for i in range(4):  # x-flip only: exact mirror images where the label says so
        torch.testing.assert_close(flipped[i], x[i].flip(-1) if labels[i, 0] == 1 else x[i], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- 9 dataset IO

def test_edm_zip_round_trip_padding_and_scaling(tmp_path):
    from nlkit.data.edm_zip import read_edm_labels, read_edm_zip, write_edm_zip
    from nlkit.methods.tdsm.train import image_batcher

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, 12)
    path = write_edm_zip(tmp_path / "d.zip", images, labels)
    import zipfile

    with zipfile.ZipFile(path) as z:
        assert "00000/img00000011.png" in z.namelist() and all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    back, back_labels = read_edm_zip(path)
    assert np.array_equal(back, images) and np.array_equal(back_labels, labels)
    assert read_edm_labels(path)["00000/img00000003.png"] == labels[3]
    padded = tdsm.preprocess(images, pad_to=32)
    assert padded.shape == (12, 32, 32, 1) and np.array_equal(padded[:, 2:30, 2:30], images)
    assert padded[:, :2].max() == 0 and padded[:, 30:].max() == 0
    x = next(iter(image_batcher(np.array([[[[0]], [[255]]]], np.uint8), 1, "cpu", 0, shuffle=False).epoch(0))).x
    torch.testing.assert_close(x.flatten(), torch.tensor([-1.0, 1.0]))
    assert F.one_hot(torch.tensor([3]), 10).float().sum() == 1


# ---------------------------------------------------------------------------------------------- metrics

def test_metrics_against_hand_computed_values():
    assert frechet_distance([0.0], [[1.0]], [1.0], [[4.0]]) == pytest.approx(2.0)  # 1 + 1 + 4 - 2*2
    mu, cov = np.zeros(3), np.diag([1.0, 2.0, 3.0])
    assert frechet_distance(mu, cov, mu + 1, 4 * cov) == pytest.approx(3 + 6 + 24 - 2 * 2 * 6)
    uniform = np.zeros((100, 5))
    assert inception_score(uniform, splits=2)[0] == pytest.approx(1.0)
    distinct = np.eye(5)[np.arange(100) % 5] * 50
    assert inception_score(distinct, splits=1)[0] == pytest.approx(5.0, rel=1e-6)
    real = np.array([[0.0, 0], [1, 0], [0, 1], [1, 1], [10, 10], [11, 10], [10, 11], [11, 11]])
    dc = density_coverage(real, real.copy(), k=2)
    assert dc["coverage"] == pytest.approx(1.0)
    far = density_coverage(real, real + 100, k=2)
    assert far["density"] == 0 and far["coverage"] == 0
    lc, per = M.label_consistency(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert lc == pytest.approx(5 / 6) and per == [1.0, 0.5, 1.0]
    np.testing.assert_allclose(M.ideal_dsm_consistency(build_transition("sym", 0.4, 10)), 0.6)
    ideal = M.ideal_dsm_consistency(build_transition("asym", 0.4, 10, "asym_mnist_tdsm"))
    assert ideal.mean() == pytest.approx((6 + 1.2 + 2 / 1.4) / 10)  # 0.863
    np.testing.assert_allclose(ideal[[5, 6, 7, 8]], [0.6, 0.6, 1 / 1.4, 1 / 1.4])


def test_cas_and_feature_fid_on_separable_images():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    images = np.where(labels[:, None, None, None] == 1, 220, 30).astype(np.uint8) + rng.integers(0, 20, (120, 8, 8, 1)).astype(np.uint8)
    cas = M.classification_accuracy_score(images, labels, images[::3], labels[::3], 2, epochs=3, device="cpu")
    assert cas == pytest.approx(100.0)
    assert M.feature_fid(rng.normal(size=(500, 4)), rng.normal(size=(500, 4))) < 0.2


def test_inception_loader_with_random_weights_and_a_missing_file(tmp_path):
    pytest.importorskip("torch_fidelity")
    from nlkit.metrics import load_inception, write_random_inception_weights

    with pytest.raises(UserError, match="not found"):
        load_inception(tmp_path / "missing.pth")
    with pytest.raises(UserError, match="weights file"):
        load_inception(None)
    path = write_random_inception_weights(tmp_path / "random.pth")
    extractor = load_inception(path)
    feats, logits = extractor(np.zeros((2, 16, 16, 1), np.uint8))
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not an Inception"):
        load_inception(tmp_path / "other.pth")


# ---------------------------------------------------------------------------------------------- contract, params

def _tiny_cell(method, **train):
    base = {"arch": "ddpmpp_tiny", "model_channels": 8, "channel_mult": [1, 2], "attn_resolutions": [4],
            "batch_size": 32, "warmup_kimg": 0.1, "duration_kimg": 0.096, "kimg_per_tick": 0.096,
            "ema_halflife_kimg": 0.1, "augment_p": 0.12, "dropout": 0.0, "cls_batch_size": 64,
            "cls_warmup_kimg": 0.1, "cls_duration_kimg": 0.32, "cls_kimg_per_tick": None}
    base.pop("cls_kimg_per_tick")
    return {"method": method, "dataset": "digits", "noise": {"model": "sym", "rate": 0.4, "seed": 0},
            "cell_id": f"mnist-sym-0.40-{method}", "profile": "smoke", "train": {**base, **train}}


def test_identity_tdsm_run_equals_dsm_and_the_classifier_artefact(tmp_path):
    torch.set_num_threads(1)
    cell = _tiny_cell("classifier")
    data = tdsm.prepare(cell, 0)
    out = tdsm.run(data, tdsm.Config.from_cell(cell), 0, tmp_path / "cls", progress=False)
    assert out.artefacts == {"classifier": "classifier.pt"}
    path = tmp_path / "cls" / "classifier.pt"
    with pytest.raises(UserError, match="needs the artefact"):
        tdsm.prepare(_tiny_cell("tdsm"), 0, Roots())
    model, T, kind = tdsm.load_classifier(path)
    assert kind == "given" and np.allclose(T, build_transition("sym", 0.4, 10))
    from nlkit.methods.tdsm.train import train_diffusion

    cfg = tdsm.Config.from_cell(_tiny_cell("tdsm"))
    runs = {}
    for method in ("dsm", "tdsm"):
        runs[method] = train_diffusion(data.train_images, data.noisy, np.eye(10), cfg, 0, method=method,
                                       classifier=model, device="cpu", progress=False)
    assert runs["tdsm"].history["extra_passes_per_sample"].iloc[-1] == 0
    for a, b in zip(runs["dsm"].net.parameters(), runs["tdsm"].net.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(UserError, match="label dropout"):
        tdsm.Config.from_cell(_tiny_cell("tdsm", label_dropout=0.1))
    with pytest.raises(UserError, match="unknown TDSM training settings"):
        tdsm.Config.from_cell(_tiny_cell("tdsm", bogus=1))


def test_every_tdsm_cell_resolves_under_every_profile():
    from nlkit.pipeline import find_cells, load_cell

    cells = find_cells("tdsm")
    stems = {c.stem for c in cells}
    assert len(cells) >= 40
    running = {p: set() for p in ("smoke", "cpu", "quick", "paper")}
    needed = {p: set() for p in running}
    for path in cells:
        for profile in running:
            cell = load_cell(path, profile)
            cfg = tdsm.Config.from_cell(cell)
            assert cfg.method in ("classifier", "dsm", "sdsm", "tdsm", "toy")
            for ref in (cell.get("needs") or {}).values():
                assert ref.split("/")[1] in stems
            for entry in cell["tables"]:
                tdsm.SPEC.check_metric(entry["metric"], path.name)
            if not cell.get("skip"):
                running[profile].add(path.stem)
                needed[profile] |= {ref.split("/")[1] for ref in (cell.get("needs") or {}).values()}
    for profile in running:  # a dependency runs wherever its dependents do
        assert needed[profile] <= running[profile]
    assert running["smoke"] == {"toy-sym-0.40", "mnist-sym-0.40-classifier", "mnist-sym-0.40-dsm",
                                "mnist-sym-0.40-tdsm"}
    assert {"mnist-sym-0.40-tdsm-identity", "mnist-asym-0.40-tdsm"} <= running["cpu"]
    assert running["paper"] == stems
    assert load_cell(cells[0], "smoke")["dataset"] == "digits"


@pytest.mark.slow
def test_toy_cell_through_nlkit_run(kit_project):
    from nlkit.pipeline import run_cell

    [result] = run_cell("params/tdsm/toy-sym-0.40.yaml", "smoke", executor="direct")
    assert result.status == "done", result.message
    metrics = json.loads((result.out_dir / "metrics.json").read_text())
    assert metrics["toy_label_consistency_tdsm"] > metrics["toy_label_consistency_dsm"] + 0.15
    assert (result.out_dir / "toy.png").is_file()


def test_skipped_cells_are_reported_not_run_without_executing(kit_project):
    from nlkit.pipeline import run_cell

    [result] = run_cell("params/tdsm/cifar10-sym-0.40-dsm.yaml", "smoke", executor="direct")
    assert result.status == "not_run" and "not run under smoke" in result.message
    assert not (result.out_dir / "metrics.json").exists()


def test_inception_metrics_plumbing_with_a_stub_extractor():
    rng = np.random.default_rng(0)

    def stub(images):  # features that depend on the image, and logits
        x = images.reshape(len(images), -1)[:, :6].astype(np.float64) / 255
        return x + 0.01 * rng.normal(size=x.shape), rng.normal(size=(len(images), 10))

    real = rng.integers(0, 256, (60, 4, 4, 1), dtype=np.uint8)
    labels = np.repeat([0, 1], 30)
    out = M.inception_metrics(stub, real, labels, real.copy(), labels, 2, k=3, is_splits=2)
    assert out["fid"] < 0.05 and out["cw_fid"] < 0.5
    assert out["coverage"] > 80 and 50 < out["density"] < 150 and out["is"] >= 1
    assert {"cw_density", "cw_coverage"} <= set(out)


def test_volminnet_classifier_and_the_affine_score(tmp_path):
    torch.set_num_threads(1)
    cell = _tiny_cell("classifier")
    cell["transition"] = {"kind": "learn"}
    data = tdsm.prepare(cell, 0)
    assert data.transition == "learned by VolMinNet"
    out = tdsm.run(data, tdsm.Config.from_cell(cell), 0, tmp_path / "vol", progress=False)
    T = np.asarray(out.metrics["learned_transition"])
    np.testing.assert_allclose(T.sum(1), 1.0, atol=1e-3)
    tcell = {**_tiny_cell("tdsm"), "transition": {"kind": "learn"}}
    tdata = tdsm.prepare(tcell, 0, Roots(needs={"classifier": str(tmp_path / "vol" / "classifier.pt")}))
    np.testing.assert_allclose(tdata.S, T, atol=1e-4)  # TDSM uses the classifier's learned T, not the true S
    payload = torch.load(tmp_path / "vol" / "classifier.pt", weights_only=True)
    payload["transition_kind"] = "given"
    torch.save(payload, tmp_path / "given.pt")
    with pytest.raises(UserError, match="VolMinNet"):  # `learn` needs a classifier that learned its T
        tdsm.prepare(tcell, 0, Roots(needs={"classifier": str(tmp_path / "given.pt")}))
    # the affine score: D = (1 + a) D_tdsm - a D_dsm at every evaluation
    from nlkit.methods.tdsm.train import generate

    def const(v):
        return lambda x, sigma, y: torch.full_like(x, v)

    a, _ = generate(const(0.5), 2, 1, (1, 2, 2), 0, device="cpu", other=const(0.0), affine_weight=1.0)
    b, _ = generate(const(1.0), 2, 1, (1, 2, 2), 0, device="cpu")
    assert np.array_equal(a, b)


@pytest.mark.parametrize("fault", ["not a folder", "disk full"])
def test_an_unusable_evaluator_cache_warns_and_the_run_goes_on(tmp_path, monkeypatch, fault):
    """An unwritable or full NLKIT_CACHE used to fail every TDSM diffusion run; it costs a warning, as the
    feature cache's does."""
    import errno

    if fault == "not a folder":
        (tmp_path / "cache").write_text("a file where the cache folder should be")
    else:
        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(M, "save_model", full)
    monkeypatch.setenv("NLKIT_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 8, 8, 1), dtype=np.uint8)
    labels = np.arange(40) % 2
    with pytest.warns(UserWarning, match="cannot write the evaluator cache entry"):
        model, cached = M.clean_evaluator("digits", images, labels, 2, epochs=1, device="cpu")
    assert not cached and isinstance(model, torch.nn.Module)
