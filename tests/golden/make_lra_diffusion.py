"""Golden outputs of the public LRA-Diffusion code (puar-playground/LRA-diffusion), for tests/test_golden_lra.py.

Usage: python tests/golden/make_lra_diffusion.py ORIGINAL_CHECKOUT

Puts the checkout on sys.path, imports its functions and classes, runs them on small fixed seeded CPU inputs and
writes the inputs and outputs (numbers only) to tests/golden/lra_diffusion/*.npz. The random draws the original
makes inside its functions (the noise of `forward_t`, the prior draw of `reverse_ddim`, the uniform candidate
pick of `sample_knn_labels`) are drawn here, stored, and injected by temporarily replacing `torch.randn_like` /
`torch.randint` with a function that returns the stored draw; the test passes the same draws to the kit.
Nothing is patched in the checkout: the modules used import no missing package and run on the CPU through their
`device` argument (no `.cuda()` call is reached). `train_CIFAR.train` itself is compiled from the script's syntax
tree and executed for two steps (`train_loop.npz`) on the batches the kit's DeviceBatcher gives a run (imported
from this project: the inputs only). See tests/golden/lra_diffusion/README.md.
"""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
from pathlib import Path

from types import SimpleNamespace

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
OUT = HERE / "lra_diffusion"
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # this project, for the kit's DeviceBatcher (the loop goldens' inputs)
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
from lra_weight_recipe import GridFeatures, layout_arrays, recipe_state_dict  # noqa: E402

N_CLASS, FP_DIM, HIDDEN, BATCH = 10, 16, 32, 4


def f32(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def save(name: str, **arrays) -> None:
    np.savez_compressed(OUT / f"{name}.npz", **arrays)
    print(f"{name}.npz: {', '.join(arrays)}")


@contextlib.contextmanager
def injected(fn_name: str, draws):
    """Replace torch.<fn_name> by a function returning the given draws in order (shapes checked)."""
    real = getattr(torch, fn_name)
    queue = list(draws)

    def fake(*args, **kwargs):
        value = queue.pop(0)
        if fn_name == "randn_like":
            assert tuple(args[0].shape) == tuple(value.shape), (args[0].shape, value.shape)
        else:  # torch.randint(low, high, size), positional or by keyword
            low, high, size = (list(args) + [kwargs.get(k) for k in ("low", "high", "size")][len(args):])[:3]
            assert tuple(size) == tuple(value.shape) and int(value.min()) >= low and int(value.max()) < high
        return value.clone()

    setattr(torch, fn_name, fake)
    try:
        yield queue
    finally:
        setattr(torch, fn_name, real)
    assert not queue, f"{len(queue)} injected draws of torch.{fn_name} left unused"


def seeded_weights(module: torch.nn.Module, prefix: str) -> dict:
    """Load the recipe weights (fresh BN running statistics included) and return the layout arrays. Called
    again before every use, since a forward pass in train mode updates the running statistics."""
    arrays = layout_arrays(module.state_dict(), prefix)
    module.load_state_dict(recipe_state_dict(arrays[f"{prefix}_names"], arrays[f"{prefix}_shapes"]), strict=True)
    return arrays


def grid_points(n: int, gen: torch.Generator) -> torch.Tensor:
    return (torch.randn(n, FP_DIM, generator=gen) * 64).round().clamp(-256, 255) / 64


def assert_untied(queries: torch.Tensor, database: torch.Tensor, k: int) -> None:
    """The k nearest of each query, in order, are strictly ordered (exact integer squared distances)."""
    q, d = (queries * 64).long(), (database * 64).long()
    assert torch.equal(q.float() / 64, queries) and torch.equal(d.float() / 64, database), "not on the grid"
    sq = ((q[:, None, :] - d[None, :, :]) ** 2).sum(-1).sort(1).values
    assert int(sq.max()) < 2**24 and bool((sq[:, 1:k + 1] > sq[:, :k]).all()), "tied neighbours: change the seed"


# the training-loop golden: one epoch of two steps of train_CIFAR.train on the SimCLR path (real_fp)
LOOP = {"n": 7, "batch_size": 4, "k": 3, "seed": 0, "eval_n": 2, "warmup_epochs": 2}
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # train_CIFAR.py's Normalize


def loop_inputs() -> dict:
    """Images (uint8 NHWC, 32x32), noisy labels and the cached f_p bank of the loop golden (pure numpy/torch:
    the test rebuilds nothing from these but reads them)."""
    rng = np.random.default_rng(231)
    n, m = LOOP["n"], LOOP["eval_n"]
    out = {"train_images": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
           "noisy": rng.integers(0, N_CLASS, n).astype(np.int64),
           "eval_images": rng.integers(0, 256, (m, 32, 32, 3), dtype=np.uint8),
           "eval_labels": rng.integers(0, N_CLASS, m).astype(np.int64)}
    return out


def loop_batches(images: np.ndarray, epoch: int, shuffle: bool, batch_size: int):
    """The (indices, normalised pixels) batches the kit's run sees: its DeviceBatcher with the run's seed, no crop
    or flip. Batch order and pixels are inputs (the same for both sides), not under test."""
    from nlkit.data import DeviceBatcher  # noqa: E402  (the kit's loader, for the inputs only)

    batcher = DeviceBatcher(images, batch_size=batch_size, shuffle=shuffle, crop_padding=0, flip=False,
                            seed=LOOP["seed"], device="cpu", mean=CIFAR_MEAN, std=CIFAR_STD)
    return [(b.idx.clone(), b.x.clone()) for b in batcher.epoch(epoch)]


def train_function(checkout: Path):
    """train_CIFAR.py's `train` function definition, compiled from its syntax tree (the script imports CLIP and
    parses arguments at module level, so it is not imported)."""
    tree = ast.parse((checkout / "train_CIFAR.py").read_text())
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train"]
    if len(found) != 1:
        raise SystemExit("the train function of train_CIFAR.py was not found")
    return compile(ast.Module(body=found, type_ignores=[]), "train_CIFAR.py", "exec")


def golden_train_loop(checkout: Path, diffusion, reset_weights, gen: torch.Generator) -> dict:
    """train_CIFAR.train executed for one epoch of two steps on the SimCLR path (real_fp: f_p of each batch, kNN
    retrieval against the cached bank, antithetic timesteps, forward_t, the weighted MSE, Adam with the
    fractional-epoch learning rate, gradient clipping). The draws (candidate picks, the first half of the
    timesteps, the noise) are injected; the loss of each step is read from its progress bar's postfix."""
    from utils.ema import EMA
    from utils.knn_utils import sample_knn_labels
    from utils.learning import adjust_learning_rate, cast_label_to_one_hot_and_prototype

    inputs = loop_inputs()
    images, noisy = inputs["train_images"], inputs["noisy"]
    fp_encoder = GridFeatures(FP_DIM)
    # the cached bank is computed on another view of the images (mirrored), as prepare_fp_x computes it through
    # the training transform: a batch's fresh f_p is then not its bank row, so the real_fp path is visible
    with torch.no_grad():
        bank = torch.cat([fp_encoder(x.flip(3)) for _, x in loop_batches(images, 0, False, len(images))])
    batches = loop_batches(images, 0, True, LOOP["batch_size"])
    sizes = [len(idx) for idx, _ in batches]
    k = LOOP["k"]
    for idx, x in batches:  # exact grid distances: check the k + 1 nearest of every query are untied
        with torch.no_grad():
            assert_untied(fp_encoder(x), bank, k + 1)
    picks = [torch.randint(0, k + 1, (b,), generator=gen) for b in sizes]
    halves = [torch.randint(0, 1000, (b // 2 + 1,), generator=gen) for b in sizes]
    noises = [torch.randn(b, N_CLASS, generator=gen) for b in sizes]

    reset_weights()
    diffusion.fp_encoder = fp_encoder.eval()
    diffusion.model.train()
    diffusion.diffusion_encoder.train()
    record = {"losses": [], "labels": [], "weights": [], "lr": []}

    class TrainDataset:
        targets = noisy.tolist()

    def data_loader(dataset, batch_size, shuffle, num_workers):
        if dataset is TrainDataset:
            assert batch_size == LOOP["batch_size"] and shuffle
            return [(x, torch.as_tensor(noisy)[idx], idx) for idx, x in batches]
        return []  # the val and test loaders: evaluation is not part of this golden (its test is a stand-in)

    class Progress:  # tqdm stand-in: iterates and keeps the postfix, the step's loss.item()
        def __init__(self, iterable, **kwargs):
            self.iterable = iterable

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, values):
            record["losses"].append(values["loss"])

    def sampled(*args, **kwargs):
        labels, weights = sample_knn_labels(*args, **kwargs)
        record["labels"].append(labels.clone())
        record["weights"].append(weights.clone())
        return labels, weights

    def learning_rate(*args, **kwargs):
        record["lr"].append(adjust_learning_rate(*args, **kwargs))
        return record["lr"][-1]

    names = {"prepare_fp_x": lambda *a, **kw: bank.clone(), "fp_dim": FP_DIM, "batch_size": LOOP["batch_size"],
             "data": SimpleNamespace(DataLoader=data_loader), "optim": torch.optim, "nn": torch.nn, "EMA": EMA,
             "tqdm": Progress, "sample_knn_labels": sampled, "adjust_learning_rate": learning_rate,
             "cast_label_to_one_hot_and_prototype": cast_label_to_one_hot_and_prototype, "torch": torch,
             "test": lambda *a: 0.0, "np": np}
    exec(train_function(checkout), names)
    args = SimpleNamespace(nepoch=1, k=k, warmup_epochs=LOOP["warmup_epochs"])
    randint = [v for pair in zip(picks, halves) for v in pair]  # per step: the candidate pick, then t
    with injected("randint", randint), injected("randn_like", noises):
        names["train"](diffusion, TrainDataset, None, None, None, args, real_fp=True)
    assert len(record["losses"]) == len(batches)
    # the denoiser after the two steps; the image encoder is not given to the optimizer, so of it only the BN
    # running statistics change (its weights stay the recipe's, which the test checks)
    # the timestep gates (1001 rows each) change only in the rows of the timesteps drawn: those rows are stored
    used = torch.unique(torch.cat([torch.cat([h, 999 - h])[:b] for h, b in zip(halves, sizes)]))
    states = {f"denoiser/{k}": f32(v[used] if k.endswith("embed.weight") else v)
              for k, v in diffusion.model.state_dict().items() if v.dtype.is_floating_point}
    states.update({f"encoder/{k}": f32(v) for k, v in diffusion.diffusion_encoder.state_dict().items()
                   if k.endswith(("running_mean", "running_var"))})
    return {**inputs, **{k: np.int64(v) for k, v in LOOP.items()}, "bank": f32(bank),
            "eval_features": f32(bank[:LOOP["eval_n"]]), "mean": np.array(CIFAR_MEAN), "std": np.array(CIFAR_STD),
            "order": np.concatenate([idx.numpy() for idx, _ in batches]),
            # per-step arrays of the steps' sizes (4 then 3), concatenated; `sizes` splits them
            "sizes": np.array(sizes), "pick": torch.cat(picks).numpy(), "t_half": torch.cat(halves).numpy(),
            "noise": f32(torch.cat(noises)), "losses": np.array(record["losses"], dtype=np.float64),
            "labels": torch.cat(record["labels"]).numpy(), "weights": f32(torch.cat(record["weights"])), "lr": np.array(record["lr"]), "embed_rows": used.numpy(), **states}


def main(checkout: Path) -> None:
    checkout = checkout.resolve()
    if not (checkout / "model_diffusion.py").is_file():
        print(f"error: {checkout} is not an LRA-diffusion checkout (no model_diffusion.py)", file=sys.stderr)
        raise SystemExit(2)
    sys.path.insert(0, str(checkout))
    from model_diffusion import Diffusion
    from utils.diffusion_utils import make_beta_schedule, q_sample
    from utils.knn_utils import knn, sample_knn_labels
    from utils.learning import adjust_learning_rate, cnt_agree
    from utils.model_SimCLR import SimCLR_encoder

    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    print("original commit:", commit.strip() or "unknown")
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(20231019)

    # -- the diffusion model at a small width: ConditionalModel (F = 32, D = 16, C = 10) and a full CIFAR ResNet-34
    diffusion = Diffusion(fp_encoder=torch.nn.Identity(), n_class=N_CLASS, fp_dim=FP_DIM, feature_dim=HIDDEN,
                          device="cpu", beta_schedule="cosine", encoder_type="resnet34", ddim_num_steps=10)

    # 1. schedules: the model's (cosine, float32 cumprod) and make_beta_schedule's linear one with the model's ends
    linear = make_beta_schedule(schedule="linear", num_timesteps=1000, start=0.0001, end=0.02).float()
    # the learning rate of train_CIFAR.py: adjust_learning_rate(optimizer, i / len(loader) + epoch, warmup_epochs=5,
    # n_epochs=1000, lr_input=0.001) at fractional epochs (225 iterations per epoch)
    lr_epochs = np.array([0.0, 1 / 225, 2.5, 4 + 224 / 225, 5.0, 5 + 1 / 225, 30.0, 199 + 113 / 225, 200.0, 999.0])
    optimizer = type("Optimizer", (), {"param_groups": [{}]})()
    lr = [adjust_learning_rate(optimizer, float(e), warmup_epochs=5, n_epochs=1000, lr_input=0.001) for e in lr_epochs]
    save("schedule",
         cosine_betas=f32(diffusion.betas), cosine_alphas_cumprod=f32(diffusion.alphas_cumprod),
         linear_betas=f32(linear), linear_alphas_cumprod=f32((1 - linear).cumprod(0)),
         ddim_timesteps=np.asarray(diffusion.ddim_timesteps, dtype=np.int64),
         ddim_alphas=f32(diffusion.ddim_alphas), ddim_alphas_prev=f32(diffusion.ddim_alphas_prev),
         lr_epochs=lr_epochs, lr=np.asarray(lr, dtype=np.float64))

    # 2. q_sample with given y0, t and noise
    n = 64
    labels = torch.randint(0, N_CLASS, (n,), generator=gen)
    y0 = torch.nn.functional.one_hot(labels, N_CLASS).float()
    t = torch.cat([torch.tensor([0, 1, 500, 998, 999]), torch.randint(0, 1000, (n - 5,), generator=gen)])
    noise = torch.randn(n, N_CLASS, generator=gen)
    y_t = q_sample(y0, diffusion.alphas_bar_sqrt, diffusion.one_minus_alphas_bar_sqrt, t, noise=noise)
    save("q_sample", y0=f32(y0), t=t.numpy(), noise=f32(noise), y_t=f32(y_t))

    # 3. the networks with recipe weights: the denoiser alone, the image encoder alone
    def reset_weights() -> dict:
        return {**seeded_weights(diffusion.model, "mlp"), **seeded_weights(diffusion.diffusion_encoder, "resnet34")}

    layouts = reset_weights()
    x = torch.randn(BATCH, 3, 32, 32, generator=gen)
    fp = torch.randn(BATCH, FP_DIM, generator=gen)
    x_embed = torch.randn(BATCH, HIDDEN, generator=gen)
    den_y = torch.randn(BATCH, N_CLASS, generator=gen)
    den_t = torch.tensor([0, 17, 999, 1000])  # 1000 is the extra row of the Embedding(1001) tables
    outputs = {}
    with torch.no_grad():
        for mode in ("train", "eval"):
            reset_weights()
            diffusion.model.train(mode == "train")
            diffusion.diffusion_encoder.train(mode == "train")
            outputs[f"denoiser_{mode}"] = f32(diffusion.model(x_embed, den_y, den_t, fp))
            outputs[f"encoder_{mode}"] = f32(diffusion.diffusion_encoder(x))
    save("model", **layouts, x=f32(x), fp=f32(fp), x_embed=f32(x_embed), y_t=f32(den_y), t=den_t.numpy(), **outputs)

    # 4. Diffusion.forward_t with the given noise (the training loss itself comes from train()'s execution, 9.)
    reset_weights()
    diffusion.model.train()
    diffusion.diffusion_encoder.train()
    loss_labels = torch.randint(0, N_CLASS, (BATCH,), generator=gen)
    loss_y0 = torch.nn.functional.one_hot(loss_labels, N_CLASS).float()
    loss_t = torch.tensor([3, 640, 359, 996])
    loss_noise = torch.randn(BATCH, N_CLASS, generator=gen)
    with injected("randn_like", [loss_noise]):
        eps_hat, e = diffusion.forward_t(loss_y0, x, loss_t, fp)
    assert torch.equal(e, loss_noise)
    save("training_loss", y0=f32(loss_y0), t=loss_t.numpy(), noise=f32(loss_noise), eps_hat=f32(eps_hat))

    # 5. reverse_ddim (10 steps, eta = 0) from y_T = 0 (stochastic=False, the code's test()) and from a given y_T
    #    (stochastic=True: the prior draw injected; the per-step noise is multiplied by sigma = 0, injected as 0).
    #    The MLP is in eval mode; the image encoder in train mode (the code's test() never sets it to eval) and
    #    in eval mode.
    y_T = torch.randn(BATCH, N_CLASS, generator=gen)
    ddim = {"y_T": f32(y_T)}
    for enc_mode in ("train", "eval"):
        reset_weights()
        diffusion.model.eval()
        diffusion.diffusion_encoder.train(enc_mode == "train")
        with injected("randn_like", [torch.zeros(BATCH, N_CLASS)] * 11):
            ddim[f"zero_start_encoder_{enc_mode}"] = f32(diffusion.reverse_ddim(x, stochastic=False, fp_x=fp))
        reset_weights()
        with injected("randn_like", [y_T] + [torch.zeros(BATCH, N_CLASS)] * 10):
            ddim[f"given_start_encoder_{enc_mode}"] = f32(diffusion.reverse_ddim(x, stochastic=True, fp_x=fp))
    def original_classes(vectors: torch.Tensor) -> np.ndarray:
        """cnt_agree (softmax(-(y-1)^2), top-1) asked, vector by vector, which class it counts as correct."""
        classes = []
        for v in vectors:
            hits = [c for c in range(N_CLASS) if cnt_agree(v[None], torch.tensor([c])) == 1]
            assert len(hits) == 1
            classes.append(hits[0])
        return np.asarray(classes, dtype=np.int64)

    ddim.update({f"{key}_classes": original_classes(torch.as_tensor(ddim[key])) for key in list(ddim) if key != "y_T"})
    save("ddim", **ddim)

    # 6. the decode rule on crafted and random vectors
    crafted = torch.tensor([[1.6, 0.95, 0.0, -0.3, 0.2, 0.1, 0.0, 0.0, 0.0, 0.0],   # closest to 1 is not the max
                            [-2.0, -1.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1],   # all far below 1
                            [3.0, 2.5, 2.2, 2.0, 1.8, 1.9, 2.1, 2.4, 2.6, 2.9]])    # all above 1
    vectors = torch.cat([crafted, torch.randn(45, N_CLASS, generator=gen) * 0.7 + 0.3])
    save("decode", vectors=f32(vectors), classes=original_classes(vectors))

    # 7. kNN retrieval (utils/knn_utils.py): neighbours of every database row (the row itself included), the
    #    candidate labels (k neighbours + the own label) read back column by column through sample_knn_labels,
    #    a uniformly drawn candidate and its count weight; the cached path (queries are database rows) and the
    #    SimCLR real_fp path (queries are perturbed rows, as a fresh augmentation)
    #    The features lie on a grid of step 1/64 in [-4, 4], so every squared distance is an integer multiple of
    #    1/4096 below 2^24 of them: exact in float32 whatever the summation order (cdist, FAISS, matmul), and the
    #    neighbour order is checked free of ties in exact integer arithmetic.
    n_db, k, n_cls_knn = 300, 10, 5
    db = grid_points(n_db, gen)
    noisy = torch.randint(0, n_cls_knn, (n_db,), generator=gen)
    dist, nbrs = knn(db, db, k=k)
    batch_idx = torch.randperm(n_db, generator=gen)[:40]
    knn_out = {"database": f32(db), "noisy": noisy.numpy(), "k": np.int64(k), "num_classes": np.int64(n_cls_knn),
               "distances": f32(dist), "neighbours": nbrs.numpy(), "batch_idx": batch_idx.numpy()}
    jitter = (torch.randn(40, FP_DIM, generator=gen) * 8).round() / 64  # a fresh augmentation's shift, on the grid
    queries = {"cached": db[batch_idx], "real_fp": (db[batch_idx] + jitter).clamp(-4, 4 - 1 / 64)}
    for path, q in queries.items():
        assert_untied(q, db, k + 1)
        cols = []
        for j in range(k + 1):
            with injected("randint", [torch.full((40,), j)]):
                cols.append(sample_knn_labels(q, noisy[batch_idx], db, noisy, k=k, n_class=n_cls_knn,
                                              weighted=True)[0])
        pick = torch.randint(0, k + 1, (40,), generator=gen)
        with injected("randint", [pick]):
            sampled, w = sample_knn_labels(q, noisy[batch_idx], db, noisy, k=k, n_class=n_cls_knn, weighted=True)
        knn_out.update({f"{path}_queries": f32(q), f"{path}_candidates": torch.stack(cols, 1).numpy(),
                        f"{path}_pick": pick.numpy(), f"{path}_labels": sampled.numpy(), f"{path}_weights": f32(w)})
    save("knn", **knn_out)

    # 8. the SimCLR f_p encoder (utils/model_SimCLR.py): full ResNet-50 with recipe weights, eval mode, as used
    simclr = SimCLR_encoder(feature_dim=128)
    simclr_layout = seeded_weights(simclr, "simclr")
    simclr.eval()
    x_simclr = torch.randn(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        features = simclr(x_simclr)
    save("simclr", **simclr_layout, x=f32(x_simclr), features=f32(features))

    # 9. train_CIFAR.train itself: one epoch of two steps (retrieval, antithetic t, forward_t, weighted loss, Adam)
    save("train_loop", **golden_train_loop(checkout, diffusion, reset_weights, gen))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python tests/golden/make_lra_diffusion.py ORIGINAL_CHECKOUT", file=sys.stderr)
        raise SystemExit(2)
    main(Path(sys.argv[1]))
