"""LRA-Diffusion's data: the noisy train split, the clean validation tail, and the frozen f_p features of
every split (CLIP, a SimCLR encoder, or PCA for the smoke stand-in), cached on disk."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...errors import UserError, check_choice
from ...train import default_device

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # used for CIFAR-100 too (docs/lra-diffusion.md §7 #12)


@dataclass
class LRAData:
    train_images: np.ndarray
    noisy: np.ndarray
    clean: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray      # clean: the protocol's model selection
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list
    mean: tuple
    std: tuple
    pixels: str
    noise_meta: dict
    train_index: np.ndarray | None = None   # each training sample's index in the full dataset (per_sample.csv)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def normalisation(images: np.ndarray) -> tuple[tuple, tuple]:
    """The code's input normalisation: CIFAR's statistics for colour images, 0.5 / 0.5 for grey ones."""
    return (CIFAR_MEAN, CIFAR_STD) if images.shape[-1] == 3 else ((0.5,), (0.5,))


def prepare_data(cell: dict, data_root=None, noise_root=None) -> LRAData:
    """Train = the first images with the noisy labels of the cell, val = the held-out tail with clean labels
    (CIFAR: 0..44999 and 45000..49999, PLC's protocol), test = the test set."""
    from ...data import holdout_tail, load_dataset, stratified_subset
    from ...noise.setting import apply_noise_model, restrict, setting_from_params

    ds = load_dataset(cell["dataset"], data_root=data_root)
    n_val = int(cell.get("val_size", 5000))
    if n_val >= len(ds.train_labels):
        raise UserError(f"val_size {n_val} leaves no training images in {cell['dataset']}")
    train_idx, val_idx = holdout_tail(len(ds.train_labels), n_val)
    setting = setting_from_params(cell, data_root, noise_root)
    train = restrict(ds, (0, int(train_idx[-1]) + 1))
    result = apply_noise_model(train, setting["noise"], setting["rate"], setting["noise_seed"],
                               asym_map=setting["asym_map"], label_file=setting["label_file"])
    mean, std = normalisation(ds.train_images)
    # reduced budgets (the cpu profile): stratified subsets by clean label, drawn after the noise so the published
    # file still indexes the full training part; the held-out validation tail is kept whole
    keep = stratified_subset(result.clean, cell.get("train_subset"))
    held = stratified_subset(ds.test_labels, cell.get("test_subset"))
    return LRAData(train.train_images[keep], result.noisy[keep], result.clean[keep], ds.train_images[val_idx],
                   ds.train_labels[val_idx], ds.test_images[held], ds.test_labels[held], ds.classes, mean, std,
                   ds.pixels, result.meta, train_index=keep)


def encoder_features(data: LRAData, encoder: dict, *, train_feat: str = "augmented", seed: int = 0,
                     device=None, cache: bool = True) -> dict[str, np.ndarray]:
    """f_p features of train, val and test, computed once and cached on disk (keyed by encoder, data, split and
    augmentation) so every noise setting and seed reuses them. Train features come from one augmented pass
    (the code's behaviour) unless train_feat='clean'."""
    from ...encoders.features import CLIP_PRECISIONS, cached, clip_features, clip_precision, pca_features

    name = encoder["name"]
    check_choice(name, ("clip", "simclr", "pca"), "f_p encoder")
    check_choice(train_feat, ("augmented", "clean"), "train features")
    key_encoder = dict(encoder)
    if key_encoder.get("weights"):  # the weights' content, not their path: retrained weights are new features
        from ...noise import sha256_file

        key_encoder["weights"] = sha256_file(key_encoder["weights"])
    dev = str(device or default_device())
    precision = encoder.get("precision") or "code"
    check_choice(precision, CLIP_PRECISIONS, "encoder precision")
    if name == "simclr" and precision == "fp16":
        raise UserError("SimCLR features run in fp32 (precision 'code', as the LRA code), 'fp32' or 'bf16'")
    ident = {"encoder": key_encoder, "n": [len(data.train_images), len(data.val_images), len(data.test_images)],
             "pixels": data.pixels, "digest": _digest(data.train_images)}
    if name != "pca":
        # the arithmetic is part of the features' identity (CLIP under 'code': fp16 weights on CUDA, as the LRA
        # code; SimCLR: fp32); "build" 2 = CLIP with QuickGELU for the OpenAI tag and no clamp after the resize,
        # so features cached by the earlier construction are not reused
        ran_in = "bf16-autocast" if precision == "bf16" else \
            clip_precision(precision, dev) if name == "clip" else "fp32"
        ident.update(precision=ran_in, build=2)
    feats = {}
    if name == "pca":  # smoke substitute: deterministic PCA of the pixels (needs no weights)
        all_images = np.concatenate([data.train_images, data.val_images, data.test_images])
        compute = lambda: pca_features(all_images, encoder.get("dim", 64), seed=0)  # noqa: E731
        z = cached({**ident, "split": "all"}, compute) if cache else compute()
        a, b = len(data.train_images), len(data.train_images) + len(data.val_images)
        return {"train": z[:a], "val": z[a:b], "test": z[b:]}
    if name == "clip":
        from ...encoders.features import load_clip

        model = None

        def compute(images, augment_seed=None):
            nonlocal model
            model = model or load_clip(encoder.get("model", "ViT-L-14"), encoder.get("pretrained", "openai"),
                                       dev, clip_precision(precision, dev))
            if augment_seed is not None:
                images = _augmented_copy(images, augment_seed)
            # the LRA code feeds CLIP's raw encode_image output (cast to fp32, not L2-normalised)
            return clip_features(images, model=model, device=dev, normalize=False, precision=precision)
    else:
        from ...encoders.simclr import load_simclr, simclr_features

        model = load_simclr(encoder["weights"], encoder.get("arch", "resnet50"))

        def compute(images, augment_seed=None):
            return simclr_features(model, images, device=device, mean=data.mean, std=data.std,
                                   augment_seed=augment_seed, bf16=precision == "bf16")

    aug_seed = seed + 11 if train_feat == "augmented" else None
    for split, images, aug in (("train", data.train_images, aug_seed), ("val", data.val_images, None),
                               ("test", data.test_images, None)):
        if not len(images):  # no held-out split (the benchmark's protocol): filled in below, once the width is known
            continue
        key = {**ident, "split": split, "augment_seed": aug}
        feats[split] = cached(key, lambda: compute(images, aug)) if cache else compute(images, aug)
    width = feats["train"].shape[1]
    return {split: feats.get(split, np.zeros((0, width), np.float32)) for split in ("train", "val", "test")}


def _digest(images: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(images[:: max(1, len(images) // 256)]).tobytes()).hexdigest()[:16]


def _augmented_copy(images: np.ndarray, seed: int) -> np.ndarray:
    """One random crop (zero padding 4) and flip per image, as uint8 (the code cached such a pass)."""
    from ...data import DeviceBatcher

    b = DeviceBatcher(images, batch_size=4096, shuffle=False, crop_padding=4, flip=True, seed=seed)
    out = np.empty_like(images)
    for batch in b.epoch(0):
        out[batch.idx.numpy()] = (batch.x * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out
