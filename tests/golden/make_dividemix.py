"""Golden files for DivideMix from the original code (LiJunnan1992/DivideMix at d9d3058): one semi-supervised epoch
of the main loop (eval_train of both networks, Train_cifar.py::train of each on the other's division for several
iterations, test with the two-network ensemble), one semi-supervised step of train, the asymmetric-noise warm-up
step (NegEntropy), eval_train's GMM, linear_rampup, and PreResNet.py's ResNet18 forward.

    python tests/golden/make_dividemix.py ORIGINAL_DIVIDEMIX_CHECKOUT

Train_cifar.py is a script (argparse and CUDA calls at import), so it is not imported: its source is parsed with
`ast` and only the definitions `train`, `warmup`, `eval_train`, `test`, `linear_rampup`, `SemiLoss`, `NegEntropy`
are executed, in a namespace that supplies the script's globals (`args`, `criterion`, `warm_up`, `CE`, `CEloss`,
`conf_penalty`, `eval_loader`, `test_loader`, `test_log`). While they run, `torch.Tensor.cuda` is a no-op. The draws
the original makes (np.random.beta for λ, torch.randperm for the MixMatch permutation) come from stand-ins in that
namespace that return the stored values in order; the loaders are built from stored draws (orders, augmentations);
numpy's global RNG is seeded with a stored seed before each GMM fit. `torch.sum` is wrapped to record the prior
penalty, `torch.max` the test predictions, `torch.Tensor.backward` the loss the original backpropagates;
`torch.zeros(50000)` in eval_train becomes the golden's sample count (the original hard-codes CIFAR's 50,000).
PreResNet.py is imported unchanged. Nothing else of the original is changed. CPU, float32.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dividemix_recipes import TinyNet, augment, recipe_state, state_to_arrays  # noqa: E402

OUT = HERE / "dividemix"
NUM_CLASS = 5
NEEDED = ("train", "warmup", "eval_train", "test", "linear_rampup", "SemiLoss", "NegEntropy")


@contextlib.contextmanager
def cuda_is_a_noop():
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


class TorchProxy(types.ModuleType):
    """torch, except randperm (returns the stored permutation), sum (recorded) and zeros(50000) (the golden's N)."""

    def __init__(self, perm=None, n_samples=None):
        super().__init__("torch")
        self.perms = [perm] if perm is not None else []   # the stored permutations, in call order
        self.n_samples, self.sums, self.maxes = n_samples, [], []

    def __getattr__(self, name):
        return getattr(torch, name)

    def randperm(self, n, *a, **k):
        perm = self.perms.pop(0)
        assert n == len(perm)
        return perm.clone()

    def max(self, *a, **k):
        out = torch.max(*a, **k)
        self.maxes.append((a[0], out))
        return out

    def sum(self, *a, **k):
        out = torch.sum(*a, **k)
        self.sums.append(out)
        return out

    def zeros(self, *shape, **k):
        if shape == (50000,) and self.n_samples is not None:
            shape = (self.n_samples,)
        return torch.zeros(*shape, **k)


@contextlib.contextmanager
def recording_backward(record: list):
    """Tensor.backward records the tensor it is called on (the loss as the original computes it), then runs."""
    saved = torch.Tensor.backward

    def backward(self, *a, **k):
        record.append(self.detach().clone())
        return saved(self, *a, **k)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = saved


class Loader:
    """What the original's loops use of a DataLoader: iteration, `.dataset` length, `.batch_size`, and an iterator
    with the long-gone `.next()`."""

    class _It:
        def __init__(self, batches):
            self._it = iter(batches)

        def next(self):
            return next(self._it)

        __next__ = next

        def __iter__(self):
            return self

    def __init__(self, batches, n, batch_size):
        self.batches, self.dataset, self.batch_size = batches, [None] * n, batch_size

    def __iter__(self):
        return Loader._It(self.batches)


class Passes(Loader):
    """A shuffled loader restarted by the original: each `iter()` walks the next stored pass (a list of batches)."""

    def __init__(self, passes, n, batch_size):
        super().__init__(None, n, batch_size)
        self.passes = list(passes)

    def __iter__(self):
        return Loader._It(self.passes.pop(0))


def original_namespace(checkout: Path, **globals_) -> dict:
    tree = ast.parse((checkout / "Train_cifar.py").read_text())
    keep = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in NEEDED]
    assert sorted(n.name for n in keep) == sorted(NEEDED)
    ns = {"sys": sys, "torch": torch, "F": F, "nn": nn, "np": np, **globals_}
    from sklearn.mixture import GaussianMixture

    ns["GaussianMixture"] = GaussianMixture
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(checkout / "Train_cifar.py"), "exec"), ns)
    return ns


def args_ns(**kw):
    base = dict(batch_size=64, lr=0.02, noise_mode="sym", alpha=4, lambda_u=25, p_threshold=0.5, T=0.5,
                num_epochs=300, r=0.5, dataset="cifar10", num_class=NUM_CLASS)
    base.update(kw)
    return types.SimpleNamespace(**base)


def tiny_pair(seed, num_classes=NUM_CLASS):
    torch.manual_seed(seed)
    net, peer = TinyNet(num_classes), TinyNet(num_classes)
    with torch.no_grad():   # non-trivial BN statistics for the peer's eval-mode passes
        for m in (net, peer):
            for bn in (m.bn1, m.bn2):
                bn.running_mean.normal_(0, 0.1)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(0.8, 1.2)
                bn.bias.normal_(0, 0.1)
    return net, peer


def golden_step(checkout: Path) -> dict:
    rng = np.random.default_rng(1)
    b, u, side = 3, 4, 8
    x1, x2 = (torch.from_numpy(rng.random((b, 3, side, side), dtype=np.float32)) for _ in range(2))
    u1, u2 = (torch.from_numpy(rng.random((u, 3, side, side), dtype=np.float32)) for _ in range(2))
    labels = torch.from_numpy(rng.integers(0, NUM_CLASS, b))
    w = torch.from_numpy(rng.random(b))   # float64 as the original's loader gives the GMM's probabilities
    lam = float(rng.beta(4, 4))            # the raw Beta draw; the original takes max(l, 1 - l)
    perm = torch.from_numpy(rng.permutation(2 * b + 2 * u))
    epoch, warm_up, n_labelled = 12, 10, 200   # lambda_u ramp at batch 0: 25 * (12 - 10) / 16
    net, peer = tiny_pair(0)
    init = {"net": {k: v.clone() for k, v in net.state_dict().items()},
            "peer": {k: v.clone() for k, v in peer.state_dict().items()}}
    proxy = TorchProxy(perm=perm)
    fake_np = types.SimpleNamespace(random=types.SimpleNamespace(beta=lambda a, b_: lam), clip=np.clip)
    records = {}
    ns = original_namespace(checkout, args=args_ns(batch_size=64), warm_up=warm_up)
    ns["torch"], ns["np"] = proxy, fake_np

    class Recording:
        def __call__(self, *a):
            out = ns["SemiLoss"]()(*a)
            records.update(logits_x=a[0], targets_x=a[1], logits_u=a[2], targets_u=a[3], current=a[4])
            records.update(lx=out[0], lu=out[1], lamb=out[2])
            return out

    ns["criterion"] = Recording()
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    labelled = Loader([(x1, x2, labels, w)], n_labelled, 64)
    unlabelled = Loader([(u1, u2)], 100, 64)
    losses = []
    with cuda_is_a_noop(), recording_backward(losses):
        ns["train"](epoch, net, peer, opt, labelled, unlabelled)
    penalty, loss = proxy.sums[-1], losses[-1]
    out = {"x1": x1.numpy(), "x2": x2.numpy(), "u1": u1.numpy(), "u2": u2.numpy(), "labels": labels.numpy(),
           "w": w.numpy(), "lam_draw": np.float64(lam), "perm": perm.numpy(), "epoch": np.int64(epoch),
           "warm_up": np.int64(warm_up), "num_iter": np.int64(n_labelled // 64 + 1), "T": np.float64(0.5),
           "lambda_u": np.float64(25.0), "lr": np.float64(0.02),
           "lx": records["lx"].detach().numpy(), "lu": records["lu"].detach().numpy(),
           "lamb": np.float64(records["lamb"]), "penalty": penalty.detach().numpy(), "loss": loss.detach().numpy(),
           "mixed_targets": torch.cat([records["targets_x"], records["targets_u"]]).numpy(),
           "logits": torch.cat([records["logits_x"], records["logits_u"]]).detach().numpy()}
    out.update(state_to_arrays(init["net"], "net_before"))
    out.update(state_to_arrays(init["peer"], "peer_before"))
    out.update(state_to_arrays(net.state_dict(), "net_after"))
    out.update(state_to_arrays(peer.state_dict(), "peer_after"))
    return out


def golden_warmup(checkout: Path) -> dict:
    rng = np.random.default_rng(2)
    n, side = 6, 8
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    labels = torch.from_numpy(rng.integers(0, NUM_CLASS, n))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)   # ToTensor
    net, _ = tiny_pair(3)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    ns = original_namespace(checkout, args=args_ns(noise_mode="asym"), CEloss=nn.CrossEntropyLoss())
    ns["conf_penalty"] = ns["NegEntropy"]()
    opt = torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    losses = []
    with cuda_is_a_noop(), recording_backward(losses):
        ns["warmup"](0, net, opt, Loader([(x, labels, None)], n, n))
    out = {"images": images, "labels": labels.numpy(), "loss": losses[0].numpy()}
    out.update(state_to_arrays(init, "net_before"))
    out.update(state_to_arrays(net.state_dict(), "net_after"))
    return out


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """torchvision's ToTensor on uint8 (N, H, W, C) images."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255)


def draw_epoch(rng, prob_peer: np.ndarray, n: int, b: int, views: int, pad: int, p_threshold: float = 0.5) -> dict:
    """Stored draws of one network's semi-supervised epoch, in the form the kit's `Draws` asks for them: the labelled
    set's order, one order per pass of the unlabelled set, the augmentation of every view (`views` per iteration:
    x1, x2, u1, u2 [, the generative module's batch]), MixMatch's raw Beta draws and permutations. Also the batches
    these draws make (`idx_x`, `idx_u` per iteration), which the original's loaders are built from."""
    labelled = prob_peer > p_threshold
    lab, unl = np.flatnonzero(labelled), np.flatnonzero(~labelled)
    assert len(lab) > b and len(unl) > 0, (len(lab), len(unl))   # >= 2 iterations, co-guessing exercised
    order = rng.permutation(len(lab))
    iters = -(-len(lab) // b)
    per_pass = -(-len(unl) // b)
    unl_orders = np.stack([rng.permutation(len(unl)) for _ in range(-(-iters // per_pass))])
    # batches are cut within each pass, whose last batch may be partial
    idx_u = [unl[unl_orders[it // per_pass]][(it % per_pass) * b:(it % per_pass + 1) * b] for it in range(iters)]
    idx_x = [lab[order][it * b:(it + 1) * b] for it in range(iters)]
    d = {"labelled_order": order, "unlabelled_orders": unl_orders,
         "flips": rng.random((iters * views, n)) < 0.5, "offsets": rng.integers(0, 2 * pad + 1, (iters * views, n, 2)),
         "beta": rng.beta(4, 4, iters), "iters": np.int64(iters), "per_pass": np.int64(per_pass)}
    for it in range(iters):
        d[f"mix_perm/{it}"] = rng.permutation(2 * len(idx_x[it]) + 2 * len(idx_u[it]))
    return {"draws": d, "idx_x": idx_x, "idx_u": idx_u}


def epoch_loaders(images, noisy, prob_peer, plan: dict, b: int, views: int, pad: int):
    """The original's labelled and unlabelled loaders for one network's epoch, made of the stored draws: labelled
    batches (x1, x2, given label, clean probability), unlabelled batches (u1, u2), restarted pass by pass."""
    d = plan["draws"]
    view = [to_tensor(augment(images, d["flips"][c], d["offsets"][c], pad)) for c in range(len(d["flips"]))]
    lab = [(view[it * views][ix], view[it * views + 1][ix], torch.from_numpy(noisy[ix]),
            torch.from_numpy(prob_peer[ix])) for it, ix in enumerate(plan["idx_x"])]
    unl = [(view[it * views + 2][iu], view[it * views + 3][iu]) for it, iu in enumerate(plan["idx_u"])]
    per_pass = int(d["per_pass"])
    passes = [unl[i:i + per_pass] for i in range(0, len(unl), per_pass)]
    n_lab = int(sum(len(ix) for ix in plan["idx_x"]))
    return Loader(lab, n_lab, b), Passes(passes, int((prob_peer <= 0.5).sum()), b), view


def test_labels_for(nets, x: torch.Tensor, rng) -> np.ndarray:
    """Test labels under which the ensemble (sum of logits) scores differently from either network alone: the
    ensemble's prediction for two thirds of the images, random labels for the rest."""
    with torch.no_grad():
        for net in nets:
            net.eval()
        outs = [net(x) for net in nets]
    pe = (outs[0] + outs[1]).argmax(1).numpy()
    p1, p2 = (o.argmax(1).numpy() for o in outs)
    assert (p1 != pe).any() and (p2 != pe).any()
    labels = pe.copy()
    agree = (p1 == pe) & (p2 == pe)   # where all agree, a random label changes no difference between them
    labels[agree] = rng.integers(0, outs[0].shape[1], int(agree.sum()))
    return labels


def golden_loop(checkout: Path, net_seed: int = 37) -> dict:
    """One semi-supervised epoch of the original's main loop (epoch 12, warm-up 10): eval_train for both networks
    (numpy's global RNG seeded with the stored GMM seed before each), `train` of net1 on net2's division, then of
    net2 on net1's (co-divide), each for >= 2 iterations from the stored draws, then `test` (the two-network
    ensemble)."""
    rng = np.random.default_rng(11)
    n, m, side, b, epoch, warm_up, pad, eval_b = 32, 24, 8, 4, 12, 10, 2, 5
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    noisy = rng.integers(0, NUM_CLASS, n)
    test_images = rng.integers(0, 256, (m, side, side, 3), dtype=np.uint8)
    gmm_seeds = rng.integers(0, 2**31, 2)
    nets = list(tiny_pair(net_seed))
    init = [{k: v.clone() for k, v in net.state_dict().items()} for net in nets]
    opts = [torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4) for net in nets]
    proxy = TorchProxy(n_samples=n)
    betas: list = []
    ns = original_namespace(checkout, args=args_ns(batch_size=b), warm_up=warm_up,
                            CE=nn.CrossEntropyLoss(reduction="none"))
    ns["torch"] = proxy
    ns["np"] = types.SimpleNamespace(random=types.SimpleNamespace(beta=lambda a, b_: betas.pop(0)), clip=np.clip)
    ns["eval_loader"] = [(to_tensor(images[i:i + eval_b]), torch.from_numpy(noisy[i:i + eval_b]),
                          torch.arange(i, min(i + eval_b, n))) for i in range(0, n, eval_b)]
    records: list = []

    def criterion(*a):
        out = ns["SemiLoss"]()(*a)
        records.append(out)
        return out

    ns["criterion"] = criterion
    out = {"images": images, "noisy": noisy, "test_images": test_images, "epoch": np.int64(epoch),
           "warm_up": np.int64(warm_up), "batch_size": np.int64(b), "pad": np.int64(pad),
           "eval_batch_size": np.int64(eval_b), "gmm_seeds": gmm_seeds}
    for k in range(2):
        out.update(state_to_arrays(init[k], f"net{k + 1}_before"))
    probs = []
    with cuda_is_a_noop():
        for k in range(2):
            np.random.seed(int(gmm_seeds[k]))   # the original's GMM draws its k-means init from numpy's global RNG
            prob, _ = ns["eval_train"](nets[k], [])
            probs.append(prob)
        for k in range(2):   # net1 trains on net2's division, then net2 on net1's
            plan = draw_epoch(rng, probs[1 - k], n, b, 4, pad)
            d = plan["draws"]
            lab, unl, _ = epoch_loaders(images, noisy, probs[1 - k], plan, b, 4, pad)
            betas[:] = list(d["beta"])
            proxy.perms[:] = [torch.from_numpy(d[f"mix_perm/{it}"]) for it in range(int(d["iters"]))]
            proxy.sums.clear()
            records.clear()
            losses: list = []
            with recording_backward(losses):
                ns["train"](epoch, nets[k], nets[1 - k], opts[k], lab, unl)
            assert not betas and not proxy.perms and not unl.passes and len(losses) == int(d["iters"])
            penalties = proxy.sums[1::2]   # per iteration: L_x's torch.sum in SemiLoss, then the penalty
            assert len(proxy.sums) == 2 * len(losses)
            out.update({f"k{k}/{key}": value for key, value in d.items()})
            out.update({f"k{k}/lx": np.array([float(r[0].detach()) for r in records]),
                        f"k{k}/lu": np.array([float(r[1].detach()) for r in records]),
                        f"k{k}/lamb": np.array([float(r[2]) for r in records]),
                        f"k{k}/penalty": np.array([float(p) for p in penalties]),
                        f"k{k}/loss": np.array([float(v) for v in losses])})
        test_labels = test_labels_for(nets, to_tensor(test_images), rng)
        ns["test_loader"] = [(to_tensor(test_images[i:i + 8]), torch.from_numpy(test_labels[i:i + 8]))
                             for i in range(0, m, 8)]
        ns["test_log"] = io.StringIO()
        proxy.maxes.clear()
        ns["test"](epoch, nets[0], nets[1])
    acc = float(re.search(r"Accuracy:([0-9.]+)", ns["test_log"].getvalue()).group(1))
    out.update({"prob1": probs[0], "prob2": probs[1], "test_labels": test_labels, "test_acc": np.float64(acc),
                "test_predicted": torch.cat([mx[1][1] for mx in proxy.maxes]).numpy(),
                "test_ensemble_logits": torch.cat([mx[0] for mx in proxy.maxes]).numpy()})
    for k in range(2):
        out.update(state_to_arrays(nets[k].state_dict(), f"net{k + 1}_after"))
    return out


def golden_gmm(checkout: Path) -> dict:
    rng = np.random.default_rng(3)
    n, c = 1000, 10
    clean = rng.integers(0, c, n)
    noisy = np.where(rng.random(n) < 0.4, rng.integers(0, c, n), clean)
    logits = (rng.normal(0, 1.5, (n, c)) + 3.0 * np.eye(c)[clean]).astype(np.float32)
    seed = 1234
    batches = [(torch.from_numpy(logits[i:i + 100]), torch.from_numpy(noisy[i:i + 100]),
                torch.arange(i, min(i + 100, n))) for i in range(0, n, 100)]
    proxy = TorchProxy(n_samples=n)
    ns = original_namespace(checkout, args=args_ns(r=0.5), CE=nn.CrossEntropyLoss(reduction="none"),
                            eval_loader=batches)
    ns["torch"] = proxy
    np.random.seed(seed)   # the original's GMM is unseeded: its k-means init draws from numpy's global RNG
    with cuda_is_a_noop():
        prob, _ = ns["eval_train"](nn.Identity(), [])   # the "network" returns the stored logits
    rampup = [(cur, ns["linear_rampup"](cur, 10)) for cur in (9.5, 10.0, 10.25, 17.0, 26.0, 40.0)]
    return {"logits": logits, "noisy": noisy, "clean": clean, "gmm_seed": np.int64(seed), "prob": prob,
            "rampup_current": np.array([r[0] for r in rampup]), "rampup_value": np.array([r[1] for r in rampup]),
            "rampup_warm_up": np.int64(10), "rampup_lambda_u": np.float64(25.0)}


def golden_preact(checkout: Path) -> dict:
    sys.path.insert(0, str(checkout))
    from PreResNet import ResNet18

    net = ResNet18(num_classes=10)
    names = list(net.state_dict().keys())
    shapes = [tuple(v.shape) for v in net.state_dict().values()]
    net.load_state_dict(recipe_state(names, shapes))
    x = torch.from_numpy(np.random.default_rng(4).random((2, 3, 32, 32), dtype=np.float32))
    with torch.no_grad():
        net.eval()
        out_eval = net(x)
        net.train()
        out_train = net(x)
    lengths = np.array([len(s) for s in shapes])
    flat = np.concatenate([np.array(s, dtype=np.int64) for s in shapes if len(s)] or [np.zeros(0, np.int64)])
    return {"names": np.array(names), "shape_lengths": lengths, "shapes_flat": flat, "x": x.numpy(),
            "logits_eval": out_eval.numpy(), "logits_train": out_train.numpy()}


def main(argv) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "Train_cifar.py").is_file():
        print("usage: make_dividemix.py ORIGINAL_DIVIDEMIX_CHECKOUT (the folder holding Train_cifar.py)",
              file=sys.stderr)
        return 2
    checkout = Path(argv[0]).resolve()
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    for name, fn in (("train_step", golden_step), ("warmup_step", golden_warmup), ("co_divide_epoch", golden_loop),
                     ("eval_train_gmm", golden_gmm), ("preact_resnet18", golden_preact)):
        np.savez_compressed(OUT / f"{name}.npz", **fn(checkout))
        print(f"wrote {OUT / name}.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
