"""TDSM (Na et al., ICLR 2024): label-noise robust conditional diffusion models.

A conditional diffusion model trained on noisy labels learns p(x | noisy label), a mixture of the clean class
conditionals with instance- and noise-level-dependent weights w_i = p_sigma(Y = i | Y~ = y~, x). TDSM trains the
clean-conditional network by regressing the w-mixture of its class outputs onto the DSM target; the weights come from
the transition matrix S and a noise-level-conditioned noisy-label classifier trained first (the `classifier` cell,
whose weights the TDSM cells `need`).

A cell's `method` picks what runs: `classifier` (forward-corrected CE through S, or VolMinNet with
`transition: {kind: learn}`), `dsm` (the baseline, the same loop with one-hot weights, identical to EDM's loss),
`sdsm` (constant weights R[y~, :]), `tdsm`, or `toy` (the 2-D Gaussian mixture with exact weights). The official
code's quirks are the defaults and named switches (`tau`, `full_grad`, `renorm_after_skip`, `weights_form`,
`cls_aug_labels`, `temp`, `augment_p`, `precision`, `affine_weight`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ...data import load_dataset
from ...errors import UserError, check_choice
from ...noise import make_noise
from ...train import default_device
from ..contract import PROTOCOL_METRICS, MethodSpec, Roots, RunOutput
from . import metrics as tdsm_metrics
from .train import (
    METHODS,
    TDSMConfig,
    classifier_diagnostic,
    generate,
    load_classifier,
    load_diffusion,
    save_classifier,
    save_diffusion,
    train_classifier,
    train_diffusion,
    unet_overrides,
)
from .weights import build_transition, check_transition, reverse_matrix

SAMPLE_METRICS = ("label_consistency", "cas", "feature_fid", "cw_feature_fid")
INCEPTION_METRICS = ("fid", "is", "density", "coverage", "cw_fid", "cw_density", "cw_coverage")
SPEC = MethodSpec("tdsm", metrics=PROTOCOL_METRICS + SAMPLE_METRICS + tuple(f"{m}_min" for m in SAMPLE_METRICS)
                  + INCEPTION_METRICS + tuple(f"{m}_min" for m in INCEPTION_METRICS) + (
    "extra_passes_per_sample", "kimg_per_s", "kimg", "ideal_dsm_consistency", "evaluator_test_acc",
    "cls_clean_acc_low_sigma", "cls_clean_acc_high_sigma", "cls_weight_on_observed_low_sigma",
    "toy_mean_error_dsm", "toy_mean_error_sdsm", "toy_mean_error_tdsm",
    "toy_label_consistency_dsm", "toy_label_consistency_sdsm", "toy_label_consistency_tdsm",
    "noise_rate"), artefacts=("classifier", "diffusion", "samples"))
Config = TDSMConfig
TRANSITIONS = ("true", "identity", "assumed", "learn")
INCEPTION_ENV = "NLKIT_INCEPTION_WEIGHTS"   # a local Inception-v3 weights file, when the cell does not name one


@dataclass
class TDSMData:
    dataset: str
    train_images: np.ndarray      # uint8 (N, H, W, C)
    noisy: np.ndarray
    clean: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list
    S_noise: np.ndarray            # the transition matrix of the injected noise
    S: np.ndarray                  # the one the method uses (true, identity, assumed or learned)
    transition: str
    noise_meta: dict = field(default_factory=dict)
    classifier: object = None      # the frozen noise-level-conditioned classifier (TDSM)
    description: str = ""
    toy: object = None
    toy_settings: dict = field(default_factory=dict)
    noisy_model: object = None     # the DSM model of the same setting, for the affine score (`affine_weight`)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def preprocess(images: np.ndarray, pad_to: int | None = None, resolution: int | None = None,
               crop_to: int | None = None) -> np.ndarray:
    """Zero-pad to `pad_to` (MNIST 28 -> 32, docs/tdsm.md §2) or center-crop to `crop_to`, then average-pool down to
    `resolution` (an integer factor; the CPU profile's reduction)."""
    if crop_to and images.shape[1] > crop_to:
        a, b = (images.shape[1] - crop_to) // 2, (images.shape[2] - crop_to) // 2
        images = images[:, a:a + crop_to, b:b + crop_to]
    if pad_to and images.shape[1] < pad_to:
        p = pad_to - images.shape[1]
        images = np.pad(images, ((0, 0), (p // 2, p - p // 2), (p // 2, p - p // 2), (0, 0)))
    if resolution and resolution != images.shape[1]:
        f = images.shape[1] // resolution
        if f * resolution != images.shape[1] or images.shape[1] != images.shape[2]:
            raise UserError(f"cannot reduce {images.shape[1]}x{images.shape[2]} images to {resolution} by an integer factor")
        x = torch.as_tensor(images).permute(0, 3, 1, 2).float()
        images = F.avg_pool2d(x, f).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(images)


def describe(cell: dict, data_name: str, size: int) -> str:
    """What actually ran, for titles: e.g. 'digits (8x8) stand-in for mnist-sym-0.40-tdsm, smoke'."""
    stem = cell["cell_id"]
    name = stem.split("-")[0]
    what = f"{data_name} ({size}x{size})"
    if data_name != name and name not in ("toy",):
        what += f" stand-in for {stem}"
    else:
        what += f", {stem}"
    return f"{what}, {cell.get('profile', 'paper')}"


def method_transition(cell: dict, S_noise: np.ndarray, num_classes: int) -> tuple[np.ndarray, str]:
    t = cell.get("transition") or {}
    kind = str(t.get("kind", "true"))
    check_choice(kind, TRANSITIONS, "transition kind")
    if kind == "true":
        return S_noise, "true S of the injected noise"
    if kind == "identity":
        return np.eye(num_classes), "S = I"
    if kind == "assumed":
        rate = float(t.get("rate", 0.05))
        return build_transition("sym", rate, num_classes), f"assumed sym S, r = {rate:g}"
    return S_noise, "learned by VolMinNet"  # replaced by the classifier's learned T where one is loaded


def prepare(cell: dict, seed: int, roots: Roots | None = None) -> TDSMData:
    """Images (MNIST padded to 32, optionally reduced), the seeded noisy labels (clean ones kept), S, and for TDSM the
    classifier artefact of the cell it needs."""
    roots = roots or Roots()
    method = cell.get("method", "tdsm")
    check_choice(method, METHODS, "TDSM method")
    noise = cell.get("noise") or {}
    if method == "toy":
        from .toy import make_toy

        toy_cfg = dict(cell.get("toy") or {})
        toy = make_toy(n=int(toy_cfg.get("n", 6000)), num_classes=int(toy_cfg.get("num_classes", 3)),
                       rate=float(noise.get("rate", 0.4)), seed=int(noise.get("seed", 0)))
        classes = [str(c) for c in range(toy.num_classes)]
        return TDSMData("toy2d", np.zeros((0, 1, 1, 1), np.uint8), toy.noisy, toy.clean, np.zeros((0, 1, 1, 1), np.uint8),
                        np.zeros(0, np.int64), classes, toy.S, toy.S, "true",
                        {"generator": "sym", "rate": float(noise.get("rate", 0.4))},
                        description=f"2-D Gaussian mixture, K = {toy.num_classes}, sym {noise.get('rate', 0.4)}, "
                                    f"{cell.get('profile', 'paper')}", toy=toy, toy_settings=toy_cfg)
    ds = load_dataset(cell["dataset"], data_root=roots.data_root)
    pad_to, res, crop = cell.get("pad_to"), cell.get("resolution"), cell.get("crop_to")
    train = preprocess(ds.train_images, pad_to, res, crop)
    test = preprocess(ds.test_images, pad_to, res, crop)
    k = ds.num_classes
    model = noise.get("model", "sym")
    rate = float(noise.get("rate", 0.0))
    result = make_noise(ds.train_labels, model, rate, k, int(noise.get("seed", 0)), asym_map=noise.get("asym_map"))
    S_noise = build_transition(model, rate, k, noise.get("asym_map"))
    S, how = method_transition(cell, S_noise, k)
    classifier = None
    if method == "tdsm":
        classifier, T_cls, kind = load_classifier(roots.artefact("classifier"))
        if (cell.get("transition") or {}).get("kind") == "learn":
            if kind != "learn":
                raise UserError("transition kind 'learn' needs a VolMinNet classifier (its cell sets "
                                "`transition: {kind: learn}`)")
            S = check_transition(T_cls)
    elif method == "classifier" and (cell.get("transition") or {}).get("kind") == "learn":
        how = "learned by VolMinNet"
    check_transition(S)
    noisy_model = None
    if float((cell.get("train") or {}).get("affine_weight") or 0) and method in ("tdsm", "sdsm"):
        noisy_model = load_diffusion(roots.artefact("noisy_model"))  # `needs: {noisy_model: tdsm/<setting>-dsm}`
    desc = describe(cell, ds.name, train.shape[1])
    return TDSMData(ds.name, train, result.noisy, result.clean, test, ds.test_labels, list(ds.classes), S_noise, S,
                    how, {**result.meta, "transition_used": how}, classifier, desc, noisy_model=noisy_model)


# ---------------------------------------------------------------------------------------------- runs

def run(data: TDSMData, config: TDSMConfig, seed: int, workdir=None, *, device=None, progress: bool = True
        ) -> RunOutput:
    """Train what the cell's method names and score it. `state` holds what the notebook's figures need."""
    workdir = Path(workdir) if workdir is not None else None
    dev = torch.device(device or default_device())
    if config.method == "toy":
        return _run_toy(data, config, seed)
    if config.method == "classifier":
        return _run_classifier(data, config, seed, workdir, dev, progress)
    return _run_diffusion(data, config, seed, workdir, dev, progress)


def _base_metrics(data: TDSMData) -> dict:
    return {"acc_last": None, "acc_best_test": None, "acc_val_selected": None, "dataset": data.dataset,
            "noise_rate": float(np.mean(data.noisy != data.clean)), "noise_meta": data.noise_meta,
            "transition_used": data.transition, "what_ran": data.description}


def _run_classifier(data: TDSMData, cfg: TDSMConfig, seed: int, workdir, dev, progress) -> RunOutput:
    learn = data.transition == "learned by VolMinNet"
    run = train_classifier(data.train_images, data.noisy, data.S, cfg, seed, learn_transition=learn,
                           out_dir=workdir, device=dev, progress=progress)
    _, h, _, ch = data.train_images.shape
    kwargs = {"num_classes": data.num_classes, "in_channels": ch, "img_resolution": h, "augment_dim": 9}
    artefacts = {}
    if workdir is not None:
        save_classifier(run, workdir / "classifier.pt", cfg.cls_arch, kwargs, "learn" if learn else "given")
        artefacts["classifier"] = "classifier.pt"
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.permutation(len(data.train_images))[:cfg.diag_samples])
    test_sub = np.sort(rng.permutation(len(data.test_images))[:cfg.diag_samples])
    diag_train = classifier_diagnostic(run.model, data.train_images[sub], data.clean[sub], data.noisy[sub], run.transition,
                                       device=dev, seed=seed)
    diag_test = classifier_diagnostic(run.model, data.test_images[test_sub], data.test_labels[test_sub], None,
                                      run.transition, device=dev, seed=seed)
    low, high = diag_test["sigma"] <= 0.5, diag_test["sigma"] >= 5
    metrics = {**_base_metrics(data), "acc_last": float(diag_test["clean_acc"].iloc[0] * 100),
               "cls_clean_acc_low_sigma": float(diag_test.loc[low, "clean_acc"].mean()),
               "cls_clean_acc_high_sigma": float(diag_test.loc[high, "clean_acc"].mean()),
               "cls_weight_on_observed_low_sigma": float(diag_train.loc[diag_train["sigma"] <= 0.5,
                                                                        "weight_on_observed"].mean()),
               "cls_acc_vs_sigma": diag_test.round(4).to_dict("list"),
               "cls_train_diagnostic": diag_train.round(4).to_dict("list"),
               "kimg": float(run.history["kimg"].iloc[-1]), "kimg_per_s": float(run.history["img_per_s"].median() / 1000)}
    if learn:
        metrics["learned_transition"] = np.round(run.transition, 4).tolist()
        metrics["learned_transition_error"] = float(np.abs(run.transition - data.S_noise).sum(1).mean())
    state = {"history": run.history, "diag_test": diag_test, "diag_train": diag_train, "model": run.model,
             "transition": run.transition}
    return RunOutput(run.history, metrics, artefacts, state=state, completed=run.completed)


def _run_diffusion(data: TDSMData, cfg: TDSMConfig, seed: int, workdir, dev, progress) -> RunOutput:
    method = cfg.method
    run = train_diffusion(data.train_images, data.noisy, data.S, cfg, seed, method=method,
                          classifier=data.classifier, out_dir=workdir, device=dev, progress=progress)
    _, h, _, ch = data.train_images.shape
    k = data.num_classes
    kwargs = {"img_resolution": h, "in_channels": ch, "label_dim": k, "augment_dim": 9, "dropout": cfg.dropout,
              **{key: v for key, v in unet_overrides(cfg).items() if v is not None}}
    artefacts = {}
    if workdir is not None:
        save_diffusion(run.ema, workdir / "diffusion.pt", cfg.arch, kwargs)
        artefacts["diffusion"] = "diffusion.pt"
    metrics = {**_base_metrics(data), "kimg": run.nimg / 1000,
               "kimg_per_s": float(run.history["kimg_per_s"].median()),
               "extra_passes_per_sample": float((run.history["extra_passes_per_sample"] * run.history["kimg"].diff()
                                                 .fillna(run.history["kimg"])).sum() / max(run.nimg / 1000, 1e-9)),
               "ideal_dsm_consistency": float(np.mean(tdsm_metrics.ideal_dsm_consistency(data.S_noise))),
               "ideal_dsm_consistency_per_class": np.round(tdsm_metrics.ideal_dsm_consistency(data.S_noise), 4).tolist()}
    if not run.completed:
        return RunOutput(run.history, metrics, artefacts, state={"history": run.history}, completed=False)
    ref = tdsm_metrics.build_reference(data.dataset, data.train_images, data.clean, data.test_images, data.test_labels,
                                       k, arch=cfg.eval_arch, epochs=cfg.eval_epochs, fid_real_max=cfg.fid_real_max,
                                       device=dev)
    metrics["evaluator_test_acc"] = ref.evaluator_test_acc
    other = None
    if cfg.affine_weight:
        if data.noisy_model is None:
            raise UserError("affine_weight needs the DSM model of the same setting: declare "
                            "`needs: {noisy_model: tdsm/<setting>-dsm}`")
        other = data.noisy_model.to(dev).eval()
    cas_arch = cfg.cas_arch or tdsm_metrics.default_cas_arch(data.dataset)
    metrics["cas_arch"] = cas_arch
    inception = cfg.inception_weights or os.environ.get(INCEPTION_ENV)
    extractor = None
    if inception:
        from ...metrics import load_inception

        extractor = load_inception(inception, device=dev)
    per_seed, per_seed_inception, samples = [], [], None
    shape = (ch, h, h)
    for s in cfg.sampling_seeds:
        images, labels = generate(run.ema, k, cfg.samples_per_class, shape, seed * 1000 + int(s), device=dev,
                                  num_steps=cfg.num_steps, batch=cfg.sample_batch, other=other,
                                  affine_weight=cfg.affine_weight, bf16=cfg.bf16)
        scores = tdsm_metrics.score_samples(ref, images, labels, cas_arch=cas_arch, cas_epochs=cfg.cas_epochs,
                                            seed=seed, device=dev)
        per_seed.append(scores)
        if extractor is not None:  # every sampling seed, like the sample metrics (mean and min over the seeds)
            per_seed_inception.append(tdsm_metrics.inception_metrics(
                extractor, ref.real_images, ref.real_labels, images, labels, k, with_is=data.dataset != "mnist"))
        if samples is None:
            samples = (images, labels)
    metrics.update(tdsm_metrics.mean_and_min(per_seed, SAMPLE_METRICS))
    for key in ("label_consistency_per_class", "cw_feature_fid_per_class"):
        metrics[key] = np.round(np.mean([p[key] for p in per_seed], 0), 4).tolist()
    metrics["per_sampling_seed"] = [{k2: v for k2, v in p.items() if not k2.endswith("per_class")} for p in per_seed]
    if per_seed_inception:
        metrics.update(tdsm_metrics.mean_and_min(per_seed_inception, INCEPTION_METRICS))
        metrics["per_sampling_seed_inception"] = per_seed_inception
    grid = _grid_subset(samples[0], samples[1], k, 10)
    if workdir is not None:
        np.savez_compressed(workdir / "samples.npz", images=grid[0], labels=grid[1])
        artefacts["samples"] = "samples.npz"
    state = {"history": run.history, "samples": samples, "grid": grid, "per_seed": per_seed, "reference": ref,
             "ema": run.ema}
    return RunOutput(run.history, metrics, artefacts, state=state, completed=True)


def _grid_subset(images, labels, k: int, per_class: int):
    idx = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(k)])
    return images[idx], labels[idx]


def _run_toy(data: TDSMData, cfg: TDSMConfig, seed: int) -> RunOutput:
    from .toy import sample_toy, toy_scores, train_toy

    toy, t = data.toy, data.toy_settings
    metrics, rows, samples = _base_metrics(data), [], {}
    for method in t.get("methods", ("dsm", "sdsm", "tdsm")):
        net, extra, seconds = train_toy(toy, method, steps=int(t.get("steps", 800)), batch=int(t.get("batch", 512)),
                                        lr=float(t.get("lr", 2e-3)), seed=seed, tau=cfg.tau)
        x, y = sample_toy(net, toy.num_classes, int(t.get("per_class", 300)), seed)
        scores = toy_scores(x, y, toy)
        samples[method] = (x, y)
        metrics[f"toy_mean_error_{method}"] = scores["mean_error"]
        metrics[f"toy_label_consistency_{method}"] = scores["label_consistency"]
        metrics[f"toy_label_consistency_per_class_{method}"] = scores["label_consistency_per_class"]
        rows.append({"method": method, "mean_error": scores["mean_error"],
                     "label_consistency": scores["label_consistency"], "extra_passes_per_sample": extra,
                     "seconds": seconds})
    metrics["ideal_dsm_consistency"] = float(np.mean(tdsm_metrics.ideal_dsm_consistency(toy.S)))
    history = pd.DataFrame(rows)
    return RunOutput(history, metrics, state={"samples": samples, "toy": toy, "table": history})


__all__ = ["METHODS", "SPEC", "TRANSITIONS", "Config", "TDSMConfig", "TDSMData", "build_transition", "describe",
           "load_classifier", "load_diffusion", "prepare", "preprocess", "reverse_matrix", "run"]
