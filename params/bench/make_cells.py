"""Write the benchmark's cells: one YAML per (method, noise setting) pair, params/bench/<setting>-<method>.yaml.

    python params/bench/make_cells.py

Each cell's train block is its method's own paper defaults (SLN's and InstanceGM's from their params folders, GCE's
and Co-teaching's from their Config dataclasses, which carry their papers' recipes); each profile's entry scales
the method's schedule (warm-up, lr drops, label-correction start, forget-rate ramp) to the shared epoch budget of
params/bench/_profiles.yaml, so every method gets the same number of epochs. Rerun after changing either.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PARAMS = HERE.parent

# column id -> (table label, noise block, SLN's sigma for this noise type: docs/sln.md §3.2)
SETTINGS = {
    "clean": ("clean", {"model": "clean"}, 0.0),
    "sym-0.2": ("sym 0.2", {"model": "sym", "rate": 0.2}, 1.0),
    "sym-0.5": ("sym 0.5", {"model": "sym", "rate": 0.5}, 1.0),
    "sym-0.8": ("sym 0.8", {"model": "sym", "rate": 0.8}, 1.0),
    "asym-0.4": ("asym 0.4", {"model": "asym", "rate": 0.4, "asym_map": "asym_c10"}, 0.5),
    "ptd-0.2": ("PTD 0.2", {"model": "idn", "rate": 0.2}, 0.5),
    "ptd-0.4": ("PTD 0.4", {"model": "idn", "rate": 0.4}, 0.5),
}
# The cpu profile's CIFAR-10 columns at its CIFAR-10 scale (CIFAR_CPU below). The quick and paper profiles run CIFAR-10
# in the plain columns, so they skip these (CPU_ONLY).
SETTINGS["c10-sym-0.5"] = ("CIFAR-10 sym 0.5", {"model": "sym", "rate": 0.5}, 1.0)
SETTINGS["c10-ptd-0.4"] = ("CIFAR-10 PTD 0.4", {"model": "idn", "rate": 0.4}, 0.5)
CPU_ONLY = {"c10-sym-0.5", "c10-ptd-0.4"}
# CIFAR-10N's human labels (a published file; docs/noise.md §7.1): CIFAR-10's own images only, so the quick and
# paper profiles run them and the cell is reported "not run" where the file is missing. SLN's sigma 0.5 is the
# kit's choice for real noise (params/sln/cifar10n-*-slnmolc.yaml).
CIFAR10N = {"aggre": "aggre_label", "random1": "random_label1", "worse": "worse_label"}
for _name, _field in CIFAR10N.items():
    SETTINGS[f"c10n-{_name}"] = (f"CIFAR-10N {_name}", {
        "model": "file", "file": "cifar-n/CIFAR-10_human.pt", "field": _field,
        "sha256": "873e69c39cb9b5e97fb6bae2d60bb59b38a5cbc31d2b868f7903dcb2b9dd2310"}, 0.5)
# LRA-Diffusion's published PMD label files (docs/noise.md §2, §9.1): the first 45,000 CIFAR-10 training images
# (the rest is LRA's clean validation tail, which no benchmark row uses). Real-world-like, so SLN's sigma 0.5.
PMD_FILES = {"0.35": "f8216a408f6413c82b1aa6868e496a6ed4ad712d5876a110bd53bb779bd3c3d2",
             "0.70": "ab274c1392fda8138d5b3e6f1e3786aac2b6cd52752cbfd289542a5ca85a6bdf"}
for _rate, _sha in PMD_FILES.items():
    SETTINGS[f"pmd-{_rate}"] = (f"PMD {round(float(_rate) * 100)}%", {
        "model": "file", "file": f"lra-pmd/cifar10-1-{_rate}.npy", "sha256": _sha, "label_range": [0, 45000],
        "source": "LRA-Diffusion's published PMD labels (PLC's polynomial-margin diminishing noise), "
                  f"cifar10-1-{_rate}.npy (docs/noise.md §2, §9.1)"}, 0.5)
# The cpu profile's CIFAR-10 scale (docs/bench.md §3): full-resolution CIFAR-10, a seeded class-stratified subset of
# 20,000 training images (the noise drawn on all 50,000 first, so a published label file keeps its indices) and the
# whole 10,000-image test set; the speed runs' ResNet-9 at quarter width (0.41M parameters; at half width a CE
# epoch took 47 s on 2 cores, which would put DivideMix's six-fold epoch far past 30 minutes a run) with
# RandomCrop(4) + flip; bf16 autocast where the CPU has native bf16 units, and channels_last (docs/README.md,
# "Speed on CPUs"); both CPU cores a run. The clean column runs at this scale; the MNIST columns and the reduced
# CIFAR-10 label-file columns keep their committed runs until they are run again at it.
CIFAR_CPU = {"dataset": "cifar10", "image_size": None, "train_subset": 20000, "test_subset": 10000,
             "train": {"arch": "resnet9", "width_mult": 0.25, "crop_padding": 4, "flip": True, "bf16": "auto",
                       "channels_last": True},
             "resources": {"num_cpus": 2}}
CIFAR_CPU_EPOCHS = 30
# DivideMix's and InstanceGM's epoch is two networks, each with a division pass over the training set and four
# forward passes a step: at this scale 145 s against CE's 19 (2 AMX cores), so 30 epochs would take an hour. They get
# 15 (5 warm-up + 10), about 28 minutes (docs/bench.md §3).
CIFAR_CPU_EPOCHS_ROW = {"dividemix": 15, "instancegm": 15}
# SLN's constant lr 0.001 belongs to its 300 epochs; in 30 the reduced profile's constant 0.02 left clean CE
# underfitting (78.6 %, training accuracy 87 %). A half-cosine from 0.05 gives 83.5 % (docs/bench.md §3).
CIFAR_CPU_SLN = {"lr": 0.05, "lr_schedule": "cosine"}
# CIFAR-10N worse (40.2 % human noise, the hardest CIFAR-10N label set) runs at this scale too: the subset is drawn
# from the 50,000 images, so the published file keeps its indices.
CIFAR_CPU_COLUMNS = {"clean", "c10-sym-0.5", "c10-ptd-0.4", "c10n-worse"}
# the other label-file columns' present cpu budget: reduced CIFAR-10 at the MNIST columns' small CNN and 30 epochs
CIFAR_CPU_SMALL = {"dataset": "cifar10", "image_size": None, "train_subset": 5000, "test_subset": 2000}
NOISE_SOURCE = {
    "sym": "the kit's symmetric generator (nlkit.noise, docs/noise.md): a label flips to one of the other classes "
           "with probability `rate`; noise seed 1 for every method and run seed",
    "asym": "the kit's class-flip generator (nlkit.noise, docs/noise.md): CIFAR-10's flips (truck->automobile, "
            "bird->airplane, deer->horse, cat<->dog) with probability `rate`; MNIST's (2->7, 3->8, 5<->6, 7->1) on "
            "MNIST and digits (Patrini et al. 2017); noise seed 1",
    "file": "CIFAR-N human labels, UCSC-REAL/cifar-10-100n data/CIFAR-10_human.pt (docs/noise.md §7.1)",
    "clean": "CIFAR-10's own labels: the ceiling every noisy column is read against",
    "idn": "the kit's PTD part-dependent instance noise (Xia et al. 2020, as InstanceGM uses it; nlkit.noise.idn_ptd), "
           "nominal rate `rate`; noise seed 1",
}
SMOKE_COLUMNS = {"sym-0.5"}   # smoke runs one column of every method: a pipeline check
SETTING_ROWS = {"clean": ("ce",)}   # the clean column: CE only, the reference the noisy columns are read against

# row -> (registered method, table label[s] with the metric suffix each reads)
ROWS = {
    "ce": ("sln", [("CE", "")]),
    "sln": ("sln", [("SLN", "_live"), ("SLN-MO", "_ema")]),
    "slnmolc": ("sln", [("SLN-MO-LC", "")]),
    "dividemix": ("instancegm", [("DivideMix", "")]),
    "instancegm": ("instancegm", [("InstanceGM", "")]),
    "gce": ("gce", [("GCE", "")]),
    "coteaching": ("coteaching", [("Co-teaching", "")]),
    "lra": ("lra_diffusion", [("LRA-Diffusion", "")]),
}
# LRA-Diffusion's f_p encoder (docs/bench.md §1): the kit's SimCLR run on CIFAR-10 (or the authors' weights where
# present), as in params/lra_diffusion/; on the CPU profiles' digits and MNIST, PCA of the pixels (a stand-in)
LRA_ENCODER = {"encoder": {"name": "simclr", "arch": "resnet50"},
               "needs": {"encoder": {"cell": "simclr/cifar10", "published": "SimCLR_128_cifar10.pt"}}}
LRA_ENCODER_CPU = {"encoder": {"name": "pca", "dim": 64, "arch": None}, "needs": {"encoder": None}}
# at the cpu profile's CIFAR-10 scale: the kit's SimCLR of that scale's ResNet-9 on the same 20,000 images
# (params/simclr/cifar10-resnet9.yaml); the authors' ResNet-50 weights would be another encoder, so none is looked up
LRA_ENCODER_CIFAR_CPU = {"encoder": {"name": "simclr", "arch": "resnet9"},
                         "needs": {"encoder": "simclr/cifar10-resnet9"}}
TABLES = {"B1": "acc_last", "B2": "acc_best_test"}
KNN_ROW = "kNN vote on f_p"   # a baseline row read from LRA-Diffusion's run (its retrieval without the diffusion)

# the shared budget's keys: set by _profiles.yaml, so left out of the method's own block
SHARED = {"epochs", "arch", "bf16", "channels_last"}


def method_defaults(method: str) -> tuple[dict, str]:
    if method in ("sln", "instancegm", "lra_diffusion"):
        block = yaml.safe_load((PARAMS / method / "_defaults.yaml").read_text())["train"]
        return block, f"params/{method}/_defaults.yaml (the paper's recipe, with its sources there)"
    if method == "gce":
        from nlkit.methods.gce import GCEConfig as config
    else:
        from nlkit.methods.coteaching import CoteachingConfig as config
    block = {f.name: (list(v) if isinstance(v := getattr(config(), f.name), tuple) else v)
             for f in dataclasses.fields(config)}
    for key in ("checkpoint_every_seconds", "time_budget_seconds"):
        block.pop(key, None)
    return block, f"nlkit/methods/{method}.py {config.__name__} (the paper's recipe, cited there)"


def scaled(row: str, epochs: int, profile: str) -> dict:
    """The method's schedule at `epochs` epochs, as the same fractions of its paper's own length; the learning
    rates of the reduced CPU profiles where the paper's is tied to a long schedule (SLN's 0.001)."""
    def at(fraction: float) -> int:
        return max(1, round(epochs * fraction))

    small = profile in ("smoke", "cpu")
    if row in ("ce", "sln", "slnmolc"):
        out = {}
        if small:  # SLN's own reduced profiles (params/sln/_profiles.yaml): lr 0.01 / 0.02, a faster EMA
            out.update(lr=0.01 if profile == "smoke" else 0.02, ema_decay=0.95 if profile == "smoke" else 0.99,
                       batch_size=64 if profile == "smoke" else 128)
        if row == "slnmolc":
            out["lc_start"] = min(at(250 / 300), epochs - 1)
        return out
    if row in ("dividemix", "instancegm"):
        out = {"warmup_epochs": min(at(10 / 300), epochs - 1), "lr_drop_epoch": at(150 / 300),
               "rampup_epochs": at(16 / 300)}
        if profile == "smoke":  # params/instancegm/_profiles.yaml smoke: small batches on 1,437 digits
            out.update(batch_size=32, warmup_batch_size=64, vae_batch_size=32, eval_batch_size=256)
        if profile == "cpu":
            # The scaled warm-up (1 epoch) is 40 steps on 5,000 images: InstanceGM's division then stayed near
            # chance (AUC 0.61) and both networks collapsed to one class (11.3 %). The warm-up is meant to end before
            # CE starts to memorise, on this subset at epoch 9 at the earliest (docs/bench.md §5): 5 epochs.
            out.update(warmup_epochs=5, eval_batch_size=1000)
        return out
    if row == "gce":
        out = {"lr_milestones": [at(40 / 120), at(80 / 120)], **({"batch_size": 64} if profile == "smoke" else {})}
        if profile == "cpu":
            # GCE's gradient is CE's times p^q: from a near-uniform start (p ~ 0.1, q = 0.7) a fifth of it. Over the
            # cpu budget's 1,200 steps the paper's lr 0.01 (tied to its 47,000) left GCE at 41 % on sym 0.5, still
            # rising when the lr dropped; 0.01 / 0.1^0.7 = 0.05 gives it CE's pace (95.1 %; docs/bench.md §5)
            out["lr"] = 0.05
        return out
    if row == "coteaching":
        return {"decay_start": at(80 / 200), "num_gradual": at(10 / 200),
                **({"batch_size": 64} if profile == "smoke" else {})}
    if row == "lra":
        out = {"warmup_epochs": min(at(5 / 200), epochs - 1), "lr_horizon": at(1000 / 200),
               "eval_every": at(5 / 200)}
        if small:  # the cached-features variant, as LRA's own CPU profiles (params/lra_diffusion/_profiles.yaml)
            out["image_encoder"] = "none"
        if profile == "smoke":  # its smoke profile: a short schedule needs a larger step, a narrower denoiser
            out.update(batch_size=32, peak_lr=0.01, hidden=64)
        return out
    raise KeyError(row)


def cell(row: str, setting: str, budgets: dict) -> dict:
    method, labels = ROWS[row]
    label, noise, sigma = SETTINGS[setting]
    train, source = method_defaults(method)
    train = {k: v for k, v in train.items() if k not in SHARED}
    if method == "sln":
        train["sigma"] = 0.0 if row == "ce" else sigma
    noise = {**noise, **({} if noise["model"] in ("file", "clean") else {"seed": 1}),
             "source": noise.get("source") or NOISE_SOURCE[noise["model"]]}
    tables = [{"table": t, "row": name, "column": label,
               "metric": metric + suffix if suffix else metric}
              for t, metric in TABLES.items() for name, suffix in labels]
    if row == "lra":  # the vote LRA-Diffusion refines: the majority noisy label of each test image's k neighbours
        tables.insert(1, {"table": "B1", "row": KNN_ROW, "column": label, "metric": "knn_majority_acc"})
    profiles = {}
    for profile, epochs in budgets.items():
        cifar_scale = profile == "cpu" and setting in CIFAR_CPU_COLUMNS
        if cifar_scale:
            epochs = CIFAR_CPU_EPOCHS_ROW.get(row, CIFAR_CPU_EPOCHS)
        entry = {"train": scaled(row, epochs, profile)}
        if cifar_scale and method == "sln":
            entry["train"].update(CIFAR_CPU_SLN)
        if noise["model"] == "asym" and profile in ("smoke", "cpu"):
            entry["noise"] = {"asym_map": "asym_mnist_patrini"}   # digits and MNIST: MNIST's class flips
        if profile == "smoke" and setting not in SMOKE_COLUMNS:
            entry["skip"] = "the smoke profile runs the sym 0.5 column only (a pipeline check)"
        elif setting in CPU_ONLY and profile != "cpu":
            entry["skip"] = "the cpu profile's CIFAR-10 column; this profile runs CIFAR-10 in its plain columns"
        elif cifar_scale:
            scale = copy.deepcopy(CIFAR_CPU)
            entry["train"] = {**scale.pop("train"), "epochs": epochs, **entry["train"]}
            if row == "lra":  # the denoiser trains on cached features: no convnet to narrow
                entry["train"].pop("width_mult")
                entry.update(copy.deepcopy(LRA_ENCODER_CIFAR_CPU))
            entry.update(scale)
        elif profile == "cpu" and noise["model"] == "file":
            entry.update(copy.deepcopy(CIFAR_CPU_SMALL))
        profiles[profile] = entry
        if row == "lra" and profile in ("smoke", "cpu") and noise["model"] != "file" and not cifar_scale:
            entry.update(copy.deepcopy(LRA_ENCODER_CPU))
    header = {"bench_method": row, "noise": noise, "train": train,
              **(copy.deepcopy(LRA_ENCODER) if row == "lra" else {})}
    return {**header, "tables": tables,
            "sources": {"train": source, "sigma": "docs/sln.md §3.2: sigma 1.0 for symmetric noise, 0.5 for "
                                                 "asymmetric and instance-dependent (0 is CE)"
                        if method == "sln" else None,
                        "schedule": "params/bench/make_cells.py scaled(): the paper's schedule as fractions of "
                                    "its own length, at the profile's shared epoch budget"},
            "profiles": profiles}


def main(out: Path = HERE) -> None:
    """Write every cell into `out` (the params folder; a test writes elsewhere and compares)."""
    overlays = yaml.safe_load((HERE / "_profiles.yaml").read_text())
    budgets = {name: int(overlays[name]["train"]["epochs"]) for name in ("smoke", "cpu", "quick", "paper")}
    for old in out.glob("*.yaml"):
        if not old.name.startswith("_"):
            old.unlink()
    for setting in SETTINGS:
        for row in SETTING_ROWS.get(setting, ROWS):
            data = cell(row, setting, budgets)
            data["sources"] = {k: v for k, v in data["sources"].items() if v}
            text = (f"# Benchmark cell: {ROWS[row][1][0][0]} on {SETTINGS[setting][0]} (written by "
                    f"params/bench/make_cells.py; edit that, not this file)\n")
            text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
            (out / f"{setting}-{row}.yaml").write_text(text)


if __name__ == "__main__":
    main()
