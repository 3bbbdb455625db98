"""Golden files for InstanceGM from the original code (arpit2412/InstanceGM at 39cf8a4): one semi-supervised epoch
of instanceGM.py's main loop with the joint DivideMix + VAE step (train, train_vae, eval_train; the DivideMix
golden's stand-ins and stored draws, plus the VAE batches and noise), the generative (VAE) part
of one training step (instanceGM.py train_vae / vae_loss / log_standard_categorical with mylib/models/vae.py
VAE_CIFAR10), and the part-dependent noise generator (tools.py get_instance_noisy_label).

    python tests/golden/make_instancegm.py ORIGINAL_INSTANCEGM_CHECKOUT

instanceGM.py is a script (argparse, data loading and CUDA models at import), so it is not imported: its source is
parsed with `ast` and only `train_vae`, `vae_loss` and `log_standard_categorical` are executed, in a namespace that
supplies the script's globals (`optimizer1`: a stand-in whose zero_grad does nothing, `n_top1`, `accuracy` from
mylib.utils). mylib.models (VAE_CIFAR10, including its never-called ResNet-34 y_encoder) and tools.py are imported
unchanged. While the original runs, `torch.Tensor.cuda` is a no-op; the random draws are replaced by stored ones:
`torch.Tensor.exponential_` (inside F.gumbel_softmax) copies the stored Exp(1) draws, `torch.rand_like` (the
uniform reparameterisation noise) returns the stored U[0, 1) draws. In tools.py, `np.random.randn` (the
projection W), `np.random.choice` (the per-sample draw, whose `p` is the flip-probability row) and
`stats.truncnorm(...).rvs` (the flip rates q) are recorded through pass-through wrappers; numpy's global RNG
seeded by the original itself makes the draws. CPU, float32.
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
from make_dividemix import (Loader, TorchProxy, args_ns, cuda_is_a_noop, draw_epoch, epoch_loaders,  # noqa: E402
                            recording_backward, tiny_pair, to_tensor)

OUT = HERE / "instancegm"
NEEDED = ("train_vae", "vae_loss", "log_standard_categorical")
SMALL = 4096   # gradients of tensors up to this size are stored whole; larger ones as a fixed sample and sums


@contextlib.contextmanager
def patched(obj, name, value):
    saved = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, saved)


def grad_summary(name: str, grad: torch.Tensor) -> dict:
    flat = grad.detach().reshape(-1)
    if flat.numel() <= SMALL:
        return {f"grad/{name}": flat.numpy()}
    idx = torch.linspace(0, flat.numel() - 1, 256).round().long()
    return {f"gradsample/{name}": flat[idx].numpy(), f"gradsum/{name}": flat.sum().numpy(),
            f"gradabs/{name}": flat.abs().sum().numpy()}


def golden_vae(checkout: Path) -> dict:
    import mylib.models as models
    from mylib.utils import AverageMeter, accuracy

    tree = ast.parse((checkout / "instanceGM.py").read_text())
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in NEEDED]
    assert sorted(n.name for n in keep) == sorted(NEEDED)
    ns = {"torch": torch, "F": F, "nn": nn, "np": np, "accuracy": accuracy, "n_top1": AverageMeter("Acc@1", ":6.2f"),
          "optimizer1": types.SimpleNamespace(zero_grad=lambda: None)}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(checkout / "instanceGM.py"), "exec"), ns)

    c, z_dim, n = 10, 25, 4
    rng = np.random.default_rng(5)
    torch.manual_seed(0)
    vae = models.VAE_CIFAR10(z_dim=z_dim, num_classes=c)
    names = [k for k in vae.state_dict() if not k.startswith("y_encoder.")]
    shapes = [tuple(vae.state_dict()[k].shape) for k in names]
    vae.load_state_dict(recipe_state(names, shapes), strict=False)
    torch.manual_seed(1)
    net = TinyNet(c)
    net_init = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.from_numpy(rng.random((n, 3, 32, 32), dtype=np.float32))
    targets = torch.from_numpy(rng.integers(0, c, n))
    exponentials = torch.from_numpy(rng.exponential(size=(n, c)).astype(np.float32))
    uniforms = torch.from_numpy(rng.random((n, z_dim), dtype=np.float32))

    def exponential_(self, *a, **k):
        assert self.shape == exponentials.shape
        return self.copy_(exponentials)

    def rand_like(t, *a, **k):
        assert t.shape == uniforms.shape
        return uniforms.clone().to(t)

    net.train()
    with patched(torch.Tensor, "cuda", lambda self, *a, **k: self), \
            patched(torch.Tensor, "exponential_", exponential_), patched(torch, "rand_like", rand_like):
        loader = [(x, targets, None)]
        loss, l1, l2, l3, l4 = ns["train_vae"](loader, torch.device("cpu"), net, vae)
    loss.backward()
    out = {"x": x.numpy(), "targets": targets.numpy(), "exponentials": exponentials.numpy(),
           "uniforms": uniforms.numpy(), "z_dim": np.int64(z_dim), "vae_names": np.array(names),
           "vae_shape_lengths": np.array([len(s) for s in shapes]),
           "vae_shapes_flat": np.concatenate([np.array(s, dtype=np.int64) for s in shapes if len(s)]),
           "loss": loss.detach().numpy(), "l1": l1.detach().numpy(), "l2": l2.detach().numpy(),
           "l3": l3.detach().numpy(), "l4": l4.detach().numpy()}
    out.update(state_to_arrays(net_init, "net"))
    for name, p in net.named_parameters():
        out[f"netgrad/{name}"] = p.grad.numpy()
    for name, p in vae.named_parameters():
        if not name.startswith("y_encoder."):
            assert p.grad is not None, name
            out.update(grad_summary(name, p.grad))
        else:
            assert p.grad is None   # the y_encoder is never called
    for name, buf in vae.named_buffers():   # BN statistics after the train-mode forward
        if not name.startswith("y_encoder.") and "running" in name:
            out[f"buffer/{name}"] = buf.numpy()
    return out


LOOP = ("train", "train_vae", "vae_loss", "log_standard_categorical", "eval_train", "linear_rampup", "SemiLoss",
        "adjust_learning_rate")
VAE_BATCH = 4


class VaeLoader(Loader):
    """The warm-up loader train_vae draws from: each `enumerate(train_loader)` starts a fresh shuffled pass, of which
    train_vae takes the first batch; here each pass is the next stored batch."""

    def __init__(self, batches):
        super().__init__(None, 0, VAE_BATCH)
        self.queue = list(batches)

    def __iter__(self):
        return iter([self.queue.pop(0)])


def delta_summary(prefix: str, name: str, after: torch.Tensor, before: torch.Tensor) -> dict:
    """after - before of one parameter: whole up to SMALL elements, else 256 fixed positions and the sum of |.|."""
    flat = (after - before).detach().reshape(-1)
    if flat.numel() <= SMALL:
        return {f"{prefix}/{name}": flat.numpy()}
    idx = torch.linspace(0, flat.numel() - 1, 256).round().long()
    return {f"{prefix}/{name}": flat[idx].numpy(), f"{prefix}abs/{name}": flat.abs().sum().numpy()}


def golden_joint(checkout: Path) -> dict:
    """One semi-supervised epoch of instanceGM.py's main loop (epoch 12, warm-up 10): eval_train of both networks,
    then `train` of net1 (with vae_model1 and its Adam) on net2's division and of net2 (with vae_model2) on net1's,
    each iteration one loss L_DM + L_VAE (train_vae's fresh batch through the network and its VAE), one backward,
    the SGD and the Adam step. Draws: as the DivideMix golden's, plus per iteration the VAE batch (indices into the
    training set; its view is the iteration's fifth stored augmentation), the Gumbel sample's Exp(1) draws and the
    uniform reparameterisation noise."""
    import mylib.models as models
    from mylib.utils import AverageMeter, accuracy

    c, z_dim, n, side, b, epoch, warm_up, pad, eval_b = 10, 25, 16, 32, 2, 12, 10, 4, 8
    rng = np.random.default_rng(21)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    noisy = rng.integers(0, c, n)
    gmm_seeds = rng.integers(0, 2**31, 2)
    nets = list(tiny_pair(9, c))
    vaes = []
    for k in range(2):
        torch.manual_seed(k)
        vae = models.VAE_CIFAR10(z_dim=z_dim, num_classes=c)
        names = [key for key in vae.state_dict() if not key.startswith("y_encoder.")]
        shapes = [tuple(vae.state_dict()[key].shape) for key in names]
        vae.load_state_dict(recipe_state(names, shapes, base=1000 + 5000 * k), strict=False)
        vaes.append(vae)
    init = [{k: v.clone() for k, v in net.state_dict().items()} for net in nets]
    vae_init = [{k: v.clone() for k, v in vae.state_dict().items()} for vae in vaes]
    opts = [torch.optim.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4) for net in nets]
    adams = {f"vae{k + 1}": torch.optim.Adam(vaes[k].parameters(), lr=0.001) for k in range(2)}

    tree = ast.parse((checkout / "instanceGM.py").read_text())
    keep = [node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in LOOP]
    assert sorted(node.name for node in keep) == sorted(LOOP)
    proxy = TorchProxy(n_samples=n)
    betas: list = []

    class NpProxy(types.ModuleType):   # numpy, with the stored Beta draws
        random = types.SimpleNamespace(beta=lambda a, b_: betas.pop(0))

        def __getattr__(self, name):
            return getattr(np, name)

    vae_args = types.SimpleNamespace(lr=0.001, EPOCHS=300, epoch_decay_start=1000, forget_rate=0.5, exponent=1,
                                     num_gradual=10)
    ns = {"sys": sys, "torch": proxy, "F": F, "nn": nn, "np": NpProxy("numpy"), "accuracy": accuracy,
          "n_top1": AverageMeter("Acc@1", ":6.2f"), "optimizer1": opts[0], "args": args_ns(batch_size=b, num_class=c),
          "warm_up": warm_up, "CE": nn.CrossEntropyLoss(reduction="none"), "vae_args": vae_args, "mom1": 0.9,
          "mom2": 0.1, "optimizers": adams, "device": torch.device("cpu")}
    from sklearn.mixture import GaussianMixture

    ns["GaussianMixture"] = GaussianMixture
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(checkout / "instanceGM.py"), "exec"), ns)
    ns["criterion"] = ns["SemiLoss"]()
    ns["eval_loader"] = [(to_tensor(images[i:i + eval_b]), torch.from_numpy(noisy[i:i + eval_b]),
                          torch.arange(i, min(i + eval_b, n))) for i in range(0, n, eval_b)]
    vae_parts: list = []

    def vae_loss(*a):   # the original's, recording its terms and the label its noisy-label term is trained against
        out = ns["original_vae_loss"](*a)
        vae_parts.append([float(v.detach()) for v in out] + [a[3].clone()])
        return out

    ns["original_vae_loss"], ns["vae_loss"] = ns["vae_loss"], vae_loss
    exps: list = []
    unis: list = []

    def exponential_(self, *a, **k):
        e = exps.pop(0)
        assert self.shape == e.shape
        return self.copy_(e)

    def rand_like(t, *a, **k):
        u = unis.pop(0)
        assert t.shape == u.shape
        return u.clone().to(t)

    out = {"images": images, "noisy": noisy, "epoch": np.int64(epoch), "warm_up": np.int64(warm_up),
           "batch_size": np.int64(b), "pad": np.int64(pad), "eval_batch_size": np.int64(eval_b),
           "gmm_seeds": gmm_seeds, "z_dim": np.int64(z_dim), "vae_batch_size": np.int64(VAE_BATCH),
           "vae_names": np.array(names), "vae_shape_lengths": np.array([len(s) for s in shapes]),
           "vae_shapes_flat": np.concatenate([np.array(s, dtype=np.int64) for s in shapes if len(s)])}
    for k in range(2):
        out.update(state_to_arrays(init[k], f"net{k + 1}_before"))
    probs = []
    with cuda_is_a_noop(), patched(torch.Tensor, "exponential_", exponential_), patched(torch, "rand_like", rand_like):
        for k in range(2):
            np.random.seed(int(gmm_seeds[k]))   # the original's GMM draws its k-means init from numpy's global RNG
            probs.append(ns["eval_train"](nets[k], [])[0])
        for k in range(2):   # net1 (+ vae_model1) on net2's division, then net2 (+ vae_model2) on net1's
            plan = draw_epoch(rng, probs[1 - k], n, b, 5, pad)
            d = plan["draws"]
            iters = int(d["iters"])
            lab, unl, view = epoch_loaders(images, noisy, probs[1 - k], plan, b, 5, pad)
            d["extra_batch"] = np.stack([rng.permutation(n)[:VAE_BATCH] for _ in range(iters)])
            d["exponentials"] = rng.exponential(size=(iters, VAE_BATCH, c)).astype(np.float32)
            d["noise"] = rng.random((iters, VAE_BATCH, z_dim), dtype=np.float32)
            ns["train_loader"] = VaeLoader([(view[it * 5 + 4][ix], torch.from_numpy(noisy[ix]), None)
                                            for it, ix in enumerate(d["extra_batch"])])
            exps[:] = [torch.from_numpy(e) for e in d["exponentials"]]
            unis[:] = [torch.from_numpy(u) for u in d["noise"]]
            betas[:] = list(d["beta"])
            proxy.perms[:] = [torch.from_numpy(d[f"mix_perm/{it}"]) for it in range(iters)]
            vae_parts.clear()
            losses: list = []
            with recording_backward(losses):
                ns["train"](epoch, nets[k], nets[1 - k], opts[k], lab, unl, vaes[k], vaes[1 - k],
                            adams[f"vae{k + 1}"], net_1=(k == 0))
            assert not betas and not proxy.perms and not exps and not unis and not ns["train_loader"].queue
            assert len(losses) == iters == len(vae_parts)
            out.update({f"k{k}/{key}": value for key, value in d.items()})
            out.update({f"k{k}/loss": np.array([float(v) for v in losses]),
                        f"k{k}/vae_targets": torch.stack([p[5] for p in vae_parts]).numpy()})
            for j, key in enumerate(("vae", "recon", "noisy_ce", "prior", "kl")):
                out[f"k{k}/{key}"] = np.array([p[j] for p in vae_parts])
    out.update({"prob1": probs[0], "prob2": probs[1]})
    for k in range(2):
        out.update(state_to_arrays(nets[k].state_dict(), f"net{k + 1}_after"))
        for name, value in vaes[k].state_dict().items():
            if name.startswith("y_encoder."):
                continue
            if "running" in name or "num_batches" in name:
                out[f"vae{k + 1}_buffer/{name}"] = value.numpy()
            else:
                out.update(delta_summary(f"vae{k + 1}_delta", name, value, vae_init[k][name]))
    return out


def golden_vae_animal(checkout: Path) -> dict:
    """VAE_ANIMAL (64x64, z_dim 64, the decoder's extra 2x2 stage) through BaseVAE.forward in eval mode: the state-dict
    mapping and the outputs. The input images come from torch.Generator(seed), so only the seed is stored."""
    import mylib.models as models

    c, z_dim, n, seed = 10, 64, 2, 77
    vae = models.VAE_ANIMAL(z_dim=z_dim, num_classes=c)
    names = [k for k in vae.state_dict() if not k.startswith("y_encoder.")]
    shapes = [tuple(vae.state_dict()[k].shape) for k in names]
    vae.load_state_dict(recipe_state(names, shapes), strict=False)
    torch.manual_seed(2)
    net = TinyNet(c)
    x = torch.rand((n, 3, 64, 64), generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(8)
    exponentials = torch.from_numpy(rng.exponential(size=(n, c)).astype(np.float32))
    uniforms = torch.from_numpy(rng.random((n, z_dim), dtype=np.float32))
    vae.eval()
    net.eval()
    with torch.no_grad(), patched(torch.Tensor, "exponential_", lambda self, *a, **k: self.copy_(exponentials)), \
            patched(torch, "rand_like", lambda t, *a, **k: uniforms.clone().to(t)):
        x_hat, n_logits, mu, logvar, _, y_hat = vae(x, net)
    flat = x_hat.reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, 256).round().long()
    out = {"x_seed": np.int64(seed), "z_dim": np.int64(z_dim), "exponentials": exponentials.numpy(),
           "uniforms": uniforms.numpy(), "vae_names": np.array(names),
           "vae_shape_lengths": np.array([len(s) for s in shapes]),
           "vae_shapes_flat": np.concatenate([np.array(s, dtype=np.int64) for s in shapes if len(s)]),
           "n_logits": n_logits.numpy(), "mu": mu.numpy(), "logvar": logvar.numpy(), "y_hat": y_hat.numpy(),
           "x_hat_sample": flat[idx].numpy(), "x_hat_sum": flat.sum().numpy()}
    out.update(state_to_arrays(net.state_dict(), "net"))
    return out


def golden_ptd(checkout: Path) -> dict:
    import tools
    from scipy import stats as scipy_stats

    rec = {"choice_p": [], "randn": [], "q": []}

    class NpRandom(types.ModuleType):
        def __getattr__(self, name):
            return getattr(np.random, name)

        def randn(self, *shape):
            w = np.random.randn(*shape)
            rec["randn"].append(w)
            return w

        def choice(self, a, size=None, replace=True, p=None):
            if p is not None:
                rec["choice_p"].append(np.array(p))
            return np.random.choice(a, size, replace, p)

    class NpProxy(types.ModuleType):
        random = NpRandom("numpy.random")

        def __getattr__(self, name):
            return getattr(np, name)

    class Truncnorm:
        def __init__(self, *a, **k):
            self.dist = scipy_stats.truncnorm(*a, **k)

        def rvs(self, *a, **k):
            q = self.dist.rvs(*a, **k)
            rec["q"].append(q)
            return q

    stats_proxy = types.SimpleNamespace(truncnorm=Truncnorm)
    out = {}
    for tag, high, n, side, rate in (("low", 4, 64, 4, 0.4), ("full", 256, 300, 8, 0.45)):
        rng = np.random.default_rng(6 if tag == "low" else 7)
        c = 10
        images = rng.integers(0, high, (n, side, side, 3), dtype=np.uint8)
        labels = rng.integers(0, c, n)
        for v in rec.values():
            v.clear()
        data_ = torch.from_numpy(images).float()
        targets_ = torch.IntTensor(labels)
        with patched(torch.Tensor, "cuda", lambda self, *a, **k: self), patched(tools, "np", NpProxy("numpy")), \
                patched(tools, "stats", stats_proxy):
            noisy = tools.get_instance_noisy_label(rate, zip(data_, targets_), torch.FloatTensor(labels),
                                                   num_classes=c, feature_size=side * side * 3, norm_std=0.1,
                                                   seed=123)
        out.update({f"{tag}/images": images, f"{tag}/labels": labels, f"{tag}/rate": np.float64(rate),
                    f"{tag}/noisy": np.asarray(noisy, dtype=np.int64),
                    f"{tag}/P": np.stack(rec["choice_p"]).astype(np.float32)})
        if tag == "low":
            out.update({"low/q": np.asarray(rec["q"][0]), "low/W": rec["randn"][0].astype(np.float32)})
    return out


def main(argv) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "instanceGM.py").is_file():
        print("usage: make_instancegm.py ORIGINAL_INSTANCEGM_CHECKOUT (the folder holding instanceGM.py)",
              file=sys.stderr)
        return 2
    checkout = Path(argv[0]).resolve()
    sys.path.insert(0, str(checkout))
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    for name, fn in (("vae_step", golden_vae), ("joint_epoch", golden_joint), ("vae_animal_forward", golden_vae_animal),
                     ("ptd_noise", golden_ptd)):
        np.savez_compressed(OUT / f"{name}.npz", **fn(checkout))
        print(f"wrote {OUT / name}.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
