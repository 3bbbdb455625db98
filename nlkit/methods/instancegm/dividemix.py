"""DivideMix (Li, Socher and Hoi, ICLR 2020) as a reusable method, in the form InstanceGM builds on.

Two networks; after a cross-entropy warm-up, every epoch each network's per-sample losses are fitted with a
2-component GMM whose low-mean posterior w is the clean probability. Each network then trains on the *other*
network's division (co-divide): the labelled set {w > p_threshold} with refined targets (co-refinement), the rest
unlabelled with targets guessed by both networks (co-guessing), mixed by MixMatch. At test time the two networks'
logits are summed.

Everything runs on the device: the images live in a `DeviceBatcher`, labelled/unlabelled index streams are drawn
with device generators seeded per (run seed, epoch, network), and no loader is built per iteration. A method that
adds a loss to the DivideMix step (InstanceGM's generative module) passes an `ExtraLoss`: called once per
iteration with the network under training, its loss is added before the one backward pass, and its optimizer steps
after the network's.

The numbers follow the DivideMix code (Train_cifar.py) as InstanceGM reuses it (instanceGM.py); see
docs/instancegm.md §4 for the walk-through and §10 for the quirks kept.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...data import DeviceBatcher
from ...hardware import Switch
from ...train import autocast_for
from ..contract import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

# ---------------------------------------------------------------------------------------------- settings

@dataclass
class DivideMixConfig:
    """DivideMix's hyperparameters (CIFAR defaults of the DivideMix/InstanceGM code)."""
    batch_size: PositiveInt = 64                  # labelled and unlabelled batch each (MixMatch batch 4 x this)
    warmup_batch_size: PositiveInt = 128          # warm-up (and the CE baseline): plain CE over all samples
    eval_batch_size: PositiveInt = 512            # eval_train and test passes (no effect on the numbers)
    warmup_epochs: NonNegativeInt = 10
    lr: PositiveFloat = 0.02
    lr_drop_epoch: NonNegativeInt = 150              # 0-based epoch from which lr * lr_drop_factor applies
    lr_drop_factor: PositiveFloat = 0.1
    momentum: Fraction = 0.9
    weight_decay: NonNegativeFloat = 5e-4
    p_threshold: Fraction = 0.5
    temperature: PositiveFloat = 0.5
    alpha: PositiveFloat = 4.0
    lambda_u: NonNegativeFloat = 25.0
    rampup_epochs: PositiveFloat = 16.0
    gmm_max_iter: PositiveInt = 10
    gmm_tol: PositiveFloat = 1e-2
    gmm_reg_covar: NonNegativeFloat = 5e-4
    gmm_loss_average: PositiveInt = 1             # epochs of normalised losses averaged before the GMM (DivideMix: 5 at r=0.9)
    warmup_neg_entropy: bool = False      # DivideMix's confidence penalty during warm-up (asymmetric noise only)
    bf16: Switch = False                  # bf16 autocast (a speed switch: true in `quick`, 'auto' in `cpu`: on where
                                          # the device has native bf16); the original code and `paper` use fp32


# ---------------------------------------------------------------------------------------------- pieces

def stream_seed(*keys: int) -> int:
    """A generator seed from integers (run seed, epoch, network, stream): nearby keys give unrelated streams."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, dtype=np.uint64)[0] >> 1)


def learning_rate(epoch0: int, cfg: DivideMixConfig) -> float:
    """SGD lr of 0-based epoch `epoch0`: lr, times lr_drop_factor from lr_drop_epoch on (set at each epoch start)."""
    return cfg.lr * (cfg.lr_drop_factor if epoch0 >= cfg.lr_drop_epoch else 1.0)


def linear_rampup(current: float, warmup_epochs: float, lambda_u: float, length: float = 16.0) -> float:
    """lambda_u * clip((current - warm_up) / length, 0, 1), with current = epoch + batch_idx / num_iter (0-based)."""
    if length <= 0:
        return float(lambda_u) if current >= warmup_epochs else 0.0
    return float(lambda_u) * float(np.clip((current - warmup_epochs) / length, 0.0, 1.0))


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    pt = p ** (1.0 / temperature)
    return pt / pt.sum(dim=1, keepdim=True)


def normalise_losses(losses: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (a constant loss vector maps to zeros instead of dividing by zero)."""
    losses = np.asarray(losses, dtype=np.float64)
    span = losses.max() - losses.min() if len(losses) else 0.0
    return (losses - losses.min()) / span if span > 0 else np.zeros_like(losses)


def gmm_clean_probability(losses: np.ndarray, seed: int, max_iter: int = 10, tol: float = 1e-2,
                          reg_covar: float = 5e-4) -> np.ndarray:
    """Posterior of the lower-mean component of a 2-component 1-D GMM fitted to (normalised) losses; seeded,
    unlike the original (its k-means initialisation draws from the global RNG)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, max_iter=max_iter, tol=tol, reg_covar=reg_covar,
                          random_state=seed % (2**32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter 10 is the method's choice
        gmm.fit(x)
    return gmm.predict_proba(x)[:, int(gmm.means_.argmin())]


def division_quality(prob: np.ndarray, clean_mask: np.ndarray | None, threshold: float, bins: int = 20) -> dict:
    """How well the division {w > threshold} finds the truly clean samples: AUC of w, precision and recall of the
    labelled set, and histograms of w for truly clean and truly noisy samples (None without a true mask)."""
    labelled = prob > threshold
    out = {"n_labelled": int(labelled.sum()), "auc": None, "precision": None, "recall": None,
           "hist_clean": None, "hist_noisy": None}
    if clean_mask is None:
        out["hist_all"] = np.histogram(prob, bins=bins, range=(0, 1))[0].tolist()
        return out
    clean_mask = np.asarray(clean_mask, bool)
    if clean_mask.any() and (~clean_mask).any():
        from sklearn.metrics import roc_auc_score

        out["auc"] = float(roc_auc_score(clean_mask, prob))
    out["precision"] = float(clean_mask[labelled].mean()) if labelled.any() else None
    out["recall"] = float(labelled[clean_mask].mean()) if clean_mask.any() else None
    out["hist_clean"] = np.histogram(prob[clean_mask], bins=bins, range=(0, 1))[0].tolist()
    out["hist_noisy"] = np.histogram(prob[~clean_mask], bins=bins, range=(0, 1))[0].tolist()
    return out


def mixmatch(inputs: torch.Tensor, targets: torch.Tensor, lam: float, perm: torch.Tensor):
    """One permutation over all rows (labelled rows may mix with unlabelled ones): lam*a + (1-lam)*a[perm]."""
    return lam * inputs + (1 - lam) * inputs[perm], lam * targets + (1 - lam) * targets[perm]


def semi_loss(logits_x: torch.Tensor, targets_x: torch.Tensor, logits_u: torch.Tensor, targets_u: torch.Tensor):
    """L_x = soft cross-entropy on the labelled rows; L_u = mean over *all elements* of (softmax - target)^2
    (1/C of the per-row squared L2; lambda_u = 25 is relative to this scaling)."""
    lx = -torch.mean(torch.sum(F.log_softmax(logits_x, dim=1) * targets_x, dim=1))
    if logits_u.shape[0] == 0:
        return lx, lx.new_zeros(())
    lu = torch.mean((torch.softmax(logits_u, dim=1) - targets_u) ** 2)
    return lx, lu


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || mean softmax over the whole mixed batch): keeps the predictions from collapsing to few classes."""
    c = logits.shape[1]
    prior = torch.full((c,), 1.0 / c, device=logits.device)
    pred_mean = torch.softmax(logits, dim=1).mean(0)
    return torch.sum(prior * torch.log(prior / pred_mean))


def neg_entropy(logits: torch.Tensor) -> torch.Tensor:
    """DivideMix's confidence penalty: mean of sum_c p log p (added to the warm-up CE for asymmetric noise)."""
    probs = torch.softmax(logits, dim=1)
    return torch.mean(torch.sum(probs.log() * probs, dim=1))


@torch.no_grad()
def co_guess(net: nn.Module, peer: nn.Module, u1: torch.Tensor, u2: torch.Tensor, temperature: float,
             bf16: bool = False) -> torch.Tensor:
    """Sharpened mean of both networks' softmax on both views. `net` stays in train mode (as in the code): these
    no-grad passes update its BN running statistics."""
    with autocast_for(u1.device, bf16):
        outs = [net(u1), net(u2), peer(u1), peer(u2)]
    pu = sum(torch.softmax(o.float(), dim=1) for o in outs) / 4
    return sharpen(pu, temperature)


@torch.no_grad()
def co_refine(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor, onehot: torch.Tensor, w: torch.Tensor,
              temperature: float, bf16: bool = False) -> torch.Tensor:
    """w * given label + (1 - w) * the network's mean prediction on both views, sharpened."""
    with autocast_for(x1.device, bf16):
        o1, o2 = net(x1), net(x2)
    px = (torch.softmax(o1.float(), dim=1) + torch.softmax(o2.float(), dim=1)) / 2
    w = w.view(-1, 1)
    return sharpen(w * onehot + (1 - w) * px, temperature)


def dividemix_loss(net: nn.Module, peer: nn.Module, x1, x2, onehot, w, u1, u2, lam: float, lambda_u: float,
                   temperature: float, perm: torch.Tensor, bf16: bool = False) -> tuple[torch.Tensor, dict]:
    """L_DM = L_x + lambda_u * L_u + L_reg for one iteration (co-guessing, co-refinement, MixMatch with one
    permutation `perm` over the 2b + 2u rows, one forward of `net` on the mixed batch)."""
    b = x1.shape[0]
    has_u = u1 is not None and u1.shape[0] > 0
    # the code's order (co-guessing, then co-refinement) matters: both passes move net's BN running statistics
    targets_u = co_guess(net, peer, u1, u2, temperature, bf16) if has_u else None
    targets_x = co_refine(net, x1, x2, onehot, w, temperature, bf16)
    parts, targets = [x1, x2], [targets_x, targets_x]
    if has_u:
        parts += [u1, u2]
        targets += [targets_u, targets_u]
    mixed_x, mixed_t = mixmatch(torch.cat(parts), torch.cat(targets), lam, perm)
    with autocast_for(x1.device, bf16):
        logits = net(mixed_x)
    logits = logits.float()
    lx, lu = semi_loss(logits[: 2 * b], mixed_t[: 2 * b], logits[2 * b:], mixed_t[2 * b:])
    penalty = uniform_prior_penalty(logits)
    loss = lx + lambda_u * lu + penalty
    return loss, {"lx": lx.detach(), "lu": lu.detach(), "penalty": penalty.detach()}


class SubsetStream:
    """Shuffled batches of an index subset, on the device; like a shuffled DataLoader that is restarted when it
    runs out (DivideMix's unlabelled loader): the last batch of a pass may be partial. `order(n)` gives each pass's
    permutation of the n indices."""

    def __init__(self, indices: torch.Tensor, batch_size: int, order: Callable[[int], torch.Tensor]):
        self.indices, self.batch_size, self.order = indices, int(batch_size), order
        self.n = int(indices.shape[0])
        self._order, self._pos = None, self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def next(self) -> torch.Tensor:
        if self._pos >= self.n:
            self._order, self._pos = self.indices[self.order(self.n)], 0
        out = self._order[self._pos: self._pos + self.batch_size]
        self._pos += self.batch_size
        return out


class Draws:
    """Every random draw of network k's semi-supervised epoch `epoch0`, from streams seeded by (run seed, epoch0, k):
    permutations, augmented views and the generative module's noise from one torch generator (in the order the
    epoch asks for them), MixMatch's Beta draws from numpy, and the GMM's seed. The trainer asks for each draw by
    what it is for, so a golden can substitute stored draws (`DivideMix(draws=...)`) and leave the rest of the
    epoch (batching, order, wiring) as a run takes it."""

    def __init__(self, seed: int, epoch0: int, k: int, batcher: DeviceBatcher):
        self.batcher, self.device = batcher, batcher.device
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(stream_seed(seed, epoch0, k, 1))
        self.rng = np.random.default_rng(stream_seed(seed, epoch0, k, 2))
        self.gmm_seed = stream_seed(seed, epoch0, k, 7)

    def _randperm(self, n: int) -> torch.Tensor:
        return torch.randperm(n, generator=self.generator, device=self.device)

    def labelled_order(self, n: int) -> torch.Tensor:
        """The order of the n labelled samples for the epoch."""
        return self._randperm(n)

    def unlabelled_order(self, n: int) -> torch.Tensor:
        """The order of the n unlabelled samples for one pass (a new one at each restart)."""
        return self._randperm(n)

    def view(self, idx: torch.Tensor) -> torch.Tensor:
        """One augmented view of the training images at idx."""
        return self.batcher.gather(idx, self.generator)

    def beta(self, alpha: float) -> float:
        """MixMatch's raw Beta(alpha, alpha) draw."""
        return float(self.rng.beta(alpha, alpha))

    def mix_perm(self, rows: int) -> torch.Tensor:
        """MixMatch's permutation of the rows of the batch."""
        return self._randperm(rows)

    def extra_batch(self, n: int, size: int) -> torch.Tensor:
        """A fresh random batch of `size` of the n training samples (the generative module's)."""
        return self._randperm(n)[:size]

    def exponentials(self, shape) -> torch.Tensor:
        """Exp(1) draws (the Gumbel-softmax sample's noise is -log of them)."""
        return torch.empty(shape, device=self.device).exponential_(generator=self.generator)

    def noise(self, shape, dist: str) -> torch.Tensor:
        """Reparameterisation noise: U[0, 1) ("uniform") or N(0, 1) ("normal")."""
        draw = torch.rand if dist == "uniform" else torch.randn
        return draw(shape, generator=self.generator, device=self.device)


# ---------------------------------------------------------------------------------------------- the trainer

@dataclass
class ExtraLoss:
    """What another method adds to each DivideMix step: `loss(k, net, draws) -> (loss, parts)` for network k
    (0 or 1), its random draws taken from the epoch's `Draws`, and the optimizers that step after the network's
    own (e.g. one Adam per generative module)."""
    loss: Callable[[int, nn.Module, Draws], tuple[torch.Tensor, dict]]
    optimizers: list = field(default_factory=list)   # optimizers[k] belongs to network k
    modules: list = field(default_factory=list)      # modules[k]: put in train mode while network k trains


class DivideMix:
    """Two networks trained the DivideMix way over images held by `train_batcher` (train augmentation) and
    `eval_batcher` (no augmentation, in order). `noisy` holds the given labels (int64, on the device).

    With a single network in `nets` it is the CE baseline on the same code path: `warmup_epoch` (plain CE) at every
    epoch, `test` on that network alone.
    """

    def __init__(self, nets: list[nn.Module], cfg: DivideMixConfig, train_batcher: DeviceBatcher,
                 eval_batcher: DeviceBatcher, noisy: torch.Tensor, num_classes: int, seed: int,
                 extra: ExtraLoss | None = None, draws: Callable[[int, int], Draws] | None = None):
        self.nets, self.cfg, self.seed = nets, cfg, int(seed)
        # draws(epoch0, k): the random draws of network k's semi-supervised epoch (goldens pass stored ones)
        self.draws = draws or (lambda epoch0, k: Draws(self.seed, epoch0, k, train_batcher))
        self.train_batcher, self.eval_batcher = train_batcher, eval_batcher
        self.device = train_batcher.device
        self.noisy, self.num_classes = noisy, int(num_classes)
        self.onehot = F.one_hot(noisy, self.num_classes).float()
        cuda = self.device.type == "cuda"
        self.optimizers = [torch.optim.SGD(n.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                           weight_decay=cfg.weight_decay, foreach=not cuda, fused=cuda or None)
                           for n in nets]
        self.extra = extra
        self.loss_history: list[list[torch.Tensor]] = [[] for _ in nets]  # normalised losses, for averaging

    # -- schedule
    def set_lr(self, epoch0: int) -> float:
        lr = learning_rate(epoch0, self.cfg)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        return lr

    # -- warm-up / CE
    def warmup_epoch(self, k: int, epoch0: int) -> dict:
        """One pass of plain CE (mean over the batch) over all samples, batch warmup_batch_size; the batcher's
        epoch id is unique per (epoch, network), so each network sees its own shuffle and augmentation."""
        net, opt, cfg = self.nets[k], self.optimizers[k], self.cfg
        net.train()
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        for batch in self.train_batcher.epoch(2 * epoch0 + k):
            with autocast_for(self.device, cfg.bf16):
                logits = net(batch.x)
            logits = logits.float()
            loss = F.cross_entropy(logits, self.noisy.index_select(0, batch.idx))
            if cfg.warmup_neg_entropy:
                loss = loss + neg_entropy(logits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * batch.x.shape[0]
            seen += batch.x.shape[0]
        return {"loss": loss_sum / max(seen, 1)}

    # -- division
    @torch.no_grad()
    def per_sample_loss(self, k: int) -> torch.Tensor:
        """CE of network k (eval mode, no augmentation) against the given labels, every training sample in order."""
        net = self.nets[k]
        was = net.training
        net.eval()
        losses = torch.empty(self.eval_batcher.num_samples, device=self.device)
        for batch in self.eval_batcher.epoch(0):
            with autocast_for(self.device, self.cfg.bf16):
                logits = net(batch.x)
            losses[batch.idx] = F.cross_entropy(logits.float(), self.noisy.index_select(0, batch.idx),
                                                reduction="none")
        net.train(was)
        return losses

    def clean_probability(self, k: int, epoch0: int) -> np.ndarray:
        """eval_train: min-max normalised per-sample losses (averaged over the last gmm_loss_average epochs) and
        the seeded GMM's clean posterior."""
        cfg = self.cfg
        losses = normalise_losses(self.per_sample_loss(k).cpu().numpy())
        history = self.loss_history[k]
        if cfg.gmm_loss_average > 1:
            history.append(torch.as_tensor(losses, dtype=torch.float32))
            del history[:-cfg.gmm_loss_average]
            losses = torch.stack(history).mean(0).numpy().astype(np.float64)
        return gmm_clean_probability(losses, self.draws(epoch0, k).gmm_seed, cfg.gmm_max_iter, cfg.gmm_tol,
                                     cfg.gmm_reg_covar)

    def co_divide_epoch(self, epoch0: int) -> tuple[list[np.ndarray], list[dict]]:
        """One semi-supervised epoch as DivideMix's main loop: both networks' clean probabilities first, then each
        network trains on the division of the *other* (co-divide), network 1 before network 2. Returns the two
        networks' clean probabilities and training statistics."""
        probs = [self.clean_probability(k, epoch0) for k in range(2)]
        stats = [self.train_epoch(k, epoch0, probs[1 - k]) for k in range(2)]
        return probs, stats

    # -- the semi-supervised epoch
    def train_epoch(self, k: int, epoch0: int, prob: np.ndarray) -> dict:
        """Train network k for one pass over the labelled set chosen by the *peer's* clean probabilities `prob`."""
        cfg, net, opt = self.cfg, self.nets[k], self.optimizers[k]
        peer = self.nets[1 - k]
        net.train()
        peer.eval()
        extra = self.extra
        if extra is not None:
            for j, module in enumerate(extra.modules):
                module.train(j == k)
        labelled = prob > cfg.p_threshold
        lab_idx = torch.as_tensor(np.flatnonzero(labelled), device=self.device)
        lab_w = torch.as_tensor(prob[labelled], dtype=torch.float32, device=self.device)
        unl_idx = torch.as_tensor(np.flatnonzero(~labelled), device=self.device)
        n_lab = int(lab_idx.shape[0])
        stats = {"n_iter": 0}
        if n_lab == 0:  # nothing is labelled: the network is not trained this epoch
            return stats
        draws = self.draws(epoch0, k)
        b = cfg.batch_size
        num_iter = n_lab // b + 1                      # as the code: used by the lambda_u ramp only
        shuffle = draws.labelled_order(n_lab)
        order, w_order = lab_idx[shuffle], lab_w[shuffle]
        unlabelled = SubsetStream(unl_idx, b, draws.unlabelled_order)
        sums: dict[str, torch.Tensor] = {}
        n_batches = math.ceil(n_lab / b)
        lam_u = 0.0
        for it in range(n_batches):
            idx_x = order[it * b:(it + 1) * b]
            w_x = w_order[it * b:(it + 1) * b]
            x1, x2 = draws.view(idx_x), draws.view(idx_x)
            u1 = u2 = None
            if unlabelled:
                idx_u = unlabelled.next()
                u1, u2 = draws.view(idx_u), draws.view(idx_u)
            lam = draws.beta(cfg.alpha)
            lam = max(lam, 1 - lam)
            rows = 2 * idx_x.shape[0] + (2 * u1.shape[0] if u1 is not None else 0)
            perm = draws.mix_perm(rows)
            lam_u = linear_rampup(epoch0 + it / num_iter, cfg.warmup_epochs, cfg.lambda_u, cfg.rampup_epochs)
            loss, parts = dividemix_loss(net, peer, x1, x2, self.onehot.index_select(0, idx_x), w_x, u1, u2, lam,
                                         lam_u, cfg.temperature, perm, cfg.bf16)
            if extra is not None:
                extra_loss, extra_parts = extra.loss(k, net, draws)
                loss = loss + extra_loss
                parts.update(extra_parts)
                extra.optimizers[k].zero_grad(set_to_none=True)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if extra is not None:
                extra.optimizers[k].step()
            parts["loss"] = loss.detach()
            for key, value in parts.items():
                sums[key] = sums.get(key, 0) + value
        stats.update({key: value / n_batches for key, value in sums.items()})
        stats.update(n_iter=n_batches, lambda_u=lam_u)
        return stats

    # -- evaluation
    @torch.no_grad()
    def logits(self, batcher: DeviceBatcher) -> list[torch.Tensor]:
        """Each network's logits (eval mode) over a batcher's samples, in order."""
        outs = []
        for net in self.nets:
            was = net.training
            net.eval()
            out = torch.empty(batcher.num_samples, self.num_classes, device=self.device)
            for batch in batcher.epoch(0):
                with autocast_for(self.device, self.cfg.bf16):
                    out[batch.idx] = net(batch.x).float()
            net.train(was)
            outs.append(out)
        return outs

    def test(self, batcher: DeviceBatcher, labels: torch.Tensor) -> dict:
        """Accuracy of each network and of the ensemble (argmax of the *sum of logits*, as DivideMix)."""
        outs = self.logits(batcher)
        accs = {f"test_acc_net{k + 1}": (o.argmax(1) == labels).float().mean() for k, o in enumerate(outs)}
        accs["test_acc"] = (sum(outs).argmax(1) == labels).float().mean()
        return accs

    # -- state
    def state_dict(self) -> dict:
        state = {"nets": [n.state_dict() for n in self.nets], "optimizers": [o.state_dict() for o in self.optimizers],
                 "loss_history": [list(h) for h in self.loss_history]}
        if self.extra is not None:
            state["extra_modules"] = [m.state_dict() for m in self.extra.modules]
            state["extra_optimizers"] = [o.state_dict() for o in self.extra.optimizers]
        return state

    def load_state_dict(self, state: dict) -> None:
        for net, s in zip(self.nets, state["nets"]):
            net.load_state_dict(s)
        for opt, s in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        self.loss_history = [list(h) for h in state.get("loss_history", [[] for _ in self.nets])]
        if self.extra is not None:
            for m, s in zip(self.extra.modules, state["extra_modules"]):
                m.load_state_dict(s)
            for o, s in zip(self.extra.optimizers, state["extra_optimizers"]):
                o.load_state_dict(s)
