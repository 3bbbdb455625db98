"""A noise setting from a cell's params: the noisy training labels for one noise model, rate and seed
(class-conditional, instance-dependent, PMD from a cross-validated classifier, or a label file)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import UserError, check_choice, check_rate
from ..io import project_path
from .generators import (
    PMD_TYPES,
    NoiseResult,
    idn_ptd,
    make_noise,
    make_result,
    pmd_generate,
)
from .labelfiles import check_embedded_clean, read_labels, resolve_noise_file, split_label_spec

NOISE_MODELS = ("clean", "sym", "sym-incl", "asym", "pairflip", "idn", "pmd", "file")
NOISE_MODEL_HELP = {
    "clean": "no noise",
    "sym": "symmetric: flip to one of the other classes with probability p",
    "sym-incl": "symmetric, inclusive: redraw from all classes with probability p (may keep the class)",
    "asym": "class flips (a map such as asym_c10) with probability p",
    "pairflip": "pair flip: class i -> i+1 with probability p",
    "idn": "part-dependent instance noise (Xia et al. 2020, as InstanceGM uses it), nominal rate p",
    "pmd": "PMD type-I from a cross-validated classifier's probabilities, factor tuned to rate p",
    "file": "a label file PATH[:FIELD]",
}


def classifier_probabilities(images: np.ndarray, labels: np.ndarray, seed: int = 0, folds: int = 5) -> np.ndarray:
    """Out-of-fold class probabilities of a logistic regression on PCA features: the eta(x) that PMD noise
    needs, from a classifier that did not see the sample (so its margins reflect ambiguity, not memory)."""
    from sklearn import pipeline as sk_pipeline  # scikit-learn's, not nlkit.pipeline
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    k = min(50, x.shape[1], len(x) - 1)
    clf = sk_pipeline.make_pipeline(StandardScaler(), PCA(k, random_state=seed), LogisticRegression(max_iter=500))
    return cross_val_predict(clf, x, labels, cv=folds, method="predict_proba")


def pmd_factor_for_rate(probs: np.ndarray, clean: np.ndarray, rate: float, pmd_type: int = 1) -> float:
    """The PMD `factor` whose expected realised rate equals `rate` (PLC tuned its factors by hand the same way)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    u, s = order[:, 0], order[:, 1]
    rows = np.arange(len(probs))
    keep_base = 1.0 - PMD_TYPES[pmd_type](np.clip(probs[rows, u] - probs[rows, s], 0, 1))
    u_wrong, s_wrong = (u != clean).astype(float), (s != clean).astype(float)

    def expected(factor):
        k = np.clip(keep_base / factor, 0, 1)
        return float(np.mean(k * u_wrong + (1 - k) * s_wrong))

    lo, hi = np.log(1e-3), np.log(1e3)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected(np.exp(mid)) < rate else (lo, mid)
    return float(np.exp((lo + hi) / 2))


def restrict(dataset, label_range):
    """The dataset's train images [start, stop): published PMD files label only images 0..44999."""
    if not label_range:
        return dataset
    start, stop = label_range
    return replace(dataset, train_images=dataset.train_images[start:stop],
                   train_labels=dataset.train_labels[start:stop],
                   train_paths=dataset.train_paths[start:stop] if dataset.train_paths else None)


def apply_noise_model(dataset, model: str, rate: float, seed: int, *, asym_map: str | None = None,
                      label_file: str | None = None, probs: np.ndarray | None = None) -> NoiseResult:
    """Noisy train labels for one explorer setting (pass a `restrict`ed dataset for partial label files)."""
    check_choice(model, NOISE_MODELS, "noise model")
    rate = check_rate(rate)
    y, c = dataset.train_labels, dataset.num_classes
    if model in ("clean", "sym", "sym-incl", "asym", "pairflip"):
        return make_noise(y, model, rate, c, seed, asym_map=asym_map)
    if model == "idn":
        return idn_ptd(dataset.train_images, y, rate, c, seed=seed, pixels=dataset.pixels)
    if model == "pmd":
        probs = classifier_probabilities(dataset.train_images, y, seed) if probs is None else probs
        factor = pmd_factor_for_rate(probs, y, rate)
        res = pmd_generate(probs, 1, factor, seed, clean=y)
        res.meta["params"]["target_rate"] = rate
        return res
    if not label_file:
        raise UserError("noise model 'file' needs a label file PATH[:FIELD]")
    path, field = split_label_spec(label_file)
    resolved = str(project_path(path)) + (f":{field}" if field is not None else "")  # relative: from the project
    noisy = read_labels(resolved, num_classes=c, expected_length=len(y))
    check_embedded_clean(project_path(path), y)   # CIFAR-N: its clean_label must be the dataset's, image by image
    return make_result("file", y, noisy, None, {"file": label_file}, None, c)


def setting_from_params(cfg: dict, data_root=None, noise_root=None) -> dict:
    """Explorer parameters for one noise-study cell (a resolved params file)."""
    noise = cfg["noise"]
    label_file = None
    if noise["model"] == "file":
        path = resolve_noise_file(noise["file"], noise_root, data_root, noise.get("sha256"))
        label_file = f"{path}:{noise['field']}" if noise.get("field") else str(path)
    return {"dataset": cfg["dataset"], "noise": noise["model"], "rate": float(noise.get("rate", 0.0)),
            "noise_seed": int(noise.get("seed", 0)), "asym_map": noise.get("asym_map"), "label_file": label_file,
            "label_range": noise.get("label_range")}


def study_metrics(report: dict, classes: list[str], nominal: float | None) -> dict:
    """What the noise study tabulates for one setting."""
    top = report["top_confusions"][0] if report["top_confusions"] else None
    return {
        "realised_rate": report["noise_rate"],
        "nominal_rate": nominal,
        "classes_with_true_plurality": report["classes_with_true_plurality"],
        "top_confusion": (f"{classes[top['clean']]} -> {classes[top['noisy']]} ({top['share_of_class']:.1%} of "
                          f"{classes[top['clean']]})") if top else None,
    }
