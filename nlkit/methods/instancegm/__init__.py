"""InstanceGM (Garg, Nguyen, Felix, Do and Carneiro, WACV 2023): DivideMix plus CausalNL's generative model with a
continuous-Bernoulli likelihood, trained jointly for instance-dependent label noise (docs/instancegm.md).

A cell's top-level `method` picks one of three methods on one code path:
- `ce`: one PreAct ResNet-18 with plain cross-entropy (the baseline);
- `dividemix`: DivideMix (`dividemix.py`, reusable by other papers), i.e. InstanceGM with the generative module off;
- `instancegm`: DivideMix + one generative module per network (`generative.py`).

Faithful defaults are the released code's behaviour (instanceGM.py); its known bugs are named switches of the
train block (`eps_dist`, `double_sigmoid`, `kl_reduction`, `t_decoder_input`) and its crashes are fixed (the run
stops after exactly `epochs` epochs, persistent device-side samplers instead of a DataLoader per iteration).
"""

from __future__ import annotations

from ...noise.issues import loss_verdicts, write_per_sample
from ..contract import PROTOCOL_METRICS, MethodSpec, Roots, RunOutput
from .data import IGMData, prepare_data, subset_indices
from .dividemix import (
    DivideMix,
    DivideMixConfig,
    Draws,
    ExtraLoss,
    SubsetStream,
    co_guess,
    co_refine,
    dividemix_loss,
    division_quality,
    gmm_clean_probability,
    linear_rampup,
    mixmatch,
    semi_loss,
    sharpen,
    uniform_prior_penalty,
)
from .generative import GenerativeModule, cb_log_prob, cb_mean, gumbel_softmax, vae_loss
from .train import METHODS, Config, IGMRun, InstanceGMConfig, build_classifier, summarise, train_instancegm

SPEC = MethodSpec("instancegm", metrics=PROTOCOL_METRICS + (
    "acc_last10", "acc_last5", "best_epoch", "acc_last_net1", "acc_last_net2", "auc_first", "auc_last",
    "precision_last", "recall_last", "n_labelled_last", "noise_rate", "epochs", "seconds_per_warmup_epoch",
    "seconds_per_ssl_epoch", "seconds_per_ce_epoch", "train_seconds"))


def prepare(cell: dict, seed: int, roots: Roots | None = None) -> IGMData:
    """The contract's data step: images, the cell's noisy labels, optional subsets (see `data.prepare_data`)."""
    roots = roots or Roots()
    return prepare_data(cell, roots.data_root, roots.noise_root)


def per_sample_verdicts(result: IGMRun, data: IGMData):
    """per_sample.csv: the networks' final predictions on the training set (ensemble: softmax of the summed
    logits, as DivideMix's test) and, after a division, DivideMix's own verdict: the GMM clean probability of the
    last division per network and averaged (`clean_prob`), the score 1 - clean_prob, suspected where clean_prob is
    at most p_threshold (the unlabelled side). CE, or a run stopped before any division: the loss verdict."""
    import torch

    dm = result.trainer
    with torch.no_grad():
        logits = dm.logits(dm.eval_batcher)
    probs = torch.softmax(sum(logits), 1).cpu().numpy()
    frame = loss_verdicts(probs, data.noisy, clean=data.clean, index=data.train_index)
    if result.last_division is None:
        return frame
    prob = result.last_division["prob"].double().cpu().numpy()
    clean_prob = prob.mean(0)
    frame["issue_score"] = 1 - clean_prob
    frame["suspected_issue"] = clean_prob <= result.config.p_threshold
    for k in range(len(prob)):
        frame[f"clean_prob_net{k + 1}"] = prob[k]
    frame["clean_prob"] = clean_prob
    frame["division_epoch"] = int(result.last_division["epoch"])
    return frame


def run(data: IGMData, config: InstanceGMConfig, seed: int, workdir=None, *, device=None,
        progress: bool = True) -> RunOutput:
    """Train one run. The protocol's number is the ensemble's last-epoch accuracy (best and last-10 beside it);
    `state` holds the IGMRun (networks, generative modules, divisions) for the notebook's figures."""
    result = train_instancegm(data, config, seed, out_dir=workdir, device=device, progress=progress)
    metrics = {**result.metrics, "acc_val_selected": None, "method": config.method,
               "noise_rate": data.noise_rate, "noise_meta": data.noise_meta, "pixels": data.pixels,
               "n_train": int(len(data.noisy)), "n_test": int(len(data.test_labels))}
    write_per_sample(workdir, per_sample_verdicts(result, data))
    return RunOutput(result.history, metrics, state=result, completed=result.completed)


__all__ = ["METHODS", "SPEC", "Config", "DivideMix", "DivideMixConfig", "Draws", "ExtraLoss", "GenerativeModule",
           "IGMData", "IGMRun", "InstanceGMConfig", "SubsetStream", "build_classifier", "cb_log_prob", "cb_mean",
           "co_guess", "co_refine", "dividemix_loss", "division_quality", "gmm_clean_probability", "gumbel_softmax",
           "linear_rampup", "mixmatch", "prepare", "prepare_data", "run", "semi_loss", "sharpen", "subset_indices",
           "summarise", "train_instancegm", "uniform_prior_penalty", "vae_loss"]
