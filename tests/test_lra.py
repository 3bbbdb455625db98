"""LRA-Diffusion on CPU (docs/lra-diffusion.md §10): schedules, DDIM, decode, retrieval, SimCLR loading, a smoke cell."""

import json

import numpy as np
import pytest
import torch

from nlkit.errors import UserError
from nlkit.methods import lra_diffusion as lra
from nlkit.methods.lra_diffusion.retrieval import LabelSampler, candidate_labels, knn, knn_faiss, knn_torch, neighbour_table


def test_cosine_alphas_at_the_ddim_timesteps():
    a = lra.alphas_cumprod("cosine")
    # docs/lra-diffusion.md §2.7; the spec's 0.0232 at t = 901 is 0.023145 rounded twice, the other nine agree to 4 decimals
    expected = [0.02315, 0.0922, 0.2006, 0.3379, 0.4907, 0.6445, 0.7844, 0.8968, 0.9711, 0.9999]
    np.testing.assert_allclose([float(a[t]) for t in lra.DDIM_TIMESTEPS], expected, atol=6e-5)
    assert float(a[0]) == pytest.approx(0.99996, abs=1e-5)
    betas = lra.beta_schedule("cosine")
    assert float(betas[0]) == pytest.approx(4.1e-5, rel=0.05) and float(betas[-1]) == pytest.approx(0.999)
    lin = lra.beta_schedule("linear")
    assert float(lin[0]) == pytest.approx(1e-4) and float(lin[-1]) == pytest.approx(0.02)


def test_ddim_round_trip_with_an_oracle_noise_predictor():
    a = lra.alphas_cumprod().float()
    y0 = torch.nn.functional.one_hot(torch.tensor([3, 0, 7, 9]), 10).float()

    def oracle(y_t, t):
        return (y_t - a[t].sqrt()[:, None] * y0) / (1 - a[t]).sqrt()[:, None]

    y = lra.ddim_sample(oracle, y0.shape, a)
    # the last step lands on alpha_bar_0 = 0.99996, so y = sqrt(a0) y0 + sqrt(1 - a0) eps: within 1e-2 of y0
    torch.testing.assert_close(y, y0, atol=1e-2, rtol=0)
    assert lra.decode(y).tolist() == [3, 0, 7, 9]


def test_decode_rule_differs_from_argmax():
    y = torch.tensor([[1.6, 0.95, 0.0]])
    assert lra.decode(y, "closest_to_one").item() == 1
    assert lra.decode(y, "argmax").item() == 0


def test_antithetic_timesteps():
    t = lra.antithetic_timesteps(7, torch.Generator().manual_seed(0))
    assert len(t) == 7 and t.min() >= 0 and t.max() <= 999
    half = 7 // 2 + 1
    assert torch.equal(t[:half][: 7 - half] + t[half:], torch.full((7 - half,), 999))


def test_learning_rate_schedule():
    assert lra.learning_rate(30) == pytest.approx(0.998e-3, abs=1e-6)
    assert lra.learning_rate(200) == pytest.approx(0.908e-3, abs=1e-6)
    assert lra.learning_rate(2.5) == pytest.approx(0.5e-3)


def test_denoiser_size_and_shapes():
    model = lra.LRAModel(10, 2048, hidden=512)
    n = sum(p.numel() for p in model.denoiser.parameters())
    assert 3.0e6 < n < 3.2e6  # about 3.1M for C = 10, D = 2048 (docs/lra-diffusion.md §2.4)
    assert 21.4e6 < sum(p.numel() for p in model.encoder.parameters()) < 21.7e6
    model.eval()
    x_embed = model.embed(torch.zeros(2, 3, 32, 32), torch.zeros(2, 2048))
    out = model.denoiser(x_embed, torch.zeros(2, 10), torch.zeros(2, 2048), torch.tensor([0, 999]))
    assert out.shape == (2, 10)


# ---- retrieval -----------------------------------------------------------------------------------------------

def test_faiss_and_torch_return_the_same_neighbours():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    db = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(50, 16)).astype(np.float32)
    _, a = knn_faiss(db, q, 10)
    _, b = knn_torch(db, q, 10, chunk=7)
    np.testing.assert_array_equal(a, b)
    table = neighbour_table(db, 10, "code")
    assert (table[:, 0] == np.arange(500)).all()  # the query itself is neighbour 1
    excl = neighbour_table(db, 10, "exclude", backend="torch")
    assert not (excl == np.arange(500)[:, None]).any() and excl.shape == (500, 10)


def test_candidates_and_count_weights_as_coded():
    noisy = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    feats = np.arange(8, dtype=np.float32)[:, None]
    nbrs = neighbour_table(feats, 3, "code", backend="torch")
    cands = candidate_labels(nbrs, noisy, "code")
    assert cands.shape == (8, 4)
    assert (cands[:, 0] == noisy).all() and (cands[:, -1] == noisy).all()  # own label twice
    sampler = LabelSampler(cands, seed=0)
    labels, weights = sampler.sample(torch.arange(8))
    counts = (torch.as_tensor(cands) == labels[:, None]).sum(1)
    assert ((counts >= 1) & (counts <= 4)).all()
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    torch.testing.assert_close(weights, counts.float() / counts.sum())
    assert candidate_labels(nbrs, noisy, "exclude").shape == (8, 3)


def test_k10_code_retrieval_has_eleven_candidates():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(100, 4)).astype(np.float32)
    noisy = rng.integers(0, 5, 100)
    cands = candidate_labels(neighbour_table(feats, 10, "code", backend="torch"), noisy)
    assert cands.shape == (100, 11)
    assert ((cands == noisy[:, None]).sum(1) >= 2).all()  # 2/11 of the mass is the own label


def test_dynamic_weighting_gives_the_own_label_half_the_mass():
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(60, 4)).astype(np.float32)
    dist, nbrs = knn(feats, feats, 5, backend="torch")
    cands = candidate_labels(nbrs, np.arange(60) % 3)
    sampler = LabelSampler(cands, distances=dist, dynamic=True)
    torch.testing.assert_close(sampler.probs[:, -1], torch.full((60,), 0.5))
    torch.testing.assert_close(sampler.probs.sum(1), torch.ones(60))
    with pytest.raises(UserError, match="distances"):
        LabelSampler(cands, dynamic=True)


# ---- SimCLR --------------------------------------------------------------------------------------------------

def test_simclr_checkpoint_keys_are_checked(tmp_path):
    from nlkit.encoders.simclr import SimCLRModel, load_simclr, save_simclr

    model = SimCLRModel("resnet18")
    path = save_simclr(model, tmp_path / "ok.pt")
    loaded = load_simclr(path)
    assert loaded.arch == "resnet18"
    # the published layout is a bare state dict (possibly with DataParallel's prefix)
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "dp.pt")
    assert load_simclr(tmp_path / "dp.pt", arch="resnet18").feature_dim == 512
    torch.save({k.replace("f.", "encoder.", 1): v for k, v in model.state_dict().items()}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="keys missing"):
        load_simclr(tmp_path / "bad.pt", arch="resnet18")


def test_simclr_resnet9_keeps_its_width_through_save_and_load(tmp_path):
    """The cpu profile's narrow ResNet-9 encoder: a reload must rebuild the same width (128-d features at 0.25),
    and the switches train it in channels_last under bf16 autocast."""
    from nlkit.encoders.simclr import SimCLRModel, load_simclr, save_simclr, train_simclr

    with pytest.raises(UserError, match="resnet9 only"):
        SimCLRModel("resnet18", width_mult=0.5)
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    model, loop = train_simclr(images, arch="resnet9", width_mult=0.25, epochs=1, batch_size=32, progress=False,
                               bf16=True, channels_last=True)
    assert model.feature_dim == 128 and loop.completed
    convs = [p for p in model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    loaded = load_simclr(save_simclr(model, tmp_path / "r9.pt"))
    assert (loaded.arch, loaded.width_mult, loaded.feature_dim) == ("resnet9", 0.25, 128)
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(loaded.features(x), model.features(x))


def test_simclr_trains_and_gives_normalised_features():
    from nlkit.data import load_dataset
    from nlkit.encoders.simclr import simclr_features, train_simclr

    ds = load_dataset("digits")
    model, loop = train_simclr(ds.train_images[:256], arch="small_cnn", epochs=2, batch_size=64, progress=False,
                               mean=(0.5,), std=(0.5,))
    assert len(loop.history) == 2 and np.isfinite(loop.history[-1]["loss"]) and loop.completed
    f = simclr_features(model, ds.train_images[:10], mean=(0.5,), std=(0.5,))
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-5)


# ---- end to end ----------------------------------------------------------------------------------------------

def test_training_learns_on_digits_and_reports_the_protocol():
    data = lra.prepare_data({"dataset": "digits", "val_size": 150, "noise": {"model": "pmd", "rate": 0.35, "seed": 0}})
    feats = lra.encoder_features(data, {"name": "pca", "dim": 64}, cache=False)
    cfg = lra.LRAConfig(epochs=6, warmup_epochs=1, eval_every=2, hidden=64, image_encoder="none", batch_size=32,
                        peak_lr=0.01)
    run = lra.train_lra(data, feats, cfg, seed=0, progress=False)
    m = run.metrics
    assert run.history["loss"].iloc[-1] < run.history["loss"].iloc[0]
    assert m["best_val_epoch"] in (3, 5) and m["acc_val_selected"] is not None  # 0-based 2 and 4, as the code
    assert 0 <= m["retrieval_purity"] <= 100 and m["knn_majority_acc"] > 50 and m["linear_probe_acc"] > 50
    evaluated = run.history.dropna(subset=["test_acc"])
    assert m["acc_best_test"] == evaluated["test_acc"].max()
    # epoch 6 is not validated (0-based 5), yet the test curve and the best test include it
    assert list(evaluated["epoch"]) == [3, 5, 6] and evaluated["test_acc"].iloc[-1] == m["acc_last"]
    assert m["acc_best_test"] >= max(m["acc_last"], m["acc_val_selected"])
    # per_sample.csv: the retrieved labels' vote share for the given label, their majority, the final model's class
    verdicts = lra.per_sample_verdicts(run, data)
    assert len(verdicts) == len(data.noisy) and len(run.train_pred) == len(data.noisy)
    cands = run.candidates
    i = int(np.argmin(verdicts["vote_share"]))                       # the least supported given label
    assert verdicts["vote_share"][i] == np.mean(cands[i] == data.noisy[i])
    assert np.sum(cands[i] == verdicts["retrieved_label"][i]) == np.bincount(cands[i]).max()
    np.testing.assert_allclose(verdicts["issue_score"], 1 - verdicts["vote_share"])
    assert (verdicts["suspected_issue"] == (verdicts["predicted"] != verdicts["given"])).all()
    # the neighbours' votes rank the wrong labels above the right ones
    from nlkit.noise.issues import detection_quality

    assert detection_quality(verdicts)["roc_auc"] > 0.6


@pytest.mark.extended  # make test runs LRA's cells through the pipeline in test_run_identity.py
def test_smoke_cell_through_nlkit_run(kit_project):
    from nlkit.pipeline import run_cell

    [result] = run_cell(kit_project / "params/lra_diffusion/cifar10-pmd_a30-0.35-clip.yaml", "smoke")
    assert result.status == "done", result.message
    m = json.loads((result.out_dir / "metrics.json").read_text())
    assert m["variant"] == "LRA-MLP (cached features)" and m["params"]["encoder"]["name"] == "pca"
    assert all(np.isfinite(m[k]) for k in ("acc_val_selected", "acc_last", "knn_majority_acc", "linear_probe_acc"))
    assert (result.out_dir / "validation.png").is_file() and (result.out_dir / "per_class.png").is_file()


def test_clip_features_path_with_random_weights():
    """The CLIP path as an online user runs it, with random weights (none can be downloaded here)."""
    pytest.importorskip("open_clip")
    rng = np.random.default_rng(0)
    imgs = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    data = lra.LRAData(imgs(12), rng.integers(0, 3, 12), rng.integers(0, 3, 12), imgs(4), rng.integers(0, 3, 4),
                       imgs(5), rng.integers(0, 3, 5), ["a", "b", "c"], lra.CIFAR_MEAN, lra.CIFAR_STD, "original", {})
    feats = lra.encoder_features(data, {"name": "clip", "model": "ViT-S-32", "pretrained": None}, cache=False,
                                 device="cpu")
    assert feats["train"].shape[0] == 12 and feats["test"].shape[0] == 5
    assert not np.allclose(np.linalg.norm(feats["train"], axis=1), 1.0)  # raw encode_image, as the code


# ---- fidelity to the public code ----------------------------------------------------------------------------

def test_validation_follows_the_codes_zero_based_epochs():
    """train_CIFAR.py validates after 0-based epoch e when e % 5 == 0 and e >= warmup: 1-based 6, 11, ..."""
    from nlkit.methods.lra_diffusion.train import validation_epochs

    assert validation_epochs(200, 5, 5) == list(range(6, 200, 5))  # 6 .. 196: epoch 200 is not validated
    assert validation_epochs(31, 5, 5) == [6, 11, 16, 21, 26, 31]  # the HEAD-compat cells
    assert validation_epochs(40, 5, 5)[:2] == [6, 11] and validation_epochs(3, 5, 5) == [3]


def _digits_run(monkeypatch, **changes):
    from nlkit import data as nlkit_data

    made = []
    real = nlkit_data.DeviceBatcher

    def recording(images, **kwargs):
        made.append(kwargs)
        return real(images, **kwargs)

    monkeypatch.setattr(nlkit_data, "DeviceBatcher", recording)
    data = lra.prepare_data({"dataset": "digits", "val_size": 150, "noise": {"model": "pmd", "rate": 0.35, "seed": 0}})
    feats = lra.encoder_features(data, {"name": "pca", "dim": 16}, cache=False)
    cfg = lra.LRAConfig(**{**dict(epochs=1, warmup_epochs=0, eval_every=1, hidden=16, image_encoder="none",
                                  batch_size=40), **changes})
    run = lra.train_lra(data, feats, cfg, seed=0, progress=False, baselines=False)
    return run, made, data, feats


def test_evaluation_uses_the_training_batch_size(monkeypatch):
    """The code's val/test loaders share the training batch size (200); with head_compat the untrained encoder's
    BN normalises by each evaluation batch, so the size matters. The third unshuffled pass is the training set's,
    for per_sample.csv, at the same size."""
    _, made, _, _ = _digits_run(monkeypatch, batch_size=40)
    assert [m["batch_size"] for m in made if not m["shuffle"]] == [40, 40, 40]


def test_dynamic_knn_weighting_reaches_the_per_batch_retrieval():
    """With real_fp the labels come from batch_retrieval; the dynamic weighting must apply there, on the plain
    Euclidean distances of torch.cdist."""
    g = torch.Generator().manual_seed(0)
    database = torch.randn(50, 6, generator=g)
    fp = database[:8] + 0.3 * torch.randn(8, 6, generator=g)
    noisy = torch.arange(50) % 5
    sampler = LabelSampler(np.zeros((50, 11), dtype=np.int64), distances=np.ones((50, 10)), dynamic=True)
    seen = {}

    def draw(cands, probs=None):
        seen["probs"] = probs
        return cands[:, 0], torch.full((len(cands),), 1 / len(cands))

    sampler.draw = draw
    lra.batch_retrieval(fp, database, noisy, torch.arange(8), 10, sampler)
    plain = torch.cdist(fp, database).topk(10, largest=False).values
    assert seen["probs"] is not None
    from nlkit.methods.lra_diffusion.retrieval import neighbour_probs

    torch.testing.assert_close(seen["probs"], neighbour_probs(plain))
    # exp(-d / mean d) of plain distances: the nearest neighbour's share is not that of squared ones
    w = torch.exp(-plain / plain.mean(1, keepdim=True))
    torch.testing.assert_close(seen["probs"][:, :10], 0.5 * w / w.sum(1, keepdim=True))


def test_dynamic_knn_weighting_of_the_cached_table_uses_plain_distances(monkeypatch):
    from nlkit.methods.lra_diffusion import retrieval

    captured = {}
    real = retrieval.LabelSampler

    def recording(cands, **kwargs):
        captured.update(kwargs)
        return real(cands, **kwargs)

    monkeypatch.setattr(retrieval, "LabelSampler", recording)
    _, _, data, feats = _digits_run(monkeypatch, dynamic_knn=True)
    x = torch.as_tensor(feats["train"])
    plain = torch.cdist(x, x).topk(10, largest=False).values
    # (cdist's self-distance is ~1e-3 of rounding where the exact search gives 0)
    np.testing.assert_allclose(captured["distances"], plain.numpy(), rtol=1e-4, atol=5e-3)


def test_simclr_cells_recompute_fp_per_batch_under_the_paper_profile():
    """train_CIFAR.py's SimCLR branch sets real_fp = True; its CLIP branch False."""
    from nlkit.pipeline.params import find_cells, load_cell

    for path in find_cells("lra_diffusion"):
        cfg = lra.Config.from_cell(load_cell(path, "paper"))
        assert cfg.real_fp == ("-simclr" in path.stem), path.stem
        assert not lra.Config.from_cell(load_cell(path, "smoke")).real_fp  # PCA features: no network


def test_precision_per_profile():
    """paper = the code's precision (fp32 training, CLIP fp16 weights on CUDA via encoder precision 'code');
    bf16 is a named switch, on in quick."""
    from nlkit.pipeline.params import load_cell

    cell = "params/lra_diffusion/cifar10-pmd-0.35-clip.yaml"
    assert lra.Config.from_cell(load_cell(cell, "paper")).bf16 is False
    assert lra.Config.from_cell(load_cell(cell, "quick")).bf16 is True
    assert lra.Config.from_cell(load_cell(cell, "cpu")).bf16 is False  # CPU bf16 measured no faster for its MLP
    from nlkit.encoders.features import clip_precision

    precision = load_cell(cell, "paper")["encoder"].get("precision") or "code"
    assert clip_precision(precision, "cuda") == "fp16"


def _authors_simclr_state(seed: int = 0) -> tuple[dict, torch.nn.Module]:
    """A state dict in the layout of the authors' SimCLR_128_<dataset>.pt, built from the architecture description
    (utils/model_SimCLR.py: torchvision's ResNet-50 children with conv1 -> 3x3 s1 p1, without maxpool and fc, as
    `f`; `g` = Linear(2048, 512, no bias), BN, ReLU, Linear(512, 128)), randomly initialised; and the backbone as a
    plain torchvision network for reference features."""
    import torchvision
    from torch import nn

    torch.manual_seed(seed)
    net = torchvision.models.resnet50(weights=None)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    for m in net.modules():  # non-trivial BN statistics, so a layout mix-up would show in the features
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    index = {"conv1": 0, "bn1": 1, "layer1": 3, "layer2": 4, "layer3": 5, "layer4": 6}  # relu 2, avgpool 7
    state = {f"f.{index[k.split('.')[0]]}.{k.split('.', 1)[1]}": v for k, v in net.state_dict().items()
             if k.split(".")[0] in index}
    head = nn.Sequential(nn.Linear(2048, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 128))
    state.update({f"g.{k}": v for k, v in head.state_dict().items()})
    return state, net.eval()


def _tiny_cifar(n_train=6, n_val=4, n_test=3):
    rng = np.random.default_rng(0)
    imgs = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    return lra.LRAData(imgs(n_train), rng.integers(0, 10, n_train), rng.integers(0, 10, n_train), imgs(n_val),
                       rng.integers(0, 10, n_val), imgs(n_test), rng.integers(0, 10, n_test), list("abcdefghij"),
                       lra.CIFAR_MEAN, lra.CIFAR_STD, "original", {})


def test_simclr_cells_use_the_authors_weights_when_present(tmp_path, monkeypatch):
    """A paper-profile SimCLR cell takes SimCLR_128_cifar10.pt from <data root>/weights (its sha256 in the run
    key), reads it with every key checked, and computes the same features as the network it describes; without
    the file the kit-trained encoder of `needs` is used. Metrics say which ran."""
    import hashlib

    from nlkit.encoders.simclr import SimCLRModel, save_simclr
    from nlkit.methods import Roots
    from nlkit.pipeline.deps import dependency_cell, resolve_needs
    from nlkit.pipeline.params import load_cell, params_hash
    from nlkit.pipeline.runner import run_dir

    monkeypatch.delenv("NLKIT_WEIGHTS_ROOT", raising=False)
    monkeypatch.setenv("NLKIT_DATA_ROOT", str(tmp_path / "default-data"))
    cell = load_cell("params/lra_diffusion/cifar10-pmd-0.35-simclr.yaml", "paper")
    data = _tiny_cifar()
    monkeypatch.setattr(lra, "prepare_data", lambda *a, **k: data)

    # the kit's own encoder: a finished simclr/cifar10 run under a throw-away outputs root
    outputs = tmp_path / "outputs"
    dep = dependency_cell("simclr/cifar10", "paper")
    folder = run_dir(dep, 0, outputs)
    folder.mkdir(parents=True)
    torch.manual_seed(1)
    save_simclr(SimCLRModel("small_cnn"), folder / "simclr.pt")
    (folder / "metrics.json").write_text(json.dumps({"params_hash": params_hash(dep, 0),
                                                     "artefacts": {"encoder": "simclr.pt"}}))
    data_root = tmp_path / "data"
    kit = resolve_needs(cell, outputs, data_root)
    assert kit.paths["encoder"] == folder / "simclr.pt" and kit.fingerprint["encoder"]["cell"] == "simclr/cifar10"
    inputs = lra.prepare(cell, 0, Roots(needs={k: str(v) for k, v in kit.paths.items()}), device="cpu")
    assert lra.encoder_metrics(inputs.encoder)["fp_weights_source"] == "kit-trained"

    # the authors' file under <data root>/weights: used in place of the kit's run
    state, reference = _authors_simclr_state()
    (data_root / "weights").mkdir(parents=True)
    published = data_root / "weights" / "SimCLR_128_cifar10.pt"
    torch.save(state, published)
    found = resolve_needs(cell, outputs, data_root)
    assert found.paths["encoder"] == published
    assert found.fingerprint["encoder"] == {"published": "SimCLR_128_cifar10.pt",
                                            "sha256": hashlib.sha256(published.read_bytes()).hexdigest()}
    inputs = lra.prepare(cell, 0, Roots(needs={k: str(v) for k, v in found.paths.items()}), device="cpu")
    m = lra.encoder_metrics(inputs.encoder)
    assert m["fp_weights"] == "SimCLR_128_cifar10.pt" and m["fp_weights_source"].startswith("published")
    assert m["fp_weights_arch"] == "resnet50" and inputs.fp_model is not None  # real_fp: the network per batch
    mean = torch.tensor(lra.CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(lra.CIFAR_STD).view(1, 3, 1, 1)
    x = (torch.from_numpy(data.val_images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        body = torch.nn.Sequential(*[c for n, c in reference.named_children() if n not in ("maxpool", "fc")])
        expected = torch.nn.functional.normalize(torch.flatten(body(x), 1), dim=-1)
    np.testing.assert_allclose(inputs.features["val"], expected.numpy(), atol=1e-5)
