"""Golden files for DivideMix from the original code (LiJunnan1992/DivideMix at d9d3058): one semi-supervised step
of Train_cifar.py::train, the asymmetric-noise warm-up step (NegEntropy), eval_train's GMM, linear_rampup, and
PreResNet.py's ResNet18 forward.

    python tests/golden/make_dividemix.py ORIGINAL_DIVIDEMIX_CHECKOUT

Train_cifar.py is a script (argparse and CUDA calls at import), so it is not imported: its source is parsed with
`ast` and only the definitions `train`, `warmup`, `eval_train`, `linear_rampup`, `SemiLoss`, `NegEntropy` are
executed, in a namespace that supplies the script's globals (`args`, `criterion`, `warm_up`, `CE`, `CEloss`,
`conf_penalty`, `eval_loader`). While they run, `torch.Tensor.cuda` is a no-op. The draws the original makes
(np.random.beta for λ, torch.randperm for the MixMatch permutation) come from stand-ins in that namespace that
return the stored values; `torch.sum` is wrapped to record the prior penalty; `torch.zeros(50000)` in eval_train
becomes the golden's sample count (the original hard-codes CIFAR's 50,000). PreResNet.py is imported unchanged.
Nothing else of the original is changed. CPU, float32.
"""

from __future__ import annotations

import ast
import contextlib
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from dividemix_recipes import TinyNet, recipe_state, state_to_arrays  # noqa: E402

OUT = HERE / "dividemix"
NUM_CLASS = 5
NEEDED = ("train", "warmup", "eval_train", "linear_rampup", "SemiLoss", "NegEntropy")


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
        self.perm, self.n_samples, self.sums = perm, n_samples, []

    def __getattr__(self, name):
        return getattr(torch, name)

    def randperm(self, n, *a, **k):
        assert n == len(self.perm)
        return self.perm.clone()

    def sum(self, *a, **k):
        out = torch.sum(*a, **k)
        self.sums.append(out)
        return out

    def zeros(self, *shape, **k):
        if shape == (50000,) and self.n_samples is not None:
            shape = (self.n_samples,)
        return torch.zeros(*shape, **k)


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


def tiny_pair(seed):
    torch.manual_seed(seed)
    net, peer = TinyNet(NUM_CLASS), TinyNet(NUM_CLASS)
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
    with cuda_is_a_noop():
        ns["train"](epoch, net, peer, opt, labelled, unlabelled)
    penalty = proxy.sums[-1]
    loss = records["lx"] + records["lamb"] * records["lu"] + penalty
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
    with cuda_is_a_noop():
        ns["warmup"](0, net, opt, Loader([(x, labels, None)], n, n))
        with torch.no_grad():
            net0 = TinyNet(NUM_CLASS)
            net0.load_state_dict(init)
            net0.train()
            logits = net0(x)
            loss = nn.CrossEntropyLoss()(logits, labels) + ns["NegEntropy"]()(logits)
    out = {"images": images, "labels": labels.numpy(), "loss": loss.numpy()}
    out.update(state_to_arrays(init, "net_before"))
    out.update(state_to_arrays(net.state_dict(), "net_after"))
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
    for name, fn in (("train_step", golden_step), ("warmup_step", golden_warmup), ("eval_train_gmm", golden_gmm),
                     ("preact_resnet18", golden_preact)):
        np.savez_compressed(OUT / f"{name}.npz", **fn(checkout))
        print(f"wrote {OUT / name}.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
