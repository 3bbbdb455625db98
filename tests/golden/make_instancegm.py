"""Golden files for InstanceGM from the original code (arpit2412/InstanceGM at 39cf8a4): the generative (VAE) part
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
    for name, fn in (("vae_step", golden_vae), ("vae_animal_forward", golden_vae_animal), ("ptd_noise", golden_ptd)):
        np.savez_compressed(OUT / f"{name}.npz", **fn(checkout))
        print(f"wrote {OUT / name}.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
