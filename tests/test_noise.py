"""The noise library against docs/noise.md (§1-§6, §10, §12)."""

import numpy as np
import pytest
import torch

from nlkit.errors import UserError
from nlkit.noise import (
    ASYM_MAPS,
    CIFAR100_SUPERCLASSES,
    apply_openset,
    asymmetric,
    check_invertible,
    idn_ptd,
    make_noise,
    noise_report,
    openset,
    pairflip,
    plc_hybrid,
    pmd_generate,
    read_labels,
    resln_custom,
    sample_from_transition,
    successor,
    symmetric,
    transition_matrix,
)

C10_SUCCESSOR_SUPER = (
    "51 32 11 42 30 20 7 14 13 10 16 35 17 48 18 19 28 37 24 21 25 31 39 33 6 84 45 29 61 44 55 38 67 49 63 46 "
    "50 68 15 40 86 69 43 88 78 77 98 52 58 60 65 53 56 57 62 72 59 83 90 96 71 9 70 64 66 74 75 73 76 81 82 23 "
    "95 91 80 34 12 79 93 99 36 85 92 0 94 89 87 22 97 41 8 1 54 27 5 4 47 3 2 26"
)


def balanced_labels(n_per_class, c):
    return np.repeat(np.arange(c), n_per_class)


def binomial_tol(p, n, z=5):
    return z * np.sqrt(max(p * (1 - p), 1e-12) / n)


# ---- transition matrices -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,c", [("sym", 10), ("symincl", 10), ("sym", 100), ("pair", 7), ("asym", 10)])
def test_matrices_are_row_stochastic(kind, c):
    T = transition_matrix(kind, 0.4, c)
    assert T.shape == (c, c)
    np.testing.assert_allclose(T.sum(1), 1.0)
    assert (T >= 0).all()


def test_matrix_values():
    T = transition_matrix("sym", 0.4, 10)
    assert T[0, 0] == pytest.approx(0.6) and T[0, 1] == pytest.approx(0.4 / 9)
    T = transition_matrix("symincl", 0.4, 10)
    assert T[0, 0] == pytest.approx(0.64) and T[0, 1] == pytest.approx(0.04)
    T = transition_matrix("asym", 0.4, 10, "asym_c10")
    assert T[9, 1] == pytest.approx(0.4) and T[4, 7] == pytest.approx(0.4) and T[0, 0] == 1.0


def test_condition_numbers_match_spec():
    assert np.linalg.cond(transition_matrix("sym", 0.4, 10)) == pytest.approx(1.8, abs=0.05)
    assert np.linalg.cond(transition_matrix("asym", 0.4, 10, "asym_c10")) == pytest.approx(5.5, abs=0.05)
    assert np.linalg.cond(transition_matrix("asym", 0.4, 10, "asym_mnist_tdsm")) == pytest.approx(5.5, abs=0.05)
    assert np.linalg.cond(transition_matrix("asym", 0.4, 100, "asym_c100_superclass")) == pytest.approx(2.8, abs=0.05)


def test_singular_matrices_are_detected():
    with pytest.raises(UserError, match="singular"):
        check_invertible(transition_matrix("sym", 0.9, 10))
    with pytest.raises(UserError, match="singular"):
        check_invertible(transition_matrix("asym", 0.5, 10, "asym_c10"))
    with pytest.raises(UserError, match="singular"):
        check_invertible(transition_matrix("asym", 0.5, 10, "asym_mnist_tdsm"))
    check_invertible(transition_matrix("sym", 0.4, 10))


# ---- maps ----------------------------------------------------------------------------------------------------

def test_superclass_successor_matches_spec_list():
    expected = np.array([int(v) for v in C10_SUCCESSOR_SUPER.split()])
    succ = successor("asym_c100_superclass")
    np.testing.assert_array_equal(succ, expected)
    assert sorted(succ) == list(range(100)) and not np.any(succ == np.arange(100))


def test_superclass_groups_partition_classes():
    ids = sorted(i for fine in CIFAR100_SUPERCLASSES.values() for i in fine)
    assert ids == list(range(100)) and len(CIFAR100_SUPERCLASSES) == 20


def test_block5_next_and_pair_maps():
    b5 = successor("asym_c100_block5")
    assert b5[0] == 1 and b5[4] == 0 and b5[97] == 98 and b5[99] == 95
    np.testing.assert_array_equal(successor("asym_c100_next"), successor("pair", 100))
    assert successor("asym_c100_next")[99] == 0
    patrini, tdsm = successor("asym_mnist_patrini"), successor("asym_mnist_tdsm")
    assert patrini[7] == 1 and tdsm[7] == 7


def test_pair_equals_asym_c100_next_samples():
    y = balanced_labels(20, 100)
    a = pairflip(y, 0.4, 100, seed=3).noisy
    b = asymmetric(y, 0.4, 100, seed=3, asym_map="asym_c100_next").noisy
    np.testing.assert_array_equal(a, b)


# ---- flip rates ----------------------------------------------------------------------------------------------

def test_sym_flips_to_other_classes_at_rate_p():
    y = balanced_labels(2000, 10)
    r = symmetric(y, 0.4, 10, seed=0)
    assert abs(r.realised_rate - 0.4) < binomial_tol(0.4, len(y))
    rates = noise_report(y, r.noisy, 10)["per_class_noise_rate"]
    assert all(abs(v - 0.4) < binomial_tol(0.4, 2000) for v in rates)
    off = r.T_empirical[~np.eye(10, dtype=bool)]
    assert abs(off.mean() - 0.4 / 9) < 0.005


def test_symincl_realises_p_times_c_minus_1_over_c():
    y = balanced_labels(2000, 10)
    r = symmetric(y, 0.4, 10, seed=1, inclusive=True)
    assert abs(r.realised_rate - 0.36) < binomial_tol(0.36, len(y))


def test_exact_selection_relabels_floor_pn():
    y = balanced_labels(101, 10)
    r = symmetric(y, 0.3, 10, seed=2, selection="exact")
    assert (r.noisy != y).sum() == int(np.floor(0.3 * len(y)))  # sym always changes a selected label
    r = symmetric(y, 0.3, 10, seed=2, selection="exact", inclusive=True)
    assert (r.noisy != y).sum() < int(np.floor(0.3 * len(y)))


def test_asym_touches_only_source_classes():
    y = balanced_labels(2000, 10)
    r = asymmetric(y, 0.4, 10, seed=0, asym_map="asym_c10")
    changed = np.unique(y[r.noisy != y])
    assert set(changed) == {2, 3, 4, 5, 9}
    assert abs(r.realised_rate - 0.2) < binomial_tol(0.2, len(y))
    succ = successor("asym_c10")
    moved = r.noisy != y
    np.testing.assert_array_equal(r.noisy[moved], succ[y[moved]])


def test_asym_requires_a_map_for_100_classes():
    with pytest.raises(UserError, match="asym-map"):
        make_noise(balanced_labels(2, 100), "asym", 0.4, 100, seed=0)
    with pytest.raises(UserError, match="defined for 10"):
        make_noise(balanced_labels(2, 100), "asym", 0.4, 100, seed=0, asym_map="asym_c10")


def test_bad_inputs_raise_user_errors():
    y = balanced_labels(3, 10)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        symmetric(y, 1.5, 10, seed=0)
    with pytest.raises(UserError, match=r"\[0, 5\)"):
        symmetric(y, 0.2, 5, seed=0)
    with pytest.raises(UserError, match="unknown noise kind"):
        make_noise(y, "gaussian", 0.2, 10, seed=0)


# ---- determinism ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sym", "sym-incl", "asym", "pairflip"])
def test_seeded_and_no_global_rng_use(kind):
    y = balanced_labels(300, 10)
    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    a = make_noise(y, kind, 0.4, 10, seed=5)
    b = make_noise(y, kind, 0.4, 10, seed=5)
    c = make_noise(y, kind, 0.4, 10, seed=6)
    np.testing.assert_array_equal(a.noisy, b.noisy)
    assert not np.array_equal(a.noisy, c.noisy)
    assert a.meta["sha256"] == b.meta["sha256"] != c.meta["sha256"]
    after = np.random.get_state()
    assert np.array_equal(np_state[1], after[1]) and np_state[2] == after[2]
    assert torch.equal(torch_state, torch.get_rng_state())


def test_meta_records_what_was_done():
    r = make_noise(balanced_labels(10, 10), "sym", 0.2, 10, seed=9)
    assert r.meta["generator"] == "sym" and r.meta["seed"] == 9 and r.meta["params"]["rate"] == 0.2
    assert r.meta["realised_rate"] == pytest.approx(r.realised_rate)


def test_transition_sampler_both_modes_follow_T():
    y = balanced_labels(3000, 5)
    T = transition_matrix("sym", 0.5, 5)
    for sampler in ("default", "plc_legacy"):
        z = sample_from_transition(y, T, seed=4, sampler=sampler)
        emp = noise_report(y, z, 5)["transition_matrix"]
        np.testing.assert_allclose(emp, T, atol=0.04)


# ---- hybrid rule ---------------------------------------------------------------------------------------------

def _legacy_hybrid(base, P, seed):
    """The documented procedure, written out independently of the kit's implementation."""
    rs = np.random.RandomState(seed)
    return np.array([int(np.argmax(rs.multinomial(1, P[b, :], 1)[0])) for b in base])


@pytest.mark.parametrize("kind,c", [("uniform", 10), ("asym", 10), ("uniform", 100), ("asym", 100)])
def test_hybrid_follows_documented_procedure(kind, c):
    base = np.random.default_rng(0).integers(0, c, 600)
    P = np.eye(c)
    if kind == "uniform":
        P = np.full((c, c), 0.3 / (c - 1))
        np.fill_diagonal(P, 0.7)
    elif c == 10:
        for s, d in [(9, 1), (2, 0), (3, 5), (5, 3), (4, 7)]:
            P[s, s], P[s, d] = 0.7, 0.3
    else:
        for i in range(100):
            P[i, i], P[i, 5 * (i // 5) + (i % 5 + 1) % 5] = 0.7, 0.3
    got = plc_hybrid(base, kind, 0.3, c, seed=77).noisy
    np.testing.assert_array_equal(got, _legacy_hybrid(base, P, 77))
    assert not np.array_equal(got, plc_hybrid(base, kind, 0.3, c, seed=78).noisy)


HYBRIDS = [(ds, c, tag, kind, r) for ds, c in (("cifar10", 10), ("cifar100", 100))
           for tag, kind, r in (("U", "uniform", "0.3"), ("U", "uniform", "0.6"), ("A", "asym", "0.3"))]


@pytest.mark.parametrize("ds,c,tag,kind,r", HYBRIDS)
def test_hybrid_regenerates_published_files(shared_data, ds, c, tag, kind, r):
    pmd = shared_data / "noise" / "lra-pmd"
    base = np.load(pmd / f"{ds}-1-0.35.npy")
    published = np.load(pmd / f"{ds}-1-0.35_{tag}_{r}.npy")
    np.testing.assert_array_equal(plc_hybrid(base, kind, float(r), c, seed=77).noisy, published)
    assert np.mean(plc_hybrid(base, kind, float(r), c, seed=0).noisy == published) < 0.99


# ---- published files -----------------------------------------------------------------------------------------

PMD_RATES = {"cifar10-1-0.35": 0.3503, "cifar10-1-0.40": 0.4047, "cifar10-1-0.45": 0.4510,
             "cifar10-1-0.50": 0.5024, "cifar10-1-0.55": 0.5470, "cifar10-1-0.60": 0.5926,
             "cifar10-1-0.65": 0.6430, "cifar10-1-0.70": 0.7046, "cifar10-1-0.35_U_0.3": 0.5330,
             "cifar10-1-0.35_U_0.6": 0.7177, "cifar10-1-0.35_A_0.3": 0.4124}


def test_published_checksums(shared_data):
    from nlkit.noise import PUBLISHED_SHA256, verify_published

    for name in PUBLISHED_SHA256:
        verify_published(shared_data / "noise" / name, name)


@pytest.mark.parametrize("name,rate", sorted(PMD_RATES.items()))
def test_pmd_realised_rates(shared_data, name, rate):
    clean = read_labels(str(shared_data / "noise" / "sln" / "cifar10" / "sym0.4.csv") + ":label")[:45000]
    noisy = read_labels(shared_data / "noise" / "lra-pmd" / f"{name}.npy", num_classes=10)
    assert noise_report(clean, noisy, 10)["noise_rate"] == pytest.approx(rate, abs=5e-5)


def test_pmd70_keeps_plurality_in_three_classes(shared_data):
    clean = read_labels(str(shared_data / "noise/sln/cifar10/sym0.4.csv") + ":label")[:45000]
    noisy = read_labels(shared_data / "noise/lra-pmd/cifar10-1-0.70.npy")
    assert noise_report(clean, noisy, 10)["classes_with_true_plurality"] == 3


@pytest.mark.parametrize("ds,kind,rate", [("cifar10", "sym", 0.4003), ("cifar10", "asym", 0.2032),
                                          ("cifar10", "dependent", 0.4000), ("cifar100", "sym", 0.3988),
                                          ("cifar100", "asym", 0.4001), ("cifar100", "dependent", 0.4000)])
def test_sln_csv_realised_rates(shared_data, ds, kind, rate):
    f = str(shared_data / "noise" / "sln" / ds / f"{kind}0.4.csv")
    rep = noise_report(read_labels(f + ":label"), read_labels(f + ":label_noisy"))
    assert rep["noise_rate"] == pytest.approx(rate, abs=5e-5)


def test_sln_asym_c100_file_is_next_class_map(shared_data):
    f = str(shared_data / "noise/sln/cifar100/asym0.4.csv")
    y, z = read_labels(f + ":label"), read_labels(f + ":label_noisy")
    moved = y != z
    np.testing.assert_array_equal(z[moved], successor("asym_c100_next")[y[moved]])


# ---- PMD from classifier probabilities ------------------------------------------------------------------------

def test_pmd_generate_uses_top2_and_margin():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 10)) * 3
    eta = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    r = pmd_generate(eta, 1, factor=1.43, seed=0)
    top2 = np.argsort(-eta, 1)[:, :2]
    assert np.all((r.noisy == top2[:, 0]) | (r.noisy == top2[:, 1]))
    # confident samples (large margin) are kept more often than ambiguous ones
    margin = np.sort(eta, 1)[:, -1] - np.sort(eta, 1)[:, -2]
    flipped = r.noisy != top2[:, 0]
    assert flipped[margin > np.median(margin)].mean() < flipped[margin <= np.median(margin)].mean()
    # type-I keep probability (1 - tau)/factor is at least 0.5/1.43 = 0.35
    assert 0.35 < 1 - flipped.mean() < 1 / 1.43 + 0.01


# ---- instance-dependent (PTD) --------------------------------------------------------------------------------

def test_idn_ptd_rate_and_flatten_order():
    rng = np.random.default_rng(0)
    y = balanced_labels(200, 10)
    images = rng.integers(0, 256, size=(len(y), 8, 8, 3), dtype=np.uint8)
    r = idn_ptd(images, y, 0.4, 10, seed=123)
    assert r.meta["expected_rate"] == pytest.approx(0.40, abs=0.01)
    assert abs(r.realised_rate - 0.40) < 0.04
    again = idn_ptd(images, y, 0.4, 10, seed=123)
    np.testing.assert_array_equal(r.noisy, again.noisy)
    chw = idn_ptd(images, y, 0.4, 10, seed=123, flatten="chw")
    assert not np.array_equal(r.noisy, chw.noisy)
    # flips concentrate on few targets (the softmax is nearly one-hot)
    rep = noise_report(y, r.noisy, 10)
    assert rep["top_confusions"][0]["share_of_class"] > 0.1


def test_idn_expected_rate_for_nominal_0_2():
    y = balanced_labels(500, 10)
    images = np.random.default_rng(1).integers(0, 256, size=(len(y), 4, 4, 3), dtype=np.uint8)
    assert idn_ptd(images, y, 0.2, 10).meta["expected_rate"] == pytest.approx(0.2055, abs=0.01)


# ---- open-set and re-sln emulation ----------------------------------------------------------------------------

def test_openset_plan_and_apply():
    plan = openset(1000, 500, 0.4, seed=1)
    assert len(plan["replaced_idx"]) == 400 == len(np.unique(plan["replaced_idx"]))
    assert plan["source_idx"].max() < 500 and plan["rate"] == 0.4
    train = np.zeros((1000, 2, 2, 3), np.uint8)
    source = np.full((500, 2, 2, 3), 7, np.uint8)
    out = apply_openset(train, source, plan)
    assert (out[plan["replaced_idx"]] == 7).all() and (np.delete(out, plan["replaced_idx"], 0) == 0).all()
    with pytest.raises(UserError):
        openset(1000, 100, 0.4, seed=1)


def test_resln_custom_emulates_equal_rates_and_missing_pair():
    y = balanced_labels(1000, 10)
    r = resln_custom(y, 0.4, 10, seed=123, kind="sym")
    rates = noise_report(y, r.noisy, 10)["per_class_noise_rate"]
    assert max(rates) - min(rates) < 1e-12  # identical within-class positions flipped
    a = resln_custom(y, 0.4, 10, seed=123, kind="asym")
    assert set(np.unique(y[a.noisy != y])) == {2, 3, 5, 9}  # deer->horse missing


# ---- report --------------------------------------------------------------------------------------------------

def test_report_fields():
    y = np.array([0, 0, 1, 1, 2, 2])
    z = np.array([0, 1, 1, 1, 0, 2])
    rep = noise_report(y, z, 3)
    assert rep["n"] == 6 and rep["noise_rate"] == pytest.approx(2 / 6)
    assert rep["per_class_noise_rate"] == pytest.approx([0.5, 0.0, 0.5])
    np.testing.assert_allclose(np.sum(rep["transition_matrix"], 1), 1.0)
    with pytest.raises(UserError, match="length"):
        noise_report(y, z[:5], 3)
    assert set(ASYM_MAPS) >= {"asym_c10", "asym_c100_next"}


def test_superclass_groups_derived_from_coarse_labels():
    from nlkit.noise import superclass_groups_from_coarse

    # coarse labels as the CIFAR-100 release lays them out: fine id -> its superclass
    coarse_of = {f: c for c, fine in enumerate(CIFAR100_SUPERCLASSES.values()) for f in fine}
    fine = np.random.default_rng(0).permutation(np.repeat(np.arange(100), 3))
    derived = superclass_groups_from_coarse(fine, [coarse_of[f] for f in fine])
    assert list(derived.values()) == list(CIFAR100_SUPERCLASSES.values())


def test_superclass_table_matches_real_cifar100_when_present():
    import os

    from nlkit.data import load_dataset
    from nlkit.errors import DataMissingError
    from nlkit.noise import superclass_groups_from_coarse

    root = os.environ.get("NLKIT_DATA_ROOT")
    if not root:
        pytest.skip("CIFAR-100 not supplied (set NLKIT_DATA_ROOT)")
    try:
        ds = load_dataset("cifar100", data_root=root, download=False)
    except DataMissingError:
        pytest.skip("CIFAR-100 not found under NLKIT_DATA_ROOT")
    if "train_coarse_labels" not in ds.extra:
        pytest.skip("CIFAR-100 loaded from a folder tree, which carries no coarse labels")
    derived = superclass_groups_from_coarse(ds.train_labels, ds.extra["train_coarse_labels"])
    assert list(derived.values()) == list(CIFAR100_SUPERCLASSES.values())
