"""LRA-Diffusion against the public code's outputs (tests/golden/lra_diffusion/, made by
tests/golden/make_lra_diffusion.py from puar-playground/LRA-diffusion 231e587; see its README).

Everything is float32 on the CPU. Every tensor is compared with a tolerance scaled to its own magnitude,
|kit - orig| <= rtol |orig| + atol_rel max|orig| (tests/golden_compare.py): TOL (rtol 1e-5, atol_rel 1e-6) for
network outputs, weights after training steps and the DDIM output; the schedules and q_sample within 2e-6 of their
largest value (they differ by float32 rounding of the cumulative product); distances and retrieval weights to
rtol 1e-6; neighbours, candidate labels, drawn labels and decoded classes exactly (integers).
"""

import functools
import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nlkit.encoders.simclr import load_simclr
from nlkit.methods import lra_diffusion as lra
from nlkit.methods.lra_diffusion.diffusion import q_sample, weighted_eps_loss
from nlkit.methods.lra_diffusion.original_layout import (
    denoiser_from_original,
    load_original_weights,
    resnet34_from_original,
)
from nlkit.methods.lra_diffusion.data import LRAData
from nlkit.methods.lra_diffusion.retrieval import (
    LabelSampler,
    candidate_labels,
    faiss_available,
    knn,
    neighbour_table,
)
from nlkit.methods.lra_diffusion.train import LRAConfig, batch_retrieval, ddim_predict

GOLDEN = Path(__file__).parent / "golden" / "lra_diffusion"
sys.path.insert(0, str(GOLDEN.parent))
from golden_compare import assert_close_scaled  # noqa: E402
from lra_weight_recipe import GridFeatures, recipe_state_dict  # noqa: E402

# |kit - orig| <= rtol |orig| + atol_rel max|orig|, per tensor
TOL = dict(rtol=1e-5, atol_rel=1e-6)
# outputs of the ResNet-34 image encoder (34 convolutions, BN in train mode): convolution kernels of other
# instruction sets (AVX2 against AVX-512) round differently, measured up to 7e-6 of the tensor's largest value
DEEP = dict(rtol=1e-5, atol_rel=5e-5)
# weights after Adam steps are compared as updates (after - before), scaled to the largest update of the tensor:
# Adam's first steps move each weight by about lr whatever its gradient, so rounding in a near-zero gradient
# moves a weight by a share of lr (measured up to 1% of the largest update), not by a share of the weight
UPDATE = dict(rtol=1e-3, atol_rel=5e-2)
N_CLASS, FP_DIM, HIDDEN = 10, 16, 32
# FAISS is an optional extra: its case runs wherever it is installed
BACKENDS = ["torch", pytest.param("faiss", marks=pytest.mark.skipif(not faiss_available(),
                                                                     reason="faiss (optional extra) not installed"))]


def golden(name: str) -> dict:
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def close(actual, expected, name="value", **tol):
    """Each tensor within a tolerance scaled to its own magnitude (tests/golden_compare.py)."""
    assert_close_scaled(torch.as_tensor(actual).float(), torch.as_tensor(expected).float(), name=name,
                        **(tol or TOL))


def kit_alphas() -> torch.Tensor:
    """The alphas as the kit's training and sampling use them (float64 cumprod, then float32)."""
    return lra.alphas_cumprod("cosine").to(torch.float32)


@functools.cache
def _recipe_weights() -> tuple:
    g = golden("model")
    return (recipe_state_dict(g["mlp_names"], g["mlp_shapes"]),
            recipe_state_dict(g["resnet34_names"], g["resnet34_shapes"]))


def original_weights(g: dict) -> list:
    """The original-layout weights of model.npz's recipe (copied: loading must not share BN buffers)."""
    return [{k: v.clone() for k, v in sd.items()} for sd in _recipe_weights()]


def kit_model(g: dict) -> lra.LRAModel:
    """A fresh kit model carrying the original's recipe weights (fresh BN running statistics)."""
    model = lra.LRAModel(N_CLASS, FP_DIM, hidden=HIDDEN, image_encoder="resnet34")
    load_original_weights(model, original_weights(g))
    return model


# ---------------------------------------------------------------------------------------------- diffusion maths

def test_schedules_match_the_original():
    g = golden("schedule")
    close(lra.beta_schedule("cosine").float(), g["cosine_betas"], rtol=1e-6, atol_rel=0)
    close(lra.beta_schedule("linear").float(), g["linear_betas"], rtol=1e-6, atol_rel=0)
    # the original's cumprod runs in float32, the kit's in float64: they differ only by float32 rounding
    close(kit_alphas(), g["cosine_alphas_cumprod"], rtol=0, atol_rel=2e-6)
    close(lra.alphas_cumprod("linear").float(), g["linear_alphas_cumprod"], rtol=0, atol_rel=2e-6)
    steps = np.asarray(lra.DDIM_TIMESTEPS)
    np.testing.assert_array_equal(steps[::-1], g["ddim_timesteps"])
    prev = np.r_[steps[1:], 0]  # each step goes to the next timestep, the last to t = 0
    close(kit_alphas()[steps[::-1].copy()], g["ddim_alphas"], rtol=0, atol_rel=2e-6)
    close(kit_alphas()[prev[::-1].copy()], g["ddim_alphas_prev"], rtol=0, atol_rel=2e-6)


def test_learning_rate_matches_the_original():
    g = golden("schedule")
    lr = [lra.learning_rate(float(e), peak=1e-3, warmup=5, horizon=1000) for e in g["lr_epochs"]]
    np.testing.assert_allclose(lr, g["lr"], rtol=1e-12, atol=0)


def test_q_sample_matches_the_original():
    g = golden("q_sample")
    y_t = q_sample(torch.from_numpy(g["y0"]), kit_alphas(), torch.from_numpy(g["t"]), torch.from_numpy(g["noise"]))
    close(y_t, g["y_t"], rtol=0, atol_rel=2e-6)


def test_decode_is_the_original_closest_to_one_rule():
    g = golden("decode")
    np.testing.assert_array_equal(lra.decode(torch.from_numpy(g["vectors"])).numpy(), g["classes"])
    assert (lra.decode(torch.from_numpy(g["vectors"]), "argmax").numpy() != g["classes"]).any()


# ---------------------------------------------------------------------------------------------- networks

def test_mapping_covers_every_original_key():
    g = golden("model")
    mlp, enc = original_weights(g)
    model = lra.LRAModel(N_CLASS, FP_DIM, hidden=HIDDEN, image_encoder="resnet34")
    assert set(denoiser_from_original(mlp)) == set(model.denoiser.state_dict())
    assert set(resnet34_from_original(enc)) == set(model.encoder.state_dict())
    wrapped = [{f"module.{k}": v for k, v in mlp.items()}, enc, {}]  # DataParallel prefix, f_p weights ignored
    load_original_weights(model, wrapped)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_denoiser_forward_matches_the_original(mode):
    g = golden("model")
    model = kit_model(g).train(mode == "train")
    with torch.no_grad():
        out = model.denoiser(torch.from_numpy(g["x_embed"]), torch.from_numpy(g["y_t"]), torch.from_numpy(g["fp"]),
                             torch.from_numpy(g["t"]))
    close(out, g[f"denoiser_{mode}"])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_image_encoder_forward_matches_the_original(mode):
    g = golden("model")
    model = kit_model(g).train(mode == "train")
    with torch.no_grad():
        out = model.embed(torch.from_numpy(g["x"]), torch.from_numpy(g["fp"]))
    close(out, g[f"encoder_{mode}"], **DEEP)


def test_forward_t_matches_the_original():
    g, m = golden("training_loss"), golden("model")
    model = kit_model(m).train()
    x, fp, t, noise = (torch.from_numpy(a) for a in (m["x"], m["fp"], g["t"], g["noise"]))
    y_t = q_sample(torch.from_numpy(g["y0"]), kit_alphas(), t, noise)
    eps_hat = model.denoiser(model.embed(x, fp), y_t, fp, t)
    close(eps_hat, g["eps_hat"], **DEEP)


def test_train_lra_steps_match_the_originals_train_function(monkeypatch):
    """`train_lra` itself on the SimCLR path (real_fp, head_compat) against train_CIFAR.train executed for one
    epoch of two steps: per step the retrieved labels (kNN of the batch's f_p among the cached bank, self
    included, plus the own label), their count weights and the weighted loss; after the steps every denoiser
    weight (Adam, the fractional-epoch learning rate, gradient clipping) and the image encoder's BN statistics.
    Handed in: the networks' weights, the candidate picks, the first half of the antithetic timesteps and the
    noise (the original's draws, through the same seams as its random calls)."""
    g, m = golden("train_loop"), golden("model")
    train_mod = importlib.import_module("nlkit.methods.lra_diffusion.train")
    sizes = [int(b) for b in g["sizes"]]
    halves = list(torch.from_numpy(g["t_half"]).split([b // 2 + 1 for b in sizes]))
    picks, noises, labels, weights = (list(torch.from_numpy(g[key]).split(sizes))
                                      for key in ("pick", "noise", "labels", "weights"))
    drawn, losses, state = [], [], {}

    def stored_pick(self, cands, probs=None, pick=None):
        out = real_draw(self, cands, probs, pick=picks.pop(0))
        drawn.append(out)
        return out

    def stored_draws(batch, num_classes, generator=None, device="cpu"):
        half, noise = halves.pop(0), noises.pop(0)

        def randint(low, high, size, **kwargs):
            assert (low, high, tuple(size)) == (0, 1000, tuple(half.shape)) and kwargs["generator"] is not None
            return half.clone()

        def randn(size, **kwargs):
            assert tuple(size) == tuple(noise.shape) and kwargs["generator"] is not None
            return noise.clone()

        with monkeypatch.context() as patch:
            patch.setattr(torch, "randint", randint)
            patch.setattr(torch, "randn", randn)
            return real_draws(batch, num_classes, generator, device)

    def recorded_loss(eps_hat, eps, weights):
        losses.append(real_loss(eps_hat, eps, weights))
        return losses[-1]

    def first_evaluation(model, batcher, *args):  # the state after the steps; evaluation is not compared
        state.update(state or {k: v.clone() for k, v in model.state_dict().items()})
        return np.zeros(batcher.num_samples, dtype=np.int64)

    def build_model(c, fp_dim, hidden, image_encoder, in_channels):
        assert (c, fp_dim, hidden, image_encoder, in_channels) == (N_CLASS, FP_DIM, HIDDEN, "resnet34", 3)
        return kit_model(m)

    real_draw, real_draws, real_loss = LabelSampler.draw, train_mod.training_draws, train_mod.weighted_eps_loss
    monkeypatch.setattr(LabelSampler, "draw", stored_pick)
    monkeypatch.setattr(train_mod, "training_draws", stored_draws)
    monkeypatch.setattr(train_mod, "weighted_eps_loss", recorded_loss)
    monkeypatch.setattr(train_mod, "ddim_predict", first_evaluation)
    monkeypatch.setattr(train_mod, "LRAModel", build_model)

    # the batches the run sees are those the original was given
    order = torch.cat([b.idx for b in train_mod_batches(g)]).numpy()
    np.testing.assert_array_equal(order, g["order"], err_msg="batch order (regenerate the golden)")
    ev = g["eval_images"], g["eval_labels"]
    clean = (g["noisy"] + 1) % N_CLASS  # never trained on: a run that reads it fails
    data = LRAData(g["train_images"], g["noisy"], clean, *ev, *ev, [str(c) for c in range(N_CLASS)],
                   tuple(g["mean"]), tuple(g["std"]), "uint8", {})
    feats = {"train": g["bank"], "val": g["eval_features"], "test": g["eval_features"]}
    cfg = LRAConfig(epochs=1, warmup_epochs=float(g["warmup_epochs"]), batch_size=int(g["batch_size"]),
                    k=int(g["k"]), hidden=HIDDEN, image_encoder="resnet34", head_compat=True, real_fp=True,
                    crop_padding=0, flip=False, bf16=False, channels_last=False)
    train_mod.train_lra(data, feats, cfg, seed=int(g["seed"]), device="cpu", progress=False, baselines=False,
                        fp_model=GridFeatures(FP_DIM))
    assert not (picks or halves or noises), "draws left unused"
    assert len(drawn) == len(losses) == len(sizes)
    for step, ((kit_labels, kit_weights), loss) in enumerate(zip(drawn, losses)):
        np.testing.assert_array_equal(kit_labels.numpy(), labels[step].numpy(), err_msg=f"labels of step {step}")
        assert_close_scaled(kit_weights, weights[step], rtol=1e-6, atol_rel=0, name=f"weights of step {step}")
        assert_close_scaled(np.float64(loss.item()), g["losses"][step], rtol=5e-5, atol_rel=0,
                            name=f"loss of step {step}")
    rows = torch.from_numpy(g["embed_rows"])
    recipe = denoiser_from_original(original_weights(m)[0])
    for key, value in denoiser_from_original({k[len("denoiser/"):]: torch.from_numpy(v) for k, v in g.items()
                                              if k.startswith("denoiser/")}).items():
        kit = state[f"denoiser.{key}"]
        before = recipe[key]
        if kit.shape[0] == 1001:  # timestep gates: rows of timesteps not drawn keep the recipe's values
            untouched = torch.ones(len(kit), dtype=torch.bool)
            untouched[rows] = False
            assert_close_scaled(kit[untouched], before[untouched], **TOL, name=f"denoiser {key} (not drawn)")
            kit, before = kit[rows], before[rows]
        assert_close_scaled(kit - before, value - before, **UPDATE, name=f"denoiser {key} (update)")
    encoder = resnet34_from_original(original_weights(m)[1])
    stats = resnet34_from_original({k[len("encoder/"):]: torch.from_numpy(v) for k, v in g.items()
                                    if k.startswith("encoder/")})
    for key, value in encoder.items():
        if key in stats:  # BN running statistics: updated by the two train-mode passes
            assert_close_scaled(state[f"encoder.{key}"], stats[key], **DEEP, name=f"encoder {key}")
        elif value.dtype.is_floating_point:  # weights: the original never gives the encoder to the optimizer
            assert_close_scaled(state[f"encoder.{key}"], value, **TOL, name=f"encoder {key} (not trained)")


def train_mod_batches(g):
    from nlkit.data import DeviceBatcher

    return DeviceBatcher(g["train_images"], batch_size=int(g["batch_size"]), shuffle=True, seed=int(g["seed"]),
                         device="cpu").epoch(0)


@pytest.mark.parametrize("encoder_mode", ["train", "eval"])
@pytest.mark.parametrize("start", ["zero", "given"])
def test_ddim_reverse_pass_matches_the_original(encoder_mode, start):
    g, m = golden("ddim"), golden("model")
    model = kit_model(m).eval()
    model.encoder.train(encoder_mode == "train")  # the original's test() leaves the image encoder in train mode
    fp = torch.from_numpy(m["fp"])
    with torch.no_grad():
        x_embed = model.embed(torch.from_numpy(m["x"]), fp)
        y_T = torch.from_numpy(g["y_T"]) if start == "given" else None
        y = lra.ddim_sample(lambda y_t, t: model.denoiser(x_embed, y_t, fp, t), (len(fp), N_CLASS), kit_alphas(),
                            y_T=y_T)
    close(y, g[f"{start}_start_encoder_{encoder_mode}"], **DEEP)
    np.testing.assert_array_equal(lra.decode(y).numpy(), g[f"{start}_start_encoder_{encoder_mode}_classes"])


@pytest.mark.parametrize("head_compat", [True, False])
def test_ddim_predict_gives_the_original_classes(head_compat):
    """The kit's evaluation path (image embedding, 10 DDIM steps from y = 0, decode) on one batch; head_compat
    keeps the image encoder's BN in train mode as the original's test(), the default puts it in eval mode."""
    g, m = golden("ddim"), golden("model")
    n = len(m["x"])
    batch = SimpleNamespace(idx=torch.arange(n), x=torch.from_numpy(m["x"]))
    batcher = SimpleNamespace(num_samples=n, device=torch.device("cpu"), epoch=lambda _: [batch])
    cfg = LRAConfig(head_compat=head_compat, bf16=False)
    pred = ddim_predict(kit_model(m), batcher, torch.from_numpy(m["fp"]), kit_alphas(), cfg, N_CLASS)
    np.testing.assert_array_equal(pred, g[f"zero_start_encoder_{'train' if head_compat else 'eval'}_classes"])


# ---------------------------------------------------------------------------------------------- retrieval

@pytest.mark.parametrize("backend", BACKENDS)
def test_knn_neighbours_match_the_original(backend):
    g = golden("knn")
    dist, idx = knn(g["database"], g["database"], int(g["k"]), backend=backend)
    np.testing.assert_array_equal(idx, g["neighbours"])  # the query itself first, then its k - 1 nearest
    close(np.sqrt(dist), g["distances"], rtol=1e-6, atol_rel=0)
    np.testing.assert_array_equal(neighbour_table(g["database"], int(g["k"]), "code", backend), g["neighbours"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_retrieval_labels_and_weights_match_the_original(backend):
    g = golden("knn")
    idx = g["batch_idx"]
    cands = candidate_labels(neighbour_table(g["database"], int(g["k"]), "code", backend), g["noisy"], "code")
    np.testing.assert_array_equal(cands[idx], g["cached_candidates"])  # k neighbours (self included) + own label
    sampler = LabelSampler(cands)
    labels, weights = sampler.draw(torch.as_tensor(cands[idx]), pick=torch.from_numpy(g["cached_pick"]))
    np.testing.assert_array_equal(labels.numpy(), g["cached_labels"])
    close(weights, g["cached_weights"], rtol=1e-6, atol_rel=0)


def test_real_fp_retrieval_labels_and_weights_match_the_original():
    g = golden("knn")
    k, idx = int(g["k"]), torch.from_numpy(g["batch_idx"])

    def retrieve(pick):
        sampler = LabelSampler(np.zeros((1, k + 1), dtype=np.int64))
        sampler.draw = functools.partial(sampler.draw, pick=pick)  # the original's draw, passed in
        return batch_retrieval(torch.from_numpy(g["real_fp_queries"]), torch.from_numpy(g["database"]),
                               torch.from_numpy(g["noisy"]), idx, k, sampler)

    columns = [retrieve(torch.full((len(idx),), j))[0] for j in range(k + 1)]
    np.testing.assert_array_equal(torch.stack(columns, 1).numpy(), g["real_fp_candidates"])
    labels, weights = retrieve(torch.from_numpy(g["real_fp_pick"]))
    np.testing.assert_array_equal(labels.numpy(), g["real_fp_labels"])
    close(weights, g["real_fp_weights"], rtol=1e-6, atol_rel=0)


# ---------------------------------------------------------------------------------------------- SimCLR f_p

def test_simclr_features_from_an_official_layout_file_match_the_original(tmp_path):
    g = golden("simclr")
    path = tmp_path / "SimCLR_128_cifar10.pt"
    torch.save(recipe_state_dict(g["simclr_names"], g["simclr_shapes"]), path)  # as the public files: a state dict
    model = load_simclr(path)
    with torch.no_grad():
        close(model.features(torch.from_numpy(g["x"])), g["features"], **DEEP)
