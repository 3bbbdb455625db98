"""TDSM's sample metrics (docs/tdsm.md §10), each implemented once:

- **label consistency** (a kit diagnostic): the accuracy of a clean-trained classifier (the *evaluator*) on the
  samples generated for each class. An ideal DSM scores p(Y = c | Y~ = c) (1 - r for sym noise), an ideal TDSM 1;
- **CAS** (classification accuracy score): a classifier trained only on generated labelled samples, tested on the
  real clean test set;
- **feature-FID** and class-wise feature-FID on the evaluator's penultimate features (works offline);
- the paper's FID, IS, density, coverage and class-wise FID/density/coverage in Inception space, given a local
  Inception weights file.

The evaluator is trained inside the metric step on the clean training labels (the clean labels are kept beside the
noisy ones) and cached on disk by its data and settings, so every run of a dataset scores with the same network.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ...data import DeviceBatcher, cache_dir
from ...metrics import classwise, density_coverage, feature_statistics, frechet_distance, inception_score
from ...models import architecture_kwargs, build_model, load_model, save_model
from ...train import Trainer, TrainLoop, default_device

EVALUATOR_VERSION = 1
# The CAS classifier per dataset, as in the TDSM code (training/networks.py): a ResNet-50 from scratch
# (`ClassifierCAS`) for CIFAR, the two-conv CNN (`ClassifierCAS_CNN_MNIST`) for MNIST and its digits stand-in.
CAS_ARCHS = {"mnist": "cas_cnn_mnist", "digits": "cas_cnn_mnist"}
CAS_ARCH_DEFAULT = "cas_resnet50"


def default_cas_arch(dataset: str) -> str:
    return CAS_ARCHS.get(dataset, CAS_ARCH_DEFAULT)


def _batcher(images, batch_size, device, shuffle=False, seed=0):
    return DeviceBatcher(images, batch_size=batch_size, device=device, shuffle=shuffle, mean=0.5, std=0.5,
                         seed=seed)


def train_image_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, *, arch: str = "small_cnn",
                           epochs: int = 10, batch_size: int = 128, lr: float = 0.05, seed: int = 0, device=None,
                           progress: bool = False):
    """A plain classifier on uint8 images in [-1, 1] scaling (SGD, momentum 0.9, weight decay 5e-4, constant lr,
    batch 128): the evaluator (clean labels) and the CAS classifier (generated samples) are both trained this way;
    the TDSM code ships the CAS networks but no recipe to train them (docs/tdsm.md §10)."""
    dev = torch.device(device or default_device())
    torch.manual_seed(seed)
    model = build_model(arch, **architecture_kwargs(arch, num_classes, images.shape[-1], images.shape[1]))
    trainer = Trainer(model, lr=lr, momentum=0.9, weight_decay=5e-4, device=dev, bf16=dev.type == "cuda",
                      channels_last=False)
    batcher = _batcher(images, min(batch_size, len(images)), dev, shuffle=True, seed=seed)
    y = torch.as_tensor(labels, device=dev)

    def loss_fn(logits, batch):
        return torch.nn.functional.cross_entropy(logits, y.index_select(0, batch.idx), reduction="none")

    def epoch_fn(epoch):
        batcher.next_epoch = epoch - 1
        return trainer.train_epoch(batcher, loss_fn)

    TrainLoop(None, epochs=epochs, desc="classifier on images", progress=progress).run(
        epoch_fn, trainer.state_dict, trainer.load_state_dict)
    return trainer.model.eval()


@torch.no_grad()
def predict_features(model, images: np.ndarray, device=None, batch: int = 1000):
    """(logits, penultimate features) for uint8 images."""
    dev = next(model.parameters()).device if device is None else torch.device(device)
    model = model.to(dev).eval()
    logits, feats = [], []
    for b in _batcher(images, batch, dev).epoch(0):
        f = model.features(b.x)
        feats.append(f.float().cpu())
        logits.append(model.head(f).float().cpu())
    return torch.cat(logits).numpy(), torch.cat(feats).numpy()


def evaluator_key(dataset: str, images: np.ndarray, labels: np.ndarray, arch: str, epochs: int, seed: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{EVALUATOR_VERSION}|{dataset}|{arch}|{epochs}|{seed}|{images.shape}".encode())
    h.update(np.ascontiguousarray(images[:: max(1, len(images) // 512)]).tobytes())
    h.update(np.ascontiguousarray(labels).tobytes())
    return h.hexdigest()[:20]


def clean_evaluator(dataset: str, images, labels, num_classes: int, *, arch: str = "small_cnn", epochs: int = 10,
                    seed: int = 0, device=None):
    """The clean-trained evaluator for a dataset, from the cache or trained now (and cached). The cache saves
    time only: an unreadable, unwritable or full cache folder costs a warning and the training, never the run
    (as the feature cache of nlkit.encoders)."""
    path = cache_dir() / "tdsm-evaluator" / f"{dataset}-{evaluator_key(dataset, images, labels, arch, epochs, seed)}.pt"
    try:
        if path.is_file():
            try:
                return load_model(path, map_location=device or default_device()), True
            except Exception:  # noqa: BLE001 - a damaged cache entry is retrained, never fatal
                path.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"cannot read the evaluator cache {path} ({e.strerror or e}); training it", stacklevel=2)
    model = train_image_classifier(images, labels, num_classes, arch=arch, epochs=epochs, seed=seed, device=device)
    try:
        save_model(model, path, arch, **architecture_kwargs(arch, num_classes, images.shape[-1], images.shape[1]))
    except OSError as e:  # the next run trains it again; this one goes on
        warnings.warn(f"cannot write the evaluator cache entry {path} ({e.strerror or e}); set NLKIT_CACHE to a "
                      "writable folder", stacklevel=2)
    return model, False


# ---------------------------------------------------------------------------------------------- the metrics

def label_consistency(pred: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[float, list]:
    """Share of samples generated for class c that the evaluator calls c: overall and per class."""
    pred, target = np.asarray(pred), np.asarray(target)
    per_class = [float(np.mean(pred[target == c] == c)) if (target == c).any() else float("nan")
                 for c in range(num_classes)]
    return float(np.mean(pred == target)), per_class


def ideal_dsm_consistency(S: np.ndarray) -> np.ndarray:
    """p(Y = c | Y~ = c) per class with a uniform prior: what a perfect noisy-label model scores."""
    from .weights import reverse_matrix

    return np.diag(reverse_matrix(np.asarray(S, dtype=np.float64)))


def classification_accuracy_score(gen_images, gen_labels, test_images, test_labels, num_classes: int, *,
                                  arch: str = "cas_cnn_mnist", epochs: int = 20, seed: int = 0, device=None) -> float:
    """CAS: train only on generated samples, report top-1 accuracy (%) on the real clean test set."""
    model = train_image_classifier(gen_images, gen_labels, num_classes, arch=arch, epochs=epochs, seed=seed,
                                   device=device)
    logits, _ = predict_features(model, test_images)
    return float(np.mean(logits.argmax(1) == np.asarray(test_labels)) * 100)


def feature_fid(real_feats, fake_feats) -> float:
    return frechet_distance(*feature_statistics(real_feats), *feature_statistics(fake_feats))


@dataclass
class Reference:
    """What samples are scored against: real clean images (and their evaluator features), the test set."""
    evaluator: torch.nn.Module
    real_images: np.ndarray
    real_labels: np.ndarray
    real_feats: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    evaluator_test_acc: float
    num_classes: int


def build_reference(dataset: str, train_images, clean_labels, test_images, test_labels, num_classes: int, *,
                    arch: str, epochs: int, fid_real_max: int, seed: int = 0, device=None) -> Reference:
    evaluator, cached = clean_evaluator(dataset, train_images, clean_labels, num_classes, arch=arch, epochs=epochs,
                                        seed=seed, device=device)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(train_images))[:fid_real_max])
    _, real_feats = predict_features(evaluator, train_images[idx])
    test_logits, _ = predict_features(evaluator, test_images)
    return Reference(evaluator, train_images[idx], np.asarray(clean_labels)[idx], real_feats, test_images,
                     np.asarray(test_labels), float(np.mean(test_logits.argmax(1) == test_labels)), num_classes)


def score_samples(ref: Reference, images: np.ndarray, labels: np.ndarray, *, cas_arch: str, cas_epochs: int,
                  seed: int = 0, device=None) -> dict:
    """Label consistency, CAS and (class-wise) feature-FID of one set of generated samples."""
    k = ref.num_classes
    logits, feats = predict_features(ref.evaluator, images)
    lc, lc_per_class = label_consistency(logits.argmax(1), labels, k)
    cw_fid, cw_per_class = classwise(feature_fid, ref.real_feats, ref.real_labels, feats, labels, k)
    cas = classification_accuracy_score(images, labels, ref.test_images, ref.test_labels, k, arch=cas_arch,
                                        epochs=cas_epochs, seed=seed, device=device)
    return {"label_consistency": lc, "label_consistency_per_class": lc_per_class, "cas": cas,
            "feature_fid": feature_fid(ref.real_feats, feats), "cw_feature_fid": cw_fid,
            "cw_feature_fid_per_class": cw_per_class}


def mean_and_min(per_seed: list, keys) -> dict:
    """`key` (the mean over the sampling seeds) and `key_min` (the minimum) for each key the seeds report."""
    out = {}
    for key in keys:
        values = [float(p[key]) for p in per_seed if p.get(key) is not None]
        if values:
            out[key], out[f"{key}_min"] = float(np.mean(values)), float(np.min(values))
    return out


def inception_metrics(extractor, real_images, real_labels, images, labels, num_classes: int, *, k: int = 5,
                      is_splits: int = 10, with_is: bool = True, dc_max: int = 10000, seed: int = 0) -> dict:
    """The paper's metrics in Inception space: FID, IS, density, coverage and their class-wise averages. Density
    and coverage use equal-size random subsets of at most `dc_max` real and fake samples (their cost is quadratic)."""
    real_f, _ = extractor(real_images)
    fake_f, fake_logits = extractor(images)
    rng = np.random.default_rng(seed)
    n = min(dc_max, len(real_f), len(fake_f))
    dc = density_coverage(real_f[rng.permutation(len(real_f))[:n]], fake_f[rng.permutation(len(fake_f))[:n]], k)
    # density and coverage in percent, as the paper reports them
    out = {"fid": feature_fid(real_f, fake_f), "density": dc["density"] * 100, "coverage": dc["coverage"] * 100}
    if with_is:
        out["is"] = inception_score(fake_logits, splits=is_splits)[0]  # softmax over the 1008 unbiased logits
    out["cw_fid"] = classwise(feature_fid, real_f, real_labels, fake_f, labels, num_classes)[0]
    n_min = min(min((np.asarray(real_labels) == c).sum(), (np.asarray(labels) == c).sum()) for c in range(num_classes))
    if n_min > k:
        out["cw_density"] = classwise(lambda r, f: density_coverage(r, f, k)["density"] * 100, real_f, real_labels,
                                      fake_f, labels, num_classes)[0]
        out["cw_coverage"] = classwise(lambda r, f: density_coverage(r, f, k)["coverage"] * 100, real_f, real_labels,
                                       fake_f, labels, num_classes)[0]
    return out
