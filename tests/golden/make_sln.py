"""Golden numbers for SLN from the authors' code: `python tests/golden/make_sln.py ORIGINAL_SLN_CHECKOUT`.

The checkout (chenpf1025/SLN) is put on sys.path and its functions are imported: `utils.train_noise`,
`utils.get_output`, `utils.WeightEMA` and `networks.wideresnet.Wide_ResNet`. Its training script runs argparse and
CUDA at module level, so it is never imported: the hyperparameters are read from its syntax tree, and the label
correction statements (the body of its `if epoch > args.correction:` block) are compiled from that tree and executed
with stand-ins for the objects they use; so is its whole epoch loop (`sln_loop.npz`: one SLN epoch, then two
label-correction epochs), whose batches are those the kit's DeviceBatcher gives a run (imported from this project:
the inputs only). Everything runs on CPU with small seeded inputs; see golden/sln/README.md.

This module also holds what the golden test needs to rebuild the inputs in pure torch (no checkout): the tiny
network of the training-step golden and the per-tensor weight recipe of the WRN-28-2 golden.
"""

from __future__ import annotations

import ast
import inspect
import sys
from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "sln"
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # this project, for the kit's DeviceBatcher (the loop goldens' inputs)
    sys.path.insert(0, str(ROOT))
NUM_CLASSES = 10
SIGMA = 1.0  # CIFAR-10 sym (the official README's command)


# ------------------------------------------------------------------ shared with tests/test_golden_sln.py

def tiny_net(num_classes: int = NUM_CLASSES) -> nn.Module:
    """The network of the training-step golden: conv (biased) + BN + ReLU + pooling + linear."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))


def recipe_tensor(index: int, name: str, shape) -> torch.Tensor:
    """Deterministic weights for state-dict entry `index` (its position in the original's ordered state dict):
    torch.Generator seeded with the index. Conv/linear weights ~ N(0, 1/fan_in), BN scales 1 + 0.1 N(0, 1), biases
    and running means 0.1 N(0, 1), running variances U(0.5, 1.5)."""
    g = torch.Generator().manual_seed(1000 + index)
    shape = tuple(int(s) for s in shape)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    if name.endswith("weight") and len(shape) >= 2:
        return noise * (1.0 / float(np.prod(shape[1:]))) ** 0.5
    if name.endswith("weight"):
        return 1.0 + 0.1 * noise
    return 0.1 * noise


def apply_recipe(model: nn.Module) -> list[str]:
    """Overwrite every floating-point state-dict entry of `model` by the recipe, in state-dict order; returns the
    names (integer buffers keep their value)."""
    names = []
    with torch.no_grad():
        for i, (name, value) in enumerate(model.state_dict().items()):
            names.append(name)
            if value.dtype.is_floating_point:
                value.copy_(recipe_tensor(i, name, value.shape))
    return names


# ------------------------------------------------------------------ the generator

class _FloatState:
    """What WeightEMA reads of a model (`state_dict()`), without the integer buffers: the original skips them by
    the type string 'torch.cuda.LongTensor', so on CPU it would call mul_ on num_batches_tracked and fail. On
    CUDA it leaves them alone, which this reproduces without patching its source."""

    def __init__(self, model: nn.Module):
        self.model = model

    def state_dict(self):
        return OrderedDict((k, v) for k, v in self.model.state_dict().items() if v.dtype.is_floating_point)


class _Loader:
    """One fixed batch, iterated as a DataLoader (no shuffling, no draw from torch's global generator)."""

    def __init__(self, batches):
        self.batches = batches
        self.dataset = range(sum(len(b[1]) for b in batches))

    def __iter__(self):
        return iter(self.batches)


class _GivenOutputs(nn.Module):
    """A 'network' whose outputs are given: input = sample indices. The zero parameter gives SGD something to
    step (its value never changes the outputs' bits)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.zero = nn.Parameter(torch.zeros(()))

    def forward(self, idx):
        return self.logits[idx] + 0.0 * self.zero


def _script_tree(checkout: Path) -> ast.Module:
    return ast.parse((checkout / "noise_cifar_train.py").read_text())


def _hyperparameters(tree: ast.Module, weight_ema) -> dict:
    """lr (argparse default), momentum and weight decay (the optim.SGD call), EMA alpha (WeightEMA's default)."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            args = node.args
            first = args[0].value if args and isinstance(args[0], ast.Constant) else None
            if node.func.attr == "add_argument" and first == "--lr":
                found["lr"] = next(ast.literal_eval(k.value) for k in node.keywords if k.arg == "default")
            if node.func.attr == "SGD":
                for k in node.keywords:
                    if k.arg in ("momentum", "weight_decay"):
                        found[k.arg] = ast.literal_eval(k.value)
    found["ema_alpha"] = inspect.signature(weight_ema).parameters["alpha"].default
    assert set(found) == {"lr", "momentum", "weight_decay", "ema_alpha"}, found
    return found


def _label_correction_block(tree: ast.Module):
    """The statements of `if epoch > args.correction:` inside the epoch loop, compiled."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and \
                ast.unparse(node.test) == "epoch > args.correction":
            return compile(ast.Module(body=node.body, type_ignores=[]), "noise_cifar_train.py", "exec")
    raise SystemExit("the label-correction block of noise_cifar_train.py was not found")


def golden_train_step(utils, hp: dict) -> dict:
    """Three SLN steps (sigma, one-hot targets, given Gaussian draws) then one label-correction-phase step (sigma 0,
    float64 soft targets) of utils.train_noise with SGD and WeightEMA, on tiny_net with recipe weights."""
    batch, steps = 8, 3
    g = torch.Generator().manual_seed(7)
    x = torch.randn(steps + 1, batch, 3, 6, 6, generator=g)
    labels = torch.randint(0, NUM_CLASSES, (steps, batch), generator=g)
    soft = torch.rand(batch, NUM_CLASSES, generator=g, dtype=torch.float64)
    soft = soft / soft.sum(1, keepdim=True)
    net, ema_net = tiny_net(), tiny_net()
    names = apply_recipe(ema_net)  # the original copies the EMA net into the live one (WeightEMA.__init__)
    for p in ema_net.parameters():
        p.detach_()
    ema = utils.WeightEMA(_FloatState(net), _FloatState(ema_net))
    optimizer = torch.optim.SGD(net.parameters(), lr=hp["lr"], momentum=hp["momentum"],
                                weight_decay=hp["weight_decay"])
    args = SimpleNamespace(num_class=NUM_CLASSES, sigma=SIGMA)
    xi, losses = [], []
    for step in range(steps + 1):
        if step == steps:  # the LC phase: sigma is 0 and the targets are the float64 soft ones
            args.sigma, target = 0, soft
        else:
            target = labels[step]
        torch.manual_seed(100 + step)
        draw = torch.randn(batch, NUM_CLASSES)  # what train_noise draws next: torch.randn(target.size())
        # the draw is the one used: the loss with it on a copy of the net equals train_noise's loss
        probe = tiny_net()
        probe.load_state_dict(net.state_dict())
        onehot = nn.functional.one_hot(target, NUM_CLASSES).float() if target.dim() == 1 else target
        used = onehot + args.sigma * draw if args.sigma > 0 else onehot
        expected = -torch.mean(torch.sum(nn.functional.log_softmax(probe(x[step]), dim=1) * used, dim=1)).item()
        torch.manual_seed(100 + step)
        loss, _ = utils.train_noise(args, net, "cpu", _Loader([(x[step], target.clone())]), optimizer, 1, ema)
        assert loss == expected, (loss, expected)
        xi.append(draw.numpy())
        losses.append(loss)
    out = {"x": x.numpy(), "labels": labels.numpy(), "soft_targets": soft.numpy(), "xi": np.stack(xi[:steps]),
           "sigma": np.float64(SIGMA), "losses": np.array(losses, dtype=np.float64),
           "names": np.array(names), **{k: np.float64(v) for k, v in hp.items()}}
    for prefix, model in (("live", net), ("ema", ema_net)):
        for name, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                out[f"{prefix}/{name}"] = value.detach().numpy()
    return out


def golden_loss_float64(utils) -> dict:
    """The loss on float64 soft targets (label-correction phase, sigma 0) from utils.train_noise, with given
    outputs whose fp32 log-softmax is exact (every other logit at least 104 below the largest, so the softmax sum is
    exactly 1): what remains is the precision of the product and the sum, float64 in the original."""
    batch = 8
    g = torch.Generator().manual_seed(11)
    logits = -torch.randint(105, 400, (batch, NUM_CLASSES), generator=g).float()
    logits[torch.arange(batch), torch.randint(0, NUM_CLASSES, (batch,), generator=g)] = 0.0
    targets = torch.rand(batch, NUM_CLASSES, generator=g, dtype=torch.float64)
    targets = targets / targets.sum(1, keepdim=True)
    model = _GivenOutputs(logits)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    args = SimpleNamespace(num_class=NUM_CLASSES, sigma=0)
    loss, _ = utils.train_noise(args, model, "cpu", _Loader([(torch.arange(batch), targets.clone())]), optimizer, 1)
    return {"logits": logits.numpy(), "targets": targets.numpy(), "loss": np.float64(loss)}


def golden_label_correction(utils, block) -> dict:
    """Two label-correction epochs of noise_cifar_train.py on given EMA outputs: the first with the noisy integer
    labels as the current targets, the second with the first's corrected (float64) targets."""
    n = 64
    g = torch.Generator().manual_seed(5)
    noisy = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    logits = [3.0 * torch.randn(n, NUM_CLASSES, generator=g) for _ in range(2)]
    # one sample whose label has a probability far below 1e-12: its loss (about 60) dominates the min-max
    logits[0][3] = 0.0
    logits[0][3, (noisy[3] + 1) % NUM_CLASSES] = 60.0

    class _Dataset(list):  # what the block rebuilds its loader from
        targets = None

    dataset = _Dataset(range(n))
    dataset.targets = noisy.tolist()
    args = SimpleNamespace(num_class=NUM_CLASSES, sigma=SIGMA, batch_size=32, correction=0)
    new = []
    for epoch, epoch_logits in enumerate(logits):
        current = torch.as_tensor(np.asarray(dataset.targets))
        loader = _Loader([(torch.arange(s, s + 32), current[s:s + 32]) for s in range(0, n, 32)])
        names = {"log": lambda *a: None, "logpath": None, "args": args, "get_output": utils.get_output,
                 "ema_net": _GivenOutputs(epoch_logits), "device": "cpu", "train_eval_loader": loader, "np": np,
                 "noisy_targets": np.eye(NUM_CLASSES)[noisy.numpy()], "train_dataset": dataset, "torch": torch,
                 "kwargs": {}}
        exec(block, names)
        assert args.sigma == 0 and dataset.targets is names["targets"]
        new.append(np.asarray(dataset.targets))
    return {"noisy": noisy.numpy(), "logits": torch.stack(logits).numpy(), "new_targets": np.stack(new)}


# the loop golden: three epochs of the script's epoch loop, the second and third after label correction starts
LOOP = {"n": 16, "test_n": 4, "size": 6, "batch_size": 8, "epochs": 3, "correction": 1, "sigma": 0.5, "seed": 0,
        "lr": 0.1, "ema_alpha": 0.9}
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the script's CIFAR-10 Normalize


def loop_inputs() -> dict:
    """The loop golden's images (uint8, NHWC) and noisy labels, seeded (pure numpy: the test rebuilds them)."""
    rng = np.random.default_rng(2021)
    n, m, s = LOOP["n"], LOOP["test_n"], LOOP["size"]
    return {"train_images": rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8),
            "noisy": rng.integers(0, NUM_CLASSES, n).astype(np.int64),
            "test_images": rng.integers(0, 256, (m, s, s, 3), dtype=np.uint8),
            "test_labels": rng.integers(0, NUM_CLASSES, m).astype(np.int64)}


def loop_batches(images: np.ndarray, epoch: int, shuffle: bool):
    """The (indices, normalised pixels) batches the kit's run sees in `epoch` (0-based): its DeviceBatcher with the
    run's seed, no crop or flip. Batch order and pixels are inputs here (the same for both sides), not under test."""
    from nlkit.data import DeviceBatcher  # noqa: E402  (the kit's loader, for the inputs only)

    batcher = DeviceBatcher(images, batch_size=LOOP["batch_size"] if shuffle else len(images), shuffle=shuffle,
                            crop_padding=0, flip=False, seed=LOOP["seed"], device="cpu", mean=MEAN, std=STD)
    return [(b.idx.clone(), b.x.clone()) for b in batcher.epoch(epoch)]


class _DatasetLoader:
    """A DataLoader over the script's train_dataset: the kit's batches of the epoch it is told (set by
    train_noise's stand-in) or of the in-order pass, the targets read from `dataset.targets` when iterated, as a
    DataLoader reads its dataset (integer labels, then the float64 corrected targets)."""

    def __init__(self, dataset, images, shuffle: bool):
        self.dataset, self.images, self.shuffle, self.epoch = dataset, images, shuffle, 0

    def __iter__(self):
        targets = np.asarray(self.dataset.targets)
        for idx, x in loop_batches(self.images, self.epoch, self.shuffle):
            yield x, torch.as_tensor(targets[idx.numpy()])


def _epoch_loop(tree: ast.Module):
    """The script's `for epoch in range(1, args.epochs + 1):` loop (label correction, train_noise, the tests) and
    its two statements that make `noisy_targets`, compiled."""
    loop = [n for n in tree.body if isinstance(n, ast.For) and ast.unparse(n.target) == "epoch"]
    onehot = [n for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "noisy_targets"]
    if len(loop) != 1 or len(onehot) != 2:
        raise SystemExit("the epoch loop of noise_cifar_train.py was not found")
    return compile(ast.Module(body=onehot + loop, type_ignores=[]), "noise_cifar_train.py", "exec")


def golden_sln_loop(utils, tree: ast.Module, hp: dict) -> dict:
    """The script's epoch loop, executed: epoch 1 trains with SLN (sigma 0.5), epochs 2 and 3 start with label
    correction (correction = 1: `epoch > args.correction`), which sets sigma to 0 and retargets train_dataset.
    The nets are make_sln.tiny_net with recipe weights; SGD at lr 0.1 and EMA alpha 0.9 so that weight decay,
    momentum and the EMA's update order move the weights by more than the tolerance."""
    inputs = loop_inputs()
    images = inputs["train_images"]

    class _Dataset(list):
        targets = None

    train_dataset = _Dataset(range(len(images)))
    train_dataset.targets = inputs["noisy"].tolist()
    net, ema_net = tiny_net(), tiny_net()
    names = apply_recipe(ema_net)
    for p in ema_net.parameters():
        p.detach_()
    optimizer = torch.optim.SGD(net.parameters(), lr=LOOP["lr"], momentum=hp["momentum"],
                                weight_decay=hp["weight_decay"])
    ema_optimizer = utils.WeightEMA(_FloatState(net), _FloatState(ema_net), alpha=LOOP["ema_alpha"])
    args = SimpleNamespace(num_class=NUM_CLASSES, batch_size=LOOP["batch_size"], epochs=LOOP["epochs"],
                           correction=LOOP["correction"], sigma=LOOP["sigma"])
    out = {"losses": [], "sigma": [], "targets": [], "xi": [], "order": []}

    def train_noise(args, model, device, loader, optimizer, epoch, ema_optimizer=None):
        loader.epoch = epoch - 1
        batches = loop_batches(images, epoch - 1, shuffle=True)
        out["order"].append(np.concatenate([idx.numpy() for idx, _ in batches]))
        if args.sigma > 0:  # the draws train_noise makes next, torch.randn(target.size()) per batch, in order
            torch.manual_seed(100 + epoch)
            out["xi"].append(np.stack([torch.randn(len(idx), NUM_CLASSES).numpy() for idx, _ in batches]))
            torch.manual_seed(100 + epoch)
        targets = np.asarray(train_dataset.targets)
        out["targets"].append(np.eye(NUM_CLASSES)[targets] if targets.ndim == 1 else targets)
        out["sigma"].append(float(args.sigma))
        loss, acc = utils.train_noise(args, model, device, loader, optimizer, epoch, ema_optimizer)
        out["losses"].append(loss)
        for prefix, m in (("live", net), ("ema", ema_net)):
            for name, value in m.state_dict().items():
                if value.dtype.is_floating_point:
                    out[f"epoch{epoch}/{prefix}/{name}"] = value.detach().numpy().copy()
        return loss, acc

    def data_loader(dataset, batch_size, shuffle, **kwargs):
        assert dataset is train_dataset and batch_size == LOOP["batch_size"] and shuffle
        return _DatasetLoader(dataset, images, shuffle=True)

    names_used = {
        "args": args, "log": lambda *a: None, "logpath": None, "time": __import__("time"), "np": np,
        "get_output": utils.get_output, "train_noise": train_noise, "test": lambda *a, **k: (0.0, 0.0),
        "net": net, "ema_net": ema_net, "optimizer": optimizer, "ema_optimizer": ema_optimizer, "device": "cpu",
        "train_dataset": train_dataset, "train_loader": _DatasetLoader(train_dataset, images, shuffle=True),
        "train_eval_loader": _DatasetLoader(train_dataset, images, shuffle=False), "test_loader": None,
        "torch": SimpleNamespace(utils=SimpleNamespace(data=SimpleNamespace(DataLoader=data_loader))),
        "kwargs": {},
    }
    exec(_epoch_loop(tree), names_used)
    assert args.sigma == 0 and len(out["losses"]) == LOOP["epochs"]
    return {**inputs, **{k: np.float64(v) for k, v in LOOP.items()}, "mean": np.array(MEAN), "std": np.array(STD),
            "momentum": np.float64(hp["momentum"]), "weight_decay": np.float64(hp["weight_decay"]),
            "names": np.array(names), "losses": np.array(out.pop("losses")),
            "sigma_used": np.array(out.pop("sigma")),
            "targets": np.stack(out.pop("targets")), "xi": np.stack(out.pop("xi")),
            "order": np.stack(out.pop("order")), **out}


def golden_wrn(wide_resnet) -> dict:
    """WRN-28-2 (C = 10) with recipe weights: eval-mode and train-mode logits on 2 fixed inputs, and the head BN's
    running statistics after the train-mode pass (its momentum is 0.9)."""
    model = wide_resnet(num_classes=NUM_CLASSES)
    names = apply_recipe(model)
    shapes = [list(v.shape) for v in model.state_dict().values()]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.eval()
        eval_logits = model(x)
        model.train()
        train_logits = model(x)
    return {"names": np.array(names), "shape_offsets": np.cumsum([0] + [len(s) for s in shapes]),
            "shapes": np.array([d for s in shapes for d in s], dtype=np.int64), "x": x.numpy(),
            "eval_logits": eval_logits.numpy(), "train_logits": train_logits.numpy(),
            "bn_running_mean": model.bn1.running_mean.numpy(), "bn_running_var": model.bn1.running_var.numpy(),
            "num_params": np.int64(sum(p.numel() for p in model.parameters()))}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (Path(argv[0]) / "utils.py").is_file():
        print("usage: make_sln.py ORIGINAL_SLN_CHECKOUT (a chenpf1025/SLN clone)", file=sys.stderr)
        return 2
    checkout = Path(argv[0]).resolve()
    sys.path.insert(0, str(checkout))
    import utils  # noqa: E402  (the checkout's utils.py)
    from networks.wideresnet import Wide_ResNet  # noqa: E402

    torch.set_num_threads(1)
    tree = _script_tree(checkout)
    hp = _hyperparameters(tree, utils.WeightEMA)
    OUT.mkdir(exist_ok=True)
    # at the original's lr 0.001 the weight decay's share of a step (lr * 5e-4 * theta) is below fp32 tolerance:
    # the same steps at lr 0.1 make every SGD term visible
    files = {"train_step": golden_train_step(utils, hp),
             "train_step_lr0.1": golden_train_step(utils, {**hp, "lr": 0.1}),
             "loss_float64": golden_loss_float64(utils),
             "label_correction": golden_label_correction(utils, _label_correction_block(tree)),
             "wrn28_2": golden_wrn(Wide_ResNet),
             "sln_loop": golden_sln_loop(utils, tree, hp)}
    for name, arrays in files.items():
        np.savez_compressed(OUT / f"{name}.npz", **arrays)
        print(f"{name}.npz: {(OUT / f'{name}.npz').stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
