"""CIFAR-10N / CIFAR-100N: the release files found, checked, fetched and used, on a small generated stand-in of the
official file (a dict of numpy int64 arrays saved with torch.save, as the release is); never the real file."""

import json
import shutil
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nlkit.errors import DataMissingError, UserError
from nlkit.noise import cifarn
from nlkit.noise.labelfiles import PUBLISHED_SHA256, PUBLISHED_URLS, read_labels, sha256_file
from nlkit.noise.setting import apply_noise_model, setting_from_params

ROOT = Path(__file__).resolve().parents[1]
RELATIVE = "cifar-n/CIFAR-10_human.pt"


def fake_release(path: Path, clean: np.ndarray, seed: int = 0) -> Path:
    """A CIFAR-10_human.pt of the official structure: clean_label and five human label sets, int64 arrays."""
    rng = np.random.default_rng(seed)
    sets = {}
    for key, rate in (("aggre_label", 0.09), ("worse_label", 0.4), ("random_label1", 0.17),
                      ("random_label2", 0.18), ("random_label3", 0.18)):
        noisy = clean.copy()
        flip = rng.random(len(clean)) < rate
        noisy[flip] = (clean[flip] + 1) % 10  # structured: each class into the next, as human confusions are
        sets[key] = noisy.astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"clean_label": clean.astype(np.int64), **sets}, path)
    return path


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A noise root holding a fake CIFAR-10N release whose sha256 is pinned for the test."""
    clean = np.random.default_rng(1).integers(0, 10, 600)
    path = fake_release(tmp_path / "noise" / RELATIVE, clean)
    monkeypatch.setitem(PUBLISHED_SHA256, RELATIVE, sha256_file(path))
    return SimpleNamespace(root=tmp_path / "noise", path=path, clean=clean)


def test_fake_release_has_the_official_structure_and_reads_by_key(release):
    from nlkit.safeload import torch_load

    obj = torch_load(release.path, "a label file", numpy=True)
    assert set(obj) == {"clean_label", "aggre_label", "worse_label", "random_label1", "random_label2",
                        "random_label3"}
    assert all(isinstance(v, np.ndarray) and v.dtype == np.int64 for v in obj.values())
    for name, key in cifarn.LABEL_SETS["cifar10"].items():
        np.testing.assert_array_equal(read_labels(f"{release.path}:{key}", 10, 600), obj[key])
    assert cifarn.label_key("cifar100", "noisy") == "noisy_label"
    with pytest.raises(UserError, match="no CIFAR-N label set 'worst'"):
        cifarn.label_key("cifar10", "worst")


def test_release_is_found_under_the_noise_root_and_checked(release, tmp_path):
    assert cifarn.find_file("cifar10", noise_root=release.root) == release.path
    assert cifarn.label_spec("cifar10", "worse", noise_root=release.root) == f"{release.path}:worse_label"
    assert cifarn.find_file("cifar10", data_root=tmp_path) == release.path   # <data-root>/noise/cifar-n/
    assert cifarn.available("cifar10", release.root) and not cifarn.available("cifar100", release.root)


def test_a_modified_release_is_refused_in_one_line(release, tmp_path):
    other = tmp_path / "other"
    copy = other / RELATIVE
    copy.parent.mkdir(parents=True)
    shutil.copy(release.path, copy)
    with open(copy, "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError) as err:
        cifarn.find_file("cifar10", noise_root=other)
    assert "sha256" in str(err.value) and "\n" not in str(err.value)
    assert not cifarn.available("cifar10", other)


def test_missing_release_offline_says_so_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlretrieve", lambda *a, **k: pytest.fail("downloaded under NLKIT_OFFLINE"))
    with pytest.raises(DataMissingError, match="NLKIT_OFFLINE=1"):
        cifarn.find_file("cifar10", noise_root=tmp_path)
    assert PUBLISHED_URLS[RELATIVE].startswith("https://github.com/UCSC-REAL/cifar-10-100n/")


def test_download_keeps_only_a_checked_file(release, tmp_path, monkeypatch):
    """The official URL is fetched (here: a stand-in copy) into the noise root; a download whose sha256 differs
    leaves nothing behind."""
    monkeypatch.delenv("NLKIT_OFFLINE")
    fetched = []

    def fake_fetch(url, target):
        fetched.append(url)
        shutil.copy(release.path, target)

    monkeypatch.setattr(urllib.request, "urlretrieve", fake_fetch)
    root = tmp_path / "fresh"
    assert cifarn.find_file("cifar10", noise_root=root) == root / RELATIVE
    assert fetched == [PUBLISHED_URLS[RELATIVE]] and (root / RELATIVE).is_file()

    monkeypatch.setitem(PUBLISHED_SHA256, RELATIVE, "0" * 64)
    bad = tmp_path / "bad"
    with pytest.raises(DataMissingError, match="not the published"):
        cifarn.find_file("cifar10", noise_root=bad)
    assert not any(p.is_file() for p in bad.rglob("*"))


def test_clean_labels_of_the_file_must_be_the_datasets(release):
    ds = SimpleNamespace(train_labels=release.clean, num_classes=10, name="cifar10")
    spec = cifarn.label_spec("cifar10", "aggre", noise_root=release.root)
    res = apply_noise_model(ds, "file", 0.0, 0, label_file=spec)
    np.testing.assert_array_equal(res.clean, release.clean)
    assert 0.05 < np.mean(res.noisy != res.clean) < 0.13
    shuffled = SimpleNamespace(train_labels=np.roll(release.clean, 1), num_classes=10, name="cifar10")
    with pytest.raises(UserError) as err:
        apply_noise_model(shuffled, "file", 0.0, 0, label_file=spec)
    assert "not in torchvision order" in str(err.value) and "\n" not in str(err.value)


def test_cells_read_the_release_through_the_noise_root(release):
    from nlkit.pipeline import load_cell

    cell = load_cell(ROOT / "params/sln/cifar10n-aggre-ce.yaml", "paper")
    assert cell["noise"]["sha256"] == "873e69c39cb9b5e97fb6bae2d60bb59b38a5cbc31d2b868f7903dcb2b9dd2310"
    with pytest.raises(UserError, match="not the published file"):  # the fake is not the pinned release
        setting_from_params(cell, noise_root=release.root)
    cell["noise"]["sha256"] = sha256_file(release.path)
    setting = setting_from_params(cell, noise_root=release.root)
    assert setting["label_file"] == f"{release.path}:aggre_label" and setting["noise"] == "file"
    for paper, prefix in (("sln", "cifar100n-noisy-slnmolc"), ("instancegm", "cifar10n-worse-dividemix")):
        smoke = load_cell(ROOT / f"params/{paper}/{prefix}.yaml", "smoke")
        assert smoke["dataset"] == "digits" and smoke["noise"]["model"] == "sym" and not smoke["noise"].get("file")


def test_table_entry_shows_the_leaderboard_value_and_its_source(kit_project):
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.params import params_hash
    from nlkit.pipeline.runner import metrics_path
    from nlkit.pipeline.tables import collect, to_markdown

    cell = load_cell(kit_project / "params/instancegm/cifar10n-aggre-ce.yaml", "quick")
    for seed in cell["seeds"]:
        path = metrics_path(cell, seed)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"acc_last": 80.0, "acc_best_test": 88.0 + seed,
                                    "params_hash": params_hash(cell, seed)}))
    df = collect("quick", "instancegm")
    i6 = df[df.table == "I6"].set_index(["row", "column"])
    row = i6.loc[("CE", "CIFAR-10N aggre")]
    assert row.n_seeds == len(cell["seeds"]) and row.paper_value == 87.77 and row.expected_tag == "S"
    assert "Wei et al., ICLR 2022" in row.expected_source and "ReScience" in row.expected_source
    random1 = i6.loc[("DivideMix", "CIFAR-10N random1")]
    assert random1.paper_value == 95.16 and "Table 4" in random1.expected_source and not random1.paper_unverified
    md = to_markdown(df, "instancegm", "quick")
    # the leaderboard is best-epoch, mean ± std over runs: so is the reproduced column, and the table says so
    assert "## I6: CIFAR-N" in md and "| CE | CIFAR-10N aggre | 88.50 ± 0.71 | 2 | 87.77 | 0.73 |" in md
    assert "best test epoch (acc_best_test)" in md.split("## I6")[1]


def test_recalled_paper_values_are_marked_in_every_table(kit_project):
    from nlkit.pipeline.tables import UNVERIFIED_NOTE, collect, to_markdown

    df = collect("quick", "instancegm")
    recalled = df[df["paper_unverified"]]
    assert set(recalled["table"]) >= {"I1"} and (recalled["expected_tag"] == "R").all()
    md = to_markdown(df, "instancegm", "quick")
    i1 = md.split("## I1")[1].split("\n## ")[0]
    assert UNVERIFIED_NOTE in i1 and " °" in i1
    i6 = md.split("## I6")[1].split("\n## ")[0]
    assert UNVERIFIED_NOTE not in i6


def test_flip_matrix_vs_symmetric_on_generated_labels():
    import matplotlib.pyplot as plt

    from nlkit.viz.figures import flip_matrix_vs_symmetric, symmetric_at_rate

    clean = np.random.default_rng(0).integers(0, 10, 5000)
    noisy = clean.copy()
    flip = (clean == 3) & (np.random.default_rng(1).random(5000) < 0.5)
    noisy[flip] = 5   # one strong confusion: cat -> dog
    sym, rate = symmetric_at_rate(clean, noisy, 10, seed=0)
    assert rate == pytest.approx(np.mean(clean != noisy)) and abs(np.mean(sym.noisy != sym.clean) - rate) < 0.01
    fig = flip_matrix_vs_symmetric(clean, noisy, [str(i) for i in range(10)], name="fake CIFAR-10N")
    heat = [ax for ax in fig.axes if ax.get_title()]
    assert len(heat) == 2 and f"{rate:.1%}" in heat[0].get_title() and "symmetric" in heat[1].get_title()
    plt.close(fig)


def test_explorer_offers_the_cifar_n_label_sets(release, monkeypatch):
    """Where the release is found, the CIFAR-N dropdown fills the `file` model; the flip matrices are drawn."""
    import nlkit.data
    from nlkit.data import load_dataset
    from nlkit.viz.explorer import cifarn_options, explorer_widget

    digits = load_dataset("digits")
    clean = digits.train_labels
    path = fake_release(release.root / RELATIVE, clean, seed=3)
    monkeypatch.setitem(PUBLISHED_SHA256, RELATIVE, sha256_file(path))
    monkeypatch.setattr(nlkit.data, "load_dataset", lambda name, **kw: replace(digits, name=name))
    assert cifarn_options("digits", release.root) == []
    options = cifarn_options("cifar10", release.root)
    assert [v.rsplit(":", 1)[1] for _, v in options] == list(cifarn.LABEL_SETS["cifar10"].values())
    ui = explorer_widget(datasets=("cifar10",), noise_root=release.root, background=False)
    boxes = {getattr(b, "description", ""): b for b in _widgets(ui)}
    boxes["CIFAR-N"].value = options[1][1]   # random1
    assert boxes["noise"].value == "file" and boxes["label file"].value == f"{path}:random_label1"
    assert "cannot draw" not in ui.children[1].value and len(ui.children[2].outputs) == 4


def _widgets(box):
    for child in getattr(box, "children", ()):
        yield child
        yield from _widgets(child)
