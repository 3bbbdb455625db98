"""SLN against the authors' code (chenpf1025/SLN), through the numbers in tests/golden/sln/ (README there): one
training step, the EMA, label correction, the float64 loss on corrected targets, and WRN-28-2's forward pass."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from golden_compare import assert_close_scaled

from nlkit.data.batcher import Batch
from nlkit.methods import sln
from nlkit.models import WideResNet, wrn_state_dict_from_sln
from nlkit.train import Trainer

GOLDEN = Path(__file__).resolve().parent / "golden" / "sln"
# fp32 computations compared across machines (kernels may round differently): each tensor within float32
# tolerances scaled to its own magnitude, |kit - orig| <= rtol |orig| + atol_rel max|orig| (golden_compare.py)
F32 = {"rtol": 1e-5, "atol_rel": 1e-6}


def _golden(name: str) -> dict:
    with np.load(GOLDEN / f"{name}.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _recipes():
    # the tiny network and the weight recipe are defined once, beside the generator (pure torch, no checkout)
    spec = importlib.util.spec_from_file_location("make_sln", GOLDEN.parent / "make_sln.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _OneBatch:
    def __init__(self, x: torch.Tensor):
        self.x, self.num_samples = x, len(x)

    def __iter__(self):
        yield Batch(self.x, None, torch.arange(self.num_samples))


def test_kit_defaults_are_the_original_hyperparameters():
    g = _golden("train_step")
    cfg = sln.SLNConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.ema_decay) == (
        g["lr"], g["momentum"], g["weight_decay"], g["ema_alpha"])


@pytest.mark.parametrize("float64", [False, True])
@pytest.mark.parametrize("golden", ["train_step", "train_step_lr0.1"])
def test_training_steps_and_ema_match_the_original(golden, float64):
    """Three SLN steps (given Gaussian draws) and one LC-phase step on float64 soft targets, through the kit's
    Trainer with SLNConfig's SGD and EMA settings: equal losses, live weights and EMA state (BN statistics
    included). The LC-phase step's targets are float64 as the original's; with fp32 targets (`float64=False`, the
    kit's fp32 LC) the step agrees to fp32 precision as well. `train_step_lr0.1` repeats the steps at lr 0.1, where
    the weight decay's share of the update exceeds the fp32 tolerance (at 0.001 it does not)."""
    g, recipes = _golden(golden), _recipes()
    torch.manual_seed(0)
    model = recipes.tiny_net()
    names = recipes.apply_recipe(model)
    assert names == list(g["names"])
    cfg = sln.SLNConfig()
    trainer = Trainer(model, lr=float(g["lr"]), momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                      ema_decay=cfg.ema_decay, device="cpu", bf16=False, channels_last=False)
    losses = []
    for step in range(len(g["losses"])):
        if step < len(g["xi"]):
            onehot = torch.nn.functional.one_hot(torch.as_tensor(g["labels"][step]), 10).float()
            targets = sln.sln_targets(onehot, float(g["sigma"]), None, noise=torch.as_tensor(g["xi"][step]))
        else:
            soft = torch.as_tensor(g["soft_targets"])
            targets = soft if float64 else soft.float()

        def loss_fn(logits, batch, targets=targets):
            per_sample = sln.soft_cross_entropy(logits, targets.index_select(0, batch.idx))
            losses.append(per_sample.mean().item())
            return per_sample

        trainer.train_epoch(_OneBatch(torch.as_tensor(g["x"][step])), loss_fn)
    assert_close_scaled(losses, g["losses"], **F32, name="losses")
    for prefix, net in (("live", trainer.model), ("ema", trainer.ema.model)):
        for name, value in net.state_dict().items():
            if value.dtype.is_floating_point:
                assert_close_scaled(value, g[f"{prefix}/{name}"], **F32, name=f"{prefix} {name}")


def test_loss_on_corrected_targets_is_float64_as_the_original():
    """Given outputs with an exact fp32 log-softmax, so only the product and sum's precision remain: float64
    corrected targets (`lc_float64`, the paper profile) reproduce the original's float64 loss to float64 precision;
    fp32 targets (the kit's default) do not."""
    g = _golden("loss_float64")
    logits, targets = torch.as_tensor(g["logits"]), torch.as_tensor(g["targets"])
    loss = sln.soft_cross_entropy(logits, targets).mean()
    assert loss.dtype == torch.float64
    assert_close_scaled(np.float64(loss.item()), g["loss"], rtol=1e-13, atol_rel=0, name="loss")
    fp32 = sln.soft_cross_entropy(logits, targets.float()).mean().item()
    assert abs(fp32 - g["loss"]) > 1e-10 * abs(g["loss"])  # a float32-sized error, far outside the tolerance


@pytest.mark.parametrize("float64", [False, True])
def test_label_correction_matches_the_original(float64):
    """Two LC epochs of noise_cifar_train.py on given EMA outputs: the first from the noisy labels, the second from
    the first's corrected targets. One sample's label has a probability of about 1e-26; its loss (60) sets the
    min-max normalisation of every sample."""
    g = _golden("label_correction")
    dtype = torch.float64 if float64 else torch.float32
    noisy_onehot = torch.nn.functional.one_hot(torch.as_tensor(g["noisy"]), 10).float()
    current = noisy_onehot
    for epoch in range(2):
        log_probs = torch.log_softmax(torch.as_tensor(g["logits"][epoch]), dim=1)
        current = sln.correct_labels(log_probs, current, noisy_onehot, dtype=dtype)
        assert current.dtype == dtype
        assert_close_scaled(current.double(), g["new_targets"][epoch], **F32, name=f"LC epoch {epoch + 1}")


@pytest.mark.parametrize("lc_float64", [False, True])
def test_train_sln_runs_the_originals_epoch_loop(monkeypatch, lc_float64):
    """`train_sln` itself (its epoch function, Trainer and EMA) against the script's epoch loop executed by the
    generator: epoch 1 trains with SLN (sigma 0.5, the stored draws), label correction starts at epoch 2
    (lc_start 1, `epoch > correction`) from the EMA's predictions, switches sigma off and retargets the training
    set; epoch 3 corrects again from the corrected targets. Compared after every epoch: the epoch's loss and
    sigma, the corrected targets, every live and EMA weight and BN buffer. Only the network (the tiny net with
    recipe weights) and the Gaussian draws are handed in."""
    g, recipes = _golden("sln_loop"), _recipes()
    n, c = len(g["noisy"]), 10

    def build_model(arch, num_classes, in_channels, **kwargs):
        model = recipes.tiny_net(num_classes)
        assert recipes.apply_recipe(model) == list(g["names"])
        return model

    draws = [torch.as_tensor(x) for x in g["xi"].reshape(-1, *g["xi"].shape[-2:])]
    real_targets = sln.sln_targets

    def stored_draw(targets, sigma, generator, noise=None):  # the original's xi in place of the run's generator
        assert not sigma or draws, "sigma is still on where the original has switched it off (label correction)"
        return real_targets(targets, sigma, generator, noise=draws.pop(0) if sigma else None)

    corrected, snapshots = [], []
    real_correct = sln.correct_labels

    def recording_correct(*args, **kwargs):
        corrected.append(real_correct(*args, **kwargs))
        return corrected[-1]

    class RecordingTrainer(Trainer):
        def train_epoch(self, batcher, loss_fn, references=None):
            order = torch.cat([b.idx for b in batcher.epoch(batcher.next_epoch)]).numpy()
            np.testing.assert_array_equal(order, g["order"][len(snapshots)], err_msg="batch order (regenerate)")
            stats = super().train_epoch(batcher, loss_fn, references)
            snapshots.append({f"{prefix}/{k}": v.clone() for prefix, net in (("live", self.model),
                                                                               ("ema", self.ema.model))
                              for k, v in net.state_dict().items() if v.dtype.is_floating_point})
            return stats

    monkeypatch.setattr(sln, "build_model", build_model)
    monkeypatch.setattr(sln, "sln_targets", stored_draw)
    monkeypatch.setattr(sln, "correct_labels", recording_correct)
    monkeypatch.setattr(sln, "Trainer", RecordingTrainer)
    clean = (g["noisy"] + 1) % c  # never trained on: a run that reads it fails
    data = sln.SLNData(g["train_images"], g["noisy"], clean, np.ones(n, bool), g["test_images"],
                       g["test_labels"], [str(k) for k in range(c)], tuple(g["mean"]), tuple(g["std"]), "uint8")
    cfg = sln.SLNConfig(epochs=int(g["epochs"]), batch_size=int(g["batch_size"]), lr=float(g["lr"]),
                        momentum=float(g["momentum"]), weight_decay=float(g["weight_decay"]),
                        sigma=float(g["sigma"]), ema_decay=float(g["ema_alpha"]), lc_start=int(g["correction"]),
                        crop_padding=0, flip=False, bf16=False, channels_last=False, lc_float64=lc_float64)
    run = sln.train_sln(data, cfg, seed=int(g["seed"]), device="cpu", progress=False)
    assert not draws, "sigma was switched off before the original did"
    assert list(run.history["sigma"]) == list(g["sigma_used"])
    assert list(run.history["lc"]) == [e > int(g["correction"]) for e in range(1, int(g["epochs"]) + 1)]
    assert_close_scaled(run.history["loss"].to_numpy(), g["losses"], rtol=1e-5, atol_rel=1e-6, name="losses")
    assert len(corrected) == len(g["targets"]) - 1
    for epoch, targets in enumerate(corrected, start=2):
        assert targets.dtype == (torch.float64 if lc_float64 else torch.float32)
        assert_close_scaled(targets, g["targets"][epoch - 1], **F32, name=f"targets of epoch {epoch}")
    assert run.targets is corrected[-1]
    for epoch, state in enumerate(snapshots, start=1):
        for key, value in state.items():
            assert_close_scaled(value, g[f"epoch{epoch}/{key}"], **F32, name=f"epoch {epoch} {key}")


def test_wrn28_2_forward_with_the_originals_weights():
    """The original's Wide_ResNet with recipe weights, mapped by `wrn_state_dict_from_sln`: equal logits in eval
    and train mode, and the head BN's running statistics after the train-mode pass (momentum 0.9)."""
    g, recipes = _golden("wrn28_2"), _recipes()
    offsets = g["shape_offsets"]
    original = {}
    for i, name in enumerate(g["names"]):
        shape = tuple(g["shapes"][offsets[i]:offsets[i + 1]])
        original[str(name)] = (recipes.recipe_tensor(i, str(name), shape) if not name.endswith("num_batches_tracked")
                               else torch.zeros((), dtype=torch.long))
    model = WideResNet(num_classes=10)
    model.load_state_dict(wrn_state_dict_from_sln(original), strict=True)
    assert sum(p.numel() for p in model.parameters()) == int(g["num_params"]) == 1_469_642
    x = torch.as_tensor(g["x"])
    with torch.no_grad():
        model.eval()
        assert_close_scaled(model(x), g["eval_logits"], **F32, name="eval logits")
        model.train()
        assert_close_scaled(model(x), g["train_logits"], **F32, name="train logits")
    assert_close_scaled(model.bn.running_mean, g["bn_running_mean"], **F32, name="BN running mean")
    assert_close_scaled(model.bn.running_var, g["bn_running_var"], **F32, name="BN running var")


def test_wrn_mapping_rejects_foreign_keys():
    from nlkit.errors import UserError

    with pytest.raises(UserError, match="unexpected key"):
        wrn_state_dict_from_sln({"fc.weight": torch.zeros(1)})


def test_golden_files_are_small():
    assert sum(p.stat().st_size for p in GOLDEN.glob("*.npz")) < 200_000
