"""Encoders, the feature cache, the t-SNE helpers and the model checkpoint format."""

import numpy as np
import pytest
import torch

from nlkit.errors import UserError
from nlkit.encoders import cached, embed
from nlkit.models import SmallCNN, load_model, save_model
from nlkit.viz.tsne import knn_label_agreement, tsne_2d


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(40, 8, 8, 1), dtype=np.uint8)


def test_pixels_and_pca(images):
    assert embed(images, "pixels").shape == (40, 64)
    f = embed(images, "pca", n_components=5)
    assert f.shape == (40, 5) and f.dtype == np.float32
    np.testing.assert_array_equal(f, embed(images, "pca", n_components=5))


def test_model_encoder_matches_the_saved_network(tmp_path, images):
    torch.manual_seed(0)
    net = SmallCNN(num_classes=10, in_channels=1).eval()
    path = save_model(net, tmp_path / "m.pt", "small_cnn", num_classes=10, in_channels=1)
    f = embed(images, "model", model_path=path, device="cpu")
    with torch.no_grad():
        ref = net.features(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255).numpy()
    np.testing.assert_allclose(f, ref, atol=1e-5)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not an nlkit model"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(UserError, match="model_path"):
        embed(images, "model")


def test_clip_encoder_with_random_weights(images):
    pytest.importorskip("open_clip")
    f = embed(images[:4], "clip", clip_model="ViT-S-32", clip_pretrained=None, device="cpu")
    assert f.shape[0] == 4 and np.allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-4)
    with pytest.raises(UserError, match="unknown CLIP model"):
        embed(images[:1], "clip", clip_model="ViT-Q-99", clip_pretrained=None)


def test_clip_weights_offline_give_a_clear_error(images, monkeypatch):
    open_clip = pytest.importorskip("open_clip")
    from nlkit.errors import DataMissingError

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(DataMissingError, match="run once with internet access"):
        embed(images[:1], "clip", clip_model="ViT-B-32", clip_pretrained="openai")


def test_cache_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.ones((3, 2))

    a = cached({"encoder": "x", "n": 3}, compute, cache_root=tmp_path)
    b = cached({"encoder": "x", "n": 3}, compute, cache_root=tmp_path)
    c = cached({"encoder": "x", "n": 4}, compute, cache_root=tmp_path)
    assert len(calls) == 2 and np.array_equal(a, b) and c.shape == (3, 2)


def test_knn_agreement_and_tsne():
    rng = np.random.default_rng(0)
    clean = np.repeat(np.arange(3), 30)
    feats = np.eye(3)[clean] * 10 + rng.normal(size=(90, 3)) * 0.1
    noisy = clean.copy()
    noisy[::10] = (noisy[::10] + 1) % 3
    agree = knn_label_agreement(feats, noisy, clean, k=5)
    assert agree["knn_majority_equals_clean_on_noisy_samples"] == 1.0
    assert agree["noisy_label_equals_clean"] == pytest.approx(0.9)
    xy = tsne_2d(feats, perplexity=10, seed=0)
    assert xy.shape == (90, 2)


def test_clip_for_the_openai_tag_uses_quickgelu(monkeypatch):
    """The OpenAI CLIP weights were trained with QuickGELU; open_clip >= 2.25 builds plain GELU for a plain model
    name unless asked. The cells' construction, without weights (nothing is downloaded) and on the meta device
    (no memory, no initialisation time)."""
    open_clip = pytest.importorskip("open_clip")
    from open_clip.transformer import QuickGELU

    from nlkit.encoders.features import create_clip, load_clip
    from nlkit.errors import DataMissingError

    def activations(name, tag):
        with torch.device("meta"):
            model = create_clip(name, tag, device="meta", load_weights=False)
        return {type(m).__name__ for m in model.visual.modules() if isinstance(m, (QuickGELU, torch.nn.GELU))}

    assert activations("ViT-L-14", "openai") == {"QuickGELU"}
    assert activations("ViT-B-32", "laion2b_s34b_b79k") == {"GELU"}  # a tag trained with GELU keeps it
    # load_clip (the feature pass) goes through create_clip
    seen = {}

    def fake_create_model(name, **kwargs):
        seen.update(kwargs, name=name)
        raise RuntimeError("no download in tests")

    monkeypatch.setattr(open_clip, "create_model", fake_create_model)
    with pytest.raises(DataMissingError):
        load_clip("ViT-L-14", "openai", "cpu", precision="fp32")
    assert seen["name"] == "ViT-L-14" and seen["force_quick_gelu"] is True and seen["precision"] == "fp32"


def test_clip_input_is_not_clamped_after_the_resize():
    """Bicubic upsampling of a sharp edge overshoots [0, 1]; the LRA code feeds that as is (no clamp)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from nlkit.encoders.features import clip_features

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Module()
            self.visual.image_size = 64
            self.visual.conv1 = torch.nn.Conv2d(3, 1, 1)
            self.seen = []

        def encode_image(self, x):
            self.seen.append(x)
            return x.flatten(1)[:, :4]

    model = Recorder()
    img = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    img[:, :, 4:] = 255
    clip_features(img, model=model, device="cpu", normalize=False)
    std, mean = (torch.tensor(v).view(1, 3, 1, 1) for v in (OPENAI_DATASET_STD, OPENAI_DATASET_MEAN))
    x = model.seen[0] * std + mean
    assert float(x.max()) > 1.01 and float(x.min()) < -0.01


def test_clip_precision_per_setting():
    from nlkit.encoders.features import clip_precision

    assert clip_precision("code", "cuda") == "fp16" and clip_precision("code", "cpu") == "fp32"  # OpenAI clip.load
    assert clip_precision("bf16", "cuda") == "fp32"  # fp32 weights under bf16 autocast
    with pytest.raises(UserError):
        clip_precision("fp16", "cpu")
