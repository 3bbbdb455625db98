"""TDSM, diffusion and metric details checked against the original code (docs/tdsm.md, "Differences from the
original code"): the Inception score's sample order, the CAS classifiers, VolMinNet's learning rate, the UNet's
output initialisation, the augmentation draws, TF32 in the classifier, and the Inception metrics over all sampling
seeds."""

import numpy as np
import pytest
import torch

from nlkit.metrics import inception_score


def _class_blocks(per_class=500, k=10, seed=0):
    """Confident logits for k classes, generated class by class as the TDSM sampler does."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), per_class)
    return np.eye(k)[labels] * 8 + rng.normal(size=(len(labels), k)), labels


def test_inception_score_does_not_depend_on_sample_order():
    logits, _ = _class_blocks()
    shuffled = logits[np.random.default_rng(1).permutation(len(logits))]
    sorted_is, shuffled_is = inception_score(logits)[0], inception_score(shuffled)[0]
    assert sorted_is == pytest.approx(shuffled_is, rel=0.01)
    assert sorted_is > 9
    # splitting class-sorted samples in order gives each split one class: p(y) collapses and IS falls to about 1
    assert inception_score(logits, shuffle=False)[0] < 1.5


def test_inception_score_matches_torch_fidelity():
    metric_isc = pytest.importorskip("torch_fidelity.metric_isc")
    logits, _ = _class_blocks(per_class=103)
    ref = metric_isc.isc_features_to_metric(torch.as_tensor(logits), splits=10)
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-10)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-8)


# ---------------------------------------------------------------------------------------------- CAS classifiers

def test_cas_classifiers_match_the_original_networks():
    """Parameter counts and shapes of `ClassifierCAS` (torchvision ResNet-50, conv1 rebuilt) and
    `ClassifierCAS_CNN_MNIST`, training/networks.py of byeonghu-na/tdsm at 6a57a5452f8d1242790e1b968bf37ae57ef56e81,
    counted once from the original classes (parameters; buffers are the BatchNorm statistics)."""
    from nlkit.models import build_model

    def count(m):
        return sum(p.numel() for p in m.parameters()), sum(b.numel() for b in m.buffers())

    for channels, classes, params in ((3, 10, 23_528_522), (3, 100, 23_712_932), (1, 10, 23_522_250)):
        net = build_model("cas_resnet50", num_classes=classes, in_channels=channels)
        assert count(net) == (params, 53_173)
        assert tuple(net.body.conv1.weight.shape) == (64, channels, 7, 7) and net.body.conv1.bias is None
        assert net.body.conv1.stride == (2, 2) and net.body.conv1.padding == (3, 3)
        assert net(torch.zeros(2, channels, 32, 32)).shape == (2, classes)
    for classes, params in ((10, 33_738), (100, 218_148)):
        cnn = build_model("cas_cnn_mnist", num_classes=classes, in_channels=1, img_resolution=32)
        assert count(cnn) == (params, 0)
    cnn = build_model("cas_cnn_mnist", num_classes=10, in_channels=1, img_resolution=32)
    assert [tuple(p.shape) for p in cnn.parameters()] == [(16, 1, 5, 5), (16,), (32, 16, 5, 5), (32,), (10, 2048), (10,)]
    assert build_model("cas_cnn_mnist", num_classes=10, in_channels=1, img_resolution=8)(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_cas_classifier_is_chosen_per_dataset():
    from nlkit.methods.tdsm import metrics as M
    from nlkit.methods.tdsm.train import TDSMConfig
    from nlkit.pipeline import find_cells, load_cell

    assert M.default_cas_arch("mnist") == "cas_cnn_mnist" and M.default_cas_arch("digits") == "cas_cnn_mnist"
    assert M.default_cas_arch("cifar10") == "cas_resnet50" and M.default_cas_arch("cifar100") == "cas_resnet50"
    for path in find_cells("tdsm"):  # no cell overrides the per-dataset choice
        for profile in ("smoke", "cpu", "quick", "paper"):
            assert TDSMConfig.from_cell(load_cell(path, profile)).cas_arch is None


# ---------------------------------------------------------------------------------------------- VolMinNet lr

def test_classifier_learning_rate_schedules():
    from nlkit.methods.tdsm.train import classifier_lr

    milestones = [1_500_000, 3_000_000, 7_500_000, 7_600_000]
    # VolMinNet (training/classifier_loop.py): the step schedule alone, no warm-up
    for nimg, factor in ((0, 1.0), (1024, 1.0), (1_499_999, 1.0), (1_500_000, 0.1), (2_999_999, 0.1),
                         (3_000_000, 0.01), (7_499_999, 0.01), (7_500_000, 1.0), (50_000_000, 1.0)):
        assert classifier_lr(1e-3, nimg, 10_000_000, milestones) == pytest.approx(1e-3 * factor)
    # forward-corrected CE: EDM's linear warm-up over 10 Mimg
    for nimg, factor in ((0, 0.0), (1_000_000, 0.1), (10_000_000, 1.0), (20_000_000, 1.0)):
        assert classifier_lr(1e-3, nimg, 10_000_000) == pytest.approx(1e-3 * factor)


# ---------------------------------------------------------------------------------------------- initialisation

def test_unet_output_layer_starts_near_zero_as_in_edm():
    from nlkit.diffusion import EDMPrecond, build_unet

    torch.manual_seed(0)
    unet = build_unet("ddpmpp_tiny", img_resolution=8, in_channels=1, label_dim=3, model_channels=8,
                      channel_mult=[1, 2], attn_resolutions=[4], dropout=0.0)
    w = unet.out_conv.weight
    bound = (6 / (w.shape[1] * 9 + w.shape[0] * 9)) ** 0.5      # Xavier-uniform bound of a 3x3 conv
    assert 0.5e-5 * bound < w.abs().max() <= 1e-5 * bound       # EDM's init_zero: Xavier x 1e-5
    assert not unet.out_conv.bias.any()
    x, sigma = torch.randn(4, 1, 8, 8), torch.full((4,), 1.0)
    out = EDMPrecond(unet)(x, sigma, torch.eye(3)[[0, 1, 2, 0]])
    c_skip = 0.25 / (1.0 + 0.25)
    torch.testing.assert_close(out, c_skip * x, atol=1e-4, rtol=0)  # D = c_skip x at initialisation


def test_classifier_noise_embedding_init_as_edm_linear():
    from nlkit.diffusion import build_classifier

    torch.manual_seed(0)
    clf = build_classifier("cnn_mnist", num_classes=10, in_channels=1, img_resolution=32, augment_dim=9)
    for layer in (clf.embed.layer0, clf.embed.layer1, clf.embed.map_augment):
        fan_out, fan_in = layer.weight.shape
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert float(layer.weight.detach().std()) == pytest.approx(bound / 3 ** 0.5, rel=0.06)   # Xavier-uniform spread
        assert layer.bias is None or not layer.bias.any()   # zero biases, as EDM's Linear (init_bias 0)


# ---------------------------------------------------------------------------------------------- augmentation

def test_augment_pipe_draws_as_edm():
    from nlkit.diffusion import AugmentPipe

    n = 4000
    x = torch.zeros(n, 1, 4, 4)
    only = dict(xflip=0, yflip=0, scale=0, rotate_frac=0, aniso=0, translate_frac=0)
    # scale alone at p = 1: EDM draws w ~ N(0, 1) then the gate; the label is w itself (not w x scale_std)
    _, labels = AugmentPipe(p=1.0, **{**only, "scale": 1})(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(labels[:, 2], torch.randn(n, generator=torch.Generator().manual_seed(0)))
    assert not labels[:, [0, 1, 3, 4, 5, 6, 7, 8]].any()
    # anisotropy alone: the label is (w cos r, w sin r) with raw w ~ N(0, 1); the frame is rotated half the time
    _, labels = AugmentPipe(p=1.0, **{**only, "aniso": 1})(x, torch.Generator().manual_seed(1))
    w = torch.hypot(labels[:, 5], labels[:, 6])
    assert 0.9 < w.pow(2).mean() < 1.1
    rotated = (labels[:, 6] != 0).float().mean()
    assert 0.45 < rotated < 0.55
    # translation: raw N(0, 1) draws; the default pipe (p = 0.12) gates each augmentation independently
    _, labels = AugmentPipe(p=1.0, **{**only, "translate_frac": 1})(x, torch.Generator().manual_seed(2))
    assert 0.9 < labels[:, 7:].pow(2).mean() < 1.1
    _, labels = AugmentPipe(p=0.12)(x, torch.Generator().manual_seed(3))
    assert (labels[:, 0] != 0).float().mean() == pytest.approx(0.5, abs=0.03)    # xflip 1e8: always drawn
    assert (labels[:, 2] != 0).float().mean() == pytest.approx(0.12, abs=0.02)
    assert (labels[:, 5] != 0).float().mean() == pytest.approx(0.12, abs=0.02)


def test_augment_pipe_geometry():
    from nlkit.diffusion import AugmentPipe

    # a quarter turn: EDM's rotation labels (cos - 1, sin) = (-1, 1) and its G = R(-angle) in y-down pixels
    # take the pixel at (row 0, col 0) of a 2x2 image to (row 1, col 0)
    pipe = AugmentPipe(p=1.0, xflip=0, yflip=0, scale=0, rotate_frac=1, aniso=0, translate_frac=0)
    pipe.draw = lambda n, device, generator=None: {
        "xflip": torch.zeros(n), "yflip": torch.zeros(n), "scale": torch.zeros(n),
        "rotate": torch.full((n,), np.pi / 2), "aniso": torch.zeros(n), "aniso_angle": torch.zeros(n),
        "translate": torch.zeros(2, n)}
    img = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    out, labels = pipe(img)
    torch.testing.assert_close(labels[0, 3:5], torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.0], [1.0, 0.0]]]]), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- precision

def test_precision_per_profile():
    from nlkit.methods.tdsm.train import TDSMConfig
    from nlkit.pipeline import find_cells, load_cell

    expected = {"smoke": ("fp32", False), "cpu": ("fp32", False), "quick": ("bf16", True), "paper": ("fp32", False)}
    for path in find_cells("tdsm"):
        for profile, (precision, tf32) in expected.items():
            cfg = TDSMConfig.from_cell(load_cell(path, profile))
            assert (cfg.precision, cfg.tf32) == (precision, tf32), (path.stem, profile)


@pytest.mark.parametrize("tf32", [False, True])
def test_classifier_training_sets_tf32(tf32):
    from nlkit.methods.tdsm.train import TDSMConfig, train_classifier

    torch.set_num_threads(1)
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = not tf32
    try:
        cfg = TDSMConfig(cls_batch_size=16, cls_duration_kimg=0.016, kimg_per_tick=0.016, cls_warmup_kimg=0.0,
                         augment_p=0.0, tf32=tf32)
        images = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1), dtype=np.uint8)
        train_classifier(images, np.arange(32) % 2, np.eye(2), cfg, 0, device="cpu", progress=False)
        assert torch.backends.cuda.matmul.allow_tf32 is tf32 and torch.backends.cudnn.allow_tf32 is tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


# ---------------------------------------------------------------------------------------------- Inception metrics

def test_inception_metrics_are_averaged_over_every_sampling_seed(monkeypatch):
    import pandas as pd

    import nlkit.metrics
    from nlkit.methods import tdsm
    from nlkit.methods.tdsm import metrics as M
    from nlkit.methods.tdsm.train import DiffusionRun, TDSMConfig

    k, per_class, rng = 2, 20, np.random.default_rng(0)
    real = rng.integers(0, 256, (60, 4, 4, 1), dtype=np.uint8)
    real_labels = np.repeat([0, 1], 30)
    history = pd.DataFrame({"kimg": [0.1], "kimg_per_s": [1.0], "extra_passes_per_sample": [0.0]})
    monkeypatch.setattr(tdsm, "train_diffusion", lambda *a, **kw: DiffusionRun(history, None, None, True, 100))

    def fake_generate(denoiser, num_classes, per_class, shape, seed, **kw):  # seed s: images offset by 10 s
        labels = np.repeat(np.arange(num_classes), per_class)
        images = np.clip(rng.integers(0, 200, (len(labels),) + shape[1:] + shape[:1]) + 10 * seed, 0, 255)
        return images.astype(np.uint8), labels

    monkeypatch.setattr(tdsm, "generate", fake_generate)
    ref = M.Reference(None, real, real_labels, None, real[:10], real_labels[:10], 0.9, k)
    monkeypatch.setattr(M, "build_reference", lambda *a, **kw: ref)
    cas_archs = []

    def fake_scores(ref, images, labels, *, cas_arch, **kw):
        cas_archs.append(cas_arch)
        return {"label_consistency": 1.0, "label_consistency_per_class": [1.0, 1.0], "cas": 50.0,
                "feature_fid": 1.0, "cw_feature_fid": 1.0, "cw_feature_fid_per_class": [1.0, 1.0]}

    monkeypatch.setattr(M, "score_samples", fake_scores)
    seen = []

    def extractor(images):  # a fake Inception: features from the pixels, logits from the mean brightness
        seen.append(int(images.mean()))
        f = images.reshape(len(images), -1)[:, :6].astype(np.float64) / 255
        return f, np.stack([f.mean(1) * 10, -f.mean(1) * 10, np.zeros(len(f))], 1)

    monkeypatch.setattr(nlkit.metrics, "load_inception", lambda path, device=None: extractor)
    data = tdsm.TDSMData("cifar10", real, real_labels, real_labels, real[:10], real_labels[:10], ["a", "b"],
                         np.eye(k), np.eye(k), "S = I")
    cfg = TDSMConfig(samples_per_class=per_class, sampling_seeds=[0, 1, 2], inception_weights="fake.pth",
                     method="dsm")
    out = tdsm.run(data, cfg, 0, None, device="cpu", progress=False)
    per_seed = out.metrics["per_sampling_seed_inception"]
    assert len(per_seed) == 3 and len(seen) == 6   # real and generated features for each of the 3 seeds
    for key in ("fid", "is", "density", "coverage", "cw_fid"):
        values = [p[key] for p in per_seed]
        assert out.metrics[key] == pytest.approx(np.mean(values)) and out.metrics[f"{key}_min"] == min(values)
    assert len({round(p["fid"], 6) for p in per_seed}) == 3
    assert cas_archs == ["cas_resnet50"] * 3 and out.metrics["cas_arch"] == "cas_resnet50"
