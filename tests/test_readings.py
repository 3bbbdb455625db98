"""The readings printed after each notebook result: their wording follows the numbers, and a smoke run says it
shows nothing of the paper's effect."""

import numpy as np
import pandas as pd

from nlkit.viz import readings


def _curve(test, train_given):
    return pd.DataFrame({"epoch": np.arange(1, len(test) + 1), "test_acc_live": test, "train_acc_noisy": train_given})


def test_a_fall_with_wrong_labels_fitted_reads_as_memorisation():
    h = _curve([0.50, 0.70, 0.80, 0.75, 0.70], [0.40, 0.55, 0.60, 0.75, 0.90])
    text = readings.training_curve(h, noise_rate=0.4, n_test=10_000)
    assert "peaked at 80.0% (epoch 3)" in text and "ended at 70.0%" in text and "drop of 10.0 points" in text
    assert "memorisation." in text and "not memorisation" not in text
    assert readings.SMOKE_NOTE not in text


def test_a_flat_curve_is_no_fall_and_no_memorisation():
    h = _curve([0.50, 0.70, 0.80, 0.80, 0.798], [0.40, 0.50, 0.55, 0.56, 0.57])
    text = readings.training_curve(h, noise_rate=0.4, n_test=10_000)
    assert "no fall" in text and "no memorisation in this run" in text and "drop of" not in text


def test_a_fall_without_fitting_wrong_labels_is_not_memorisation():
    h = _curve([0.50, 0.80, 0.70], [0.40, 0.55, 0.58])
    text = readings.training_curve(h, noise_rate=0.4, n_test=10_000)
    assert "drop of 10.0 points" in text and "not memorisation of the wrong labels" in text


def test_a_small_test_set_widens_the_margin():
    h = _curve([0.80, 0.77], [0.5, 0.5])
    assert "drop of 3.0 points" in readings.training_curve(h, noise_rate=0.4, n_test=10_000)
    assert "no fall" in readings.training_curve(h, noise_rate=0.4, n_test=100)   # 2 SE on 100 samples: 8 points


def test_smoke_runs_say_they_show_nothing():
    h = _curve([0.50, 0.80, 0.70], [0.40, 0.55, 0.90])
    for text in (readings.training_curve(h, noise_rate=0.4, profile="smoke"),
                 readings.final_accuracy({"acc_last": 67.5, "acc_best_test": 70.0}, profile="smoke"),
                 readings.label_consistency({"label_consistency": 0.9}, num_classes=10, profile="smoke")):
        assert text.endswith(readings.SMOKE_NOTE) and "does not show the paper's effect" in text
    assert readings.SMOKE_NOTE not in readings.final_accuracy({"acc_last": 67.5}, profile="cpu")
    assert "the last epoch is the best" in readings.final_accuracy({"acc_last": 67.5, "acc_best_test": 67.5})
    assert "2.5 points more than the end" in readings.final_accuracy({"acc_last": 67.5, "acc_best_test": 70.0},
                                                                     n_test=10_000)


def test_versus_reads_the_ordering_against_the_paper():
    reverse = readings.versus({"CE": 91.7, "SLN-MO": 67.5}, expected_best="SLN-MO", n_test=360)
    assert "CE leads by 24.2 points" in reverse and "reverse of the paper's ordering" in reverse
    assert "the paper's ordering." in readings.versus({"CE": 60.0, "SLN-MO": 80.0}, expected_best="SLN-MO",
                                                      n_test=10_000)
    smoke = readings.versus({"CE": 60.0, "SLN-MO": 80.0}, expected_best="SLN-MO", profile="smoke")
    assert "no evidence" in smoke and smoke.endswith(readings.SMOKE_NOTE)
    assert "no separation" in readings.versus({"CE": 80.0, "SLN-MO": 80.4}, expected_best="SLN-MO", n_test=10_000)


def test_confidence_separation_follows_the_histograms():
    rng = np.random.default_rng(0)
    noisy = np.arange(1000) < 400
    separated = np.where(noisy, rng.uniform(0.1, 0.5, 1000), rng.uniform(0.8, 1.0, 1000))
    text = readings.confidence(separated, noisy)
    assert "the net separates them" in text and "AUC 1.00" in text
    same = rng.uniform(0.95, 1.0, 1000)
    text = readings.confidence(same, noisy)
    assert "does not separate them" in text and "at chance" in text


def test_division_auc_against_chance():
    def h(auc):
        return pd.DataFrame({"epoch": [1, 2, 3], "auc_net1": [np.nan, 0.5, auc], "auc_net2": [np.nan, 0.5, auc],
                             "precision_net1": [np.nan, 0.5, 0.45], "precision_net2": [np.nan, 0.5, 0.45]})
    below = readings.division(h(0.45), noise_rate=0.5, n_train=2000)
    assert "to 0.45" in below and "below chance" in below and "no better" in below
    above = readings.division(h(0.80), noise_rate=0.5, n_train=2000)
    assert "above chance" in above and "ranks the clean samples first" in above
    assert "at chance" in readings.division(h(0.51), noise_rate=0.5, n_train=2000)
    assert "No division" in readings.division(pd.DataFrame({"epoch": [1], "test_acc": [0.5]}), noise_rate=0.5)


def test_label_consistency_against_chance_and_dsm():
    m = {"label_consistency": 0.05, "ideal_dsm_consistency": 0.6, "evaluator_test_acc": 0.9}
    assert "below chance" in readings.label_consistency(m, num_classes=10, n_samples=1000)
    m["label_consistency"] = 0.7
    lc = {"DSM": [0.55, 0.6], "TDSM": [0.75, 0.8]}
    assert "more often than DSM's" in readings.label_consistency(m, num_classes=10, per_method=lc, n_samples=1000)
    lc = {"DSM": [0.7], "TDSM": [0.71]}
    assert "no difference" in readings.label_consistency(m, num_classes=10, per_method=lc, n_samples=1000)
    m["evaluator_test_acc"] = 0.1
    assert "evaluator itself is at chance" in readings.label_consistency(m, num_classes=10)


def test_lra_against_its_baselines():
    m = {"acc_val_selected": 70.0, "knn_majority_acc": 72.0, "linear_probe_acc": 80.0, "retrieval_purity": 85.0,
         "noisy_label_accuracy": 60.0}
    text = readings.lra_accuracy(m, n_test=10_000)
    assert "10.0 points below its linear probe" in text and "retrieval cleans the labels" in text
    m["acc_val_selected"] = 85.0
    assert "adds 5.0 points over the linear probe" in readings.lra_accuracy(m, n_test=10_000)
    m["retrieval_purity"] = 61.5   # 1.5 points on 1000 samples: within two standard errors (3.1 points)
    assert "does not clean the labels (within noise)" in readings.lra_accuracy(m, n_train=1000)
    assert "retrieval cleans the labels" in readings.lra_accuracy(m, n_train=100_000)


def test_classifier_vs_sigma_reads_correction_or_memorisation():
    diag = pd.DataFrame({"sigma": [0.1, 0.5, 10.0], "clean_acc": [0.9, 0.85, 0.1],
                         "noisy_agreement": [0.6, 0.6, 0.1], "weight_on_observed": [0.5, 0.5, 0.2]})
    assert "it corrects labels" in readings.classifier_vs_sigma(diag, num_classes=10, n=1000)
    diag["noisy_agreement"] = [0.99, 0.99, 0.1]
    assert "follows the noisy labels" in readings.classifier_vs_sigma(diag, num_classes=10, n=1000)
    diag["clean_acc"] = [0.1, 0.1, 0.1]
    assert "at chance" in readings.classifier_vs_sigma(diag, num_classes=10, n=1000)


def test_rank_auc_and_loss_curve():
    assert readings.rank_auc([3, 2, 1, 0], [True, True, False, False]) == 1.0
    assert readings.rank_auc([1, 1, 1, 1], [True, False, True, False]) == 0.5
    h = pd.DataFrame({"kimg": [1, 2, 3], "loss": [1.0, 0.6, 0.5]})
    assert "50% lower" in readings.loss_curve(h)
    assert "not come down" in readings.loss_curve(h.assign(loss=[1.0, 1.0, 0.99]))


def test_the_toy_reads_its_own_effect_even_at_smoke():
    table = pd.DataFrame({"method": ["dsm", "sdsm", "tdsm"], "label_consistency": [0.55, 0.7, 0.95]})
    shown = readings.toy_consistency(table, ideal_dsm=0.6, num_classes=3, n_per_method=900, profile="smoke")
    assert "TDSM puts 0.40 more" in shown and readings.SMOKE_NOTE not in shown
    flat = readings.toy_consistency(table.assign(label_consistency=[0.55, 0.55, 0.56]), ideal_dsm=0.6,
                                    num_classes=3, n_per_method=900, profile="smoke")
    assert "does not show TDSM's correction" in flat and flat.endswith(readings.SMOKE_NOTE)
