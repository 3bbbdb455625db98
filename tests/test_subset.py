"""Reduced-budget subsets (`train_subset` / `test_subset`): seeded, stratified, aligned with the noisy labels."""

import numpy as np
import pytest

from nlkit.data import stratified_subset
from nlkit.errors import UserError
from nlkit.methods.sln import prepare_data
from nlkit.pipeline.params import load_cell
from nlkit.pipeline.params import repo_root


def test_stratified_subset_is_seeded_sorted_and_keeps_class_shares():
    labels = np.repeat(np.arange(10), [100, 100, 100, 100, 100, 50, 50, 50, 50, 300])
    idx = stratified_subset(labels, 200)
    assert len(idx) == 200 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, stratified_subset(labels, 200))
    assert np.bincount(labels[idx], minlength=10)[9] == 60 and np.bincount(labels[idx], minlength=10)[5] == 10
    assert np.array_equal(stratified_subset(labels, None), np.arange(len(labels)))
    for bad in (0, 2000, 1.5):
        with pytest.raises(UserError):
            stratified_subset(labels, bad)


def test_sln_prepare_subsets_images_and_both_label_sets_together():
    cell = load_cell(repo_root() / "params" / "sln" / "cifar10-sym-0.40-paper-ce.yaml", "smoke")
    full = prepare_data(cell, 0)
    small = prepare_data({**cell, "train_subset": 300, "test_subset": 100}, 0)
    assert len(small.train_images) == 300 and len(small.noisy) == 300 and len(small.test_labels) == 100
    idx = stratified_subset(full.clean, 300)
    assert np.array_equal(small.train_images, full.train_images[idx])
    assert np.array_equal(small.noisy, full.noisy[idx]) and np.array_equal(small.clean, full.clean[idx])
    assert np.array_equal(small.noisy_mask, small.noisy != small.clean)


def test_per_sample_index_of_a_subset_run_is_the_dataset_index():
    """per_sample.csv of a run on a subset names each sample by its index in the full training set, so that the
    rankings of runs on different subsets join and the images can be looked up."""
    from types import SimpleNamespace

    import torch

    from nlkit.methods import lra_diffusion as lra
    from nlkit.methods.sln import classifier_verdicts
    from nlkit.models import build_model
    from nlkit.train import Trainer

    cell = load_cell(repo_root() / "params" / "sln" / "cifar10-sym-0.40-paper-ce.yaml", "smoke")
    full = prepare_data(cell, 0)
    small = prepare_data({**cell, "train_subset": 300}, 0)
    idx = stratified_subset(full.clean, 300)
    torch.manual_seed(0)
    trainer = Trainer(build_model("small_cnn", num_classes=small.num_classes, in_channels=small.train_images.shape[-1]),
                      lr=0.1, device="cpu")
    frame = classifier_verdicts(trainer, small)
    assert np.array_equal(frame["index"].to_numpy(), idx) and not np.array_equal(idx, np.arange(300))
    assert np.array_equal(frame["given"].to_numpy(), full.noisy[idx])

    lra_cell = load_cell(next((repo_root() / "params" / "lra_diffusion").glob("cifar10-*.yaml")), "smoke")
    lra_full = lra.prepare_data(lra_cell)
    lra_small = lra.prepare_data({**lra_cell, "train_subset": 200})
    lra_idx = stratified_subset(lra_full.clean, 200)
    fake_run = SimpleNamespace(candidates=np.repeat(lra_small.noisy[:, None], 3, 1), train_pred=lra_small.noisy)
    frame = lra.per_sample_verdicts(fake_run, lra_small)
    assert np.array_equal(frame["index"].to_numpy(), lra_idx)
    assert np.array_equal(frame["given"].to_numpy(), lra_full.noisy[lra_idx])
