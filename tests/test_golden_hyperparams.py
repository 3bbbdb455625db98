"""The paper cells' hyperparameters equal the originals', field by field.

Every cell of sln, instancegm, lra_diffusion and tdsm is resolved under the `paper` profile with the kit's own
resolution (`nlkit.pipeline.params.load_cell`) and each paper's `Config.from_cell`; each Config field is either
mapped to the original's value in `tests/golden/hyperparams/<original>.json` (read from the checkouts by
`tests/golden/make_hyperparams.py`) or listed below as a kit-only setting with the reason. A field that differs from
the original fails unless `tests/golden/hyperparams/differences.yaml` lists it with the row of the paper's
"Differences from the original code" table that explains it (checked to be in docs/<paper>.md).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from nlkit.pipeline.params import find_cells, load_cell

ROOT = Path(__file__).resolve().parents[1]
HP = ROOT / "tests" / "golden" / "hyperparams"
DIFFERENCES = HP / "differences.yaml"


@lru_cache(maxsize=None)
def original(name: str) -> dict:
    return json.loads((HP / f"{name}.json").read_text())


def values(name: str, key: str) -> dict:
    return {k: v["value"] for k, v in original(name)["settings"][key]["values"].items()}


# A mapping: Config field -> function(setting values, resolved cell) -> the original's value, or {original: function}
# when the sources name it differently. A KeyError (the setting lacks the value) means "this source does not say";
# at least one source of the cell must say, and every source that says must agree.

# ---------------------------------------------------------------------------------------------- SLN

SLN_MAP = {
    "epochs": lambda v, c: v["epochs"],
    "batch_size": lambda v, c: v["batch_size"],
    "lr": lambda v, c: v["lr"],
    "momentum": lambda v, c: v["momentum"],
    "weight_decay": lambda v, c: v["weight_decay"],
    # CE has no command of its own: it is the same script with sigma 0 (targets + 0 * noise)
    "sigma": lambda v, c: 0.0 if c["method"] == "ce" else v["sigma"],
    "ema_decay": lambda v, c: v["ema_alpha"],
    # --correction outside (0, epochs) (the README's -1) means no label correction
    "lc_start": lambda v, c: v["correction"] if 0 < v["correction"] < v["epochs"] else None,
    "lc_start_inclusive": lambda v, c: {"Gt": False, "GtE": True}[v["lc_compare"]],
    "arch": lambda v, c: f"wrn{v['wrn_depth']}_{v['wrn_widen_factor']}",
    "crop_padding": lambda v, c: v["crop_padding"],
    "flip": lambda v, c: v["flip"],
    "lr_schedule": lambda v, c: "constant",   # the original's SGD has no scheduler: one lr for the whole run
}
SLN_KIT_ONLY = {
    "lc_augment": "behaviour switch, not a number the original sets: LC's pass sees train-augmented images as the "
                  "original's train loader does (docs/sln.md §8); pinned by tests/test_golden_sln.py",
    "lc_soft": "kit variant (soft corrected targets); off is the original's hard argmax targets (docs/sln.md §1.4)",
    "ema_buffers": "behaviour switch: WeightEMA averages the whole state_dict, BN buffers included (docs/sln.md §8); "
                   "pinned by tests/test_golden_sln.py",
    "width_mult": "reduced-profile network width; unset (the full network) in the paper profile",
    "bf16": "precision switch: paper false = the original's fp32 (docs/sln.md §8.1, bf16 row)",
    "lc_float64": "precision switch: paper true = the original's numpy float64 targets (docs/sln.md §8.1)",
    "channels_last": "memory layout on CUDA; no effect on the numbers beyond rounding",
    "compile": "torch.compile switch (speed)",
    "checkpoint_every_seconds": "the kit's checkpointing",
    "time_budget_seconds": "the kit's time budget",
    "method": "which row the cell reports (ce, sln, slnmolc); it selects the original's command",
    "report_net": "which net the cell reports (live or EMA); both come from one run, as in the original",
}
SLN_NOISE = {"sym": "sym", "asym": "asym", "dep": "dependent", "openset": "openset"}
SLN_UNMAPPED = {
    "animal10n-*": "re-sln's Animal-10N recipe: the original has no Animal-10N script or command (docs/sln.md §3.4)",
}
SLN_FREE = {   # cell glob -> {field: why this cell sets its own value}
    "*-sln-s[0-9]*": {"sigma": "the σ ablation (docs/sln.md §7.2) varies σ"},
    "*-sln-search-*": {"sigma": "the σ search (docs/sln.md §7.1) varies σ"},
    "cifar10*n-*": {"sigma": "the kit's σ for CIFAR-N (the paper has no CIFAR-N result; docs/sln.md §5)"},
}


def sln_sources(cell: dict) -> list[tuple[str, str]]:
    cid = cell["cell_id"]
    method = "slnmolc" if cell["method"] == "slnmolc" else "sln"
    if cid.startswith(("cifar10n-", "cifar100n-")):   # no CIFAR-N command: the same dataset's README recipe
        return [("sln", f"{cell['dataset']}/sym/{method}")]
    dataset, noise = cid.split("-")[:2]
    return [("sln", f"{dataset}/{SLN_NOISE[noise]}/{method}")]


# ---------------------------------------------------------------------------------------------- InstanceGM / DivideMix

IGM_MAP = {
    "epochs": lambda v, c: v["num_epochs"],
    "batch_size": lambda v, c: v["batch_size"],
    "warmup_batch_size": lambda v, c: v["batch_size"] * v["warmup_batch_factor"],
    "eval_batch_size": lambda v, c: v["batch_size"] * v["eval_train_batch_factor"],   # eval_train and test passes
    "warmup_epochs": lambda v, c: v["warm_up"],
    "lr": lambda v, c: v["lr"],
    "lr_drop_epoch": lambda v, c: v["lr_drop_epoch"],
    "lr_drop_factor": lambda v, c: v["lr_drop_factor"],
    "momentum": lambda v, c: v["momentum"],
    "weight_decay": lambda v, c: v["weight_decay"],
    "p_threshold": lambda v, c: v["p_threshold"],
    "temperature": lambda v, c: v["T"],
    "alpha": lambda v, c: v["alpha"],
    "lambda_u": lambda v, c: v["lambda_u"],
    "rampup_epochs": lambda v, c: v["rampup_length"],
    "gmm_max_iter": lambda v, c: v["gmm_max_iter"],
    "gmm_tol": lambda v, c: v["gmm_tol"],
    "gmm_reg_covar": lambda v, c: v["gmm_reg_covar"],
    # the original averages the last N epochs' losses only at one noise rate (r = 0.9)
    "gmm_loss_average": lambda v, c: v["loss_average_epochs"]
    if math.isclose(float((c.get("noise") or {}).get("rate") or 0), v["loss_average_rate"]) else 1,
    "warmup_neg_entropy": lambda v, c: (c.get("noise") or {}).get("model") == v["neg_entropy_noise_mode"],
    "arch": lambda v, c: {"ResNet18": "preact_resnet18_dividemix", "vgg19_bn": "vgg19_bn"}[v["network"]],
    "crop_padding": lambda v, c: v["crop_padding"],
    "flip": lambda v, c: v["flip"],
    "z_dim": lambda v, c: v["z_dim"],
    # the VAE's batch is the first batch of the warm-up loader (instanceGM.py train_vae)
    "vae_batch_size": lambda v, c: v["batch_size"] * v["warmup_batch_factor"],
    "vae_lr": lambda v, c: v["vae_lr_effective"],
    "recon_weight": lambda v, c: v["recon_weight"],
    "noisy_ce_weight": lambda v, c: v["noisy_ce_weight"],
    "prior_weight": lambda v, c: v["prior_weight"],
    "kl_weight": lambda v, c: v["kl_weight"],
}
IGM_KIT_ONLY = {
    "bf16": "precision switch: paper false = the original's fp32 (docs/instancegm.md §13, bf16 row)",
    "width_mult": "reduced-profile network width; 1.0 (the full network) in the paper profile",
    "eps_dist": "behaviour switch whose default is the released code's (docs/instancegm.md §9, §10); pinned by "
                "tests/test_golden_instancegm.py",
    "double_sigmoid": "behaviour switch whose default is the released code's (docs/instancegm.md §10); pinned by "
                      "tests/test_golden_instancegm.py",
    "kl_reduction": "behaviour switch whose default is the released code's (docs/instancegm.md §10); pinned by "
                    "tests/test_golden_instancegm.py",
    "t_decoder_input": "behaviour switch whose default is the released code's (docs/instancegm.md §10); pinned by "
                       "tests/test_golden_instancegm.py",
    "gumbel_tau": "F.gumbel_softmax is called without tau (PyTorch's 1) in mylib/models/vae.py; pinned by "
                  "tests/test_golden_instancegm.py",
    "channels_last": "memory layout on CUDA; no effect on the numbers beyond rounding",
    "checkpoint_every_seconds": "the kit's checkpointing",
    "time_budget_seconds": "the kit's time budget",
    "method": "which row the cell runs (ce, dividemix, instancegm); it selects the original's script",
}
IGM_UNMAPPED: dict[str, str] = {}
IGM_FREE: dict[str, dict[str, str]] = {}
IGM_SCRIPTS = {"animal10n": "instanceGM_animal10N.py/animal10n",
               "red_mini_imagenet": "instanceGM_redMini.py/red_mini_imagenet"}


def igm_sources(cell: dict) -> list[tuple[str, str]]:
    ds = cell["dataset"]
    if ds in IGM_SCRIPTS:   # one script per dataset; DivideMix and CE are the same script with the VAE off
        return [("instancegm", IGM_SCRIPTS[ds])]
    igm = ("instancegm", f"instanceGM.py/{ds}")
    if cell["method"] == "instancegm":
        return [igm]
    # DivideMix (and CE's schedule): the authors' DivideMix baseline temp.py and DivideMix's own Train_cifar.py; the
    # VAE settings (unused by these methods) still follow instanceGM.py
    return [("instancegm", f"temp.py/{ds}"), ("dividemix", f"Train_cifar.py/{ds}"), igm]


# ---------------------------------------------------------------------------------------------- LRA-Diffusion

LRA_MAP = {
    "epochs": lambda v, c: v["nepoch"],
    "warmup_epochs": lambda v, c: v["warmup_epochs"],
    "lr_horizon": lambda v, c: v["lr_horizon"],
    "peak_lr": lambda v, c: v["lr_input"],
    "batch_size": lambda v, c: v["batch_size"],
    "k": lambda v, c: v["k"],
    "hidden": lambda v, c: v["feature_dim"],
    "image_encoder": lambda v, c: v["diff_encoder"],
    "real_fp": lambda v, c: v["real_fp"],
    "beta_schedule": lambda v, c: v["beta_schedule"],
    "grad_clip": lambda v, c: v["grad_clip"],
    "eval_every": lambda v, c: v["eval_every"],
    "crop_padding": lambda v, c: v["crop_padding"],
    "flip": lambda v, c: v["flip"],
}
LRA_KIT_ONLY = {
    "include_self": "behaviour switch (docs/lra-diffusion.md §7): `code` is the original's candidate rule; pinned by "
                    "tests/test_golden_lra.py",
    "weight_norm": "behaviour switch (docs/lra-diffusion.md §7): `batch` is the original's count weights; pinned by "
                   "tests/test_golden_lra.py",
    "dynamic_knn": "the student's ablation, not in the authors' code (docs/lra-diffusion.md, differences table)",
    "head_compat": "behaviour switch: false trains the image encoder (the paper's intent), true is the code's "
                   "(docs/lra-diffusion.md, differences table, 'image encoder trained' row)",
    "decode": "behaviour switch (docs/lra-diffusion.md §2.7): closest-to-one is the original's; pinned by "
              "tests/test_golden_lra.py",
    "bf16": "precision switch: paper false = the original's fp32 (docs/lra-diffusion.md, differences table)",
    "channels_last": "memory layout on CUDA; no effect on the numbers beyond rounding",
    "checkpoint_every_seconds": "the kit's checkpointing",
    "time_budget_seconds": "the kit's time budget",
}
LRA_UNMAPPED: dict[str, str] = {}
LRA_FREE = {
    "*-head31*": {"epochs": "HEAD-compat replica of the student's 31-epoch runs (docs/lra-diffusion.md §4)"},
    "*-head31-bs*": {"batch_size": "batch-size ablation of the HEAD-compat replica (table L4)"},
    "*-head31-k[0-9]*": {"k": "k ablation of the HEAD-compat replica (table L4)"},
}


def lra_sources(cell: dict) -> list[tuple[str, str]]:
    enc = {"simclr": "SimCLR", "clip": "CLIP"}[cell["encoder"]["name"]]
    return [("lra_diffusion", f"{cell['dataset']}/{enc}")]


# ---------------------------------------------------------------------------------------------- TDSM

TDSM_MAP = {
    "arch": lambda v, c: v["noise.arch"],
    "dropout": lambda v, c: v["noise.dropout"],
    "batch_size": lambda v, c: v["noise.batch"],
    "lr": lambda v, c: v["noise.lr"],
    "warmup_kimg": lambda v, c: v["noise.lr_rampup_kimg"],
    "duration_kimg": lambda v, c: v["noise.duration"] * 1000,          # train_noise.py: total_kimg = duration * 1000
    "ema_halflife_kimg": lambda v, c: v["noise.ema"] * 1000,            # ema_halflife_kimg = ema * 1000
    "ema_rampup": lambda v, c: v["loop.ema_rampup_ratio"],
    "augment_p": lambda v, c: v["noise.augment"],
    "precision": lambda v, c: "fp16" if v["noise.fp16"] else "fp32",
    "tf32": lambda v, c: v["tf32.training_loop"] or v["tf32.classifier_loop"],
    "tau": lambda v, c: v["noise.tau"],
    "temp": lambda v, c: v["loss.temp"],   # no --temp option in the original (a bug): the loss default applies
    "label_dropout": lambda v, c: v["noise.label_dropout"],
    "cls_batch_size": lambda v, c: v["classifier.batch"],
    "cls_lr": lambda v, c: v["classifier.lr"],
    "cls_warmup_kimg": lambda v, c: v["classifier_loop.lr_rampup_kimg"],   # train_classifier.py does not set it
    "cls_duration_kimg": lambda v, c: v["classifier.duration"] * 1000,
    "num_steps": lambda v, c: v["generate.num_steps"],
    "kimg_per_tick": lambda v, c: v["noise.tick"],
}
# TDSM keeps EDM's training loop: the values it inherits are also checked against NVlabs/edm's own defaults
_EDM = {
    "dropout": lambda v, c: v["train.py:dropout"],
    "batch_size": lambda v, c: v["train.py:batch"],
    "lr": lambda v, c: v["train.py:lr"],
    "warmup_kimg": lambda v, c: v["training/training_loop.py:lr_rampup_kimg"],
    "duration_kimg": lambda v, c: v["train.py:duration"] * 1000,
    "ema_halflife_kimg": lambda v, c: v["train.py:ema"] * 1000,
    "ema_rampup": lambda v, c: v["training/training_loop.py:ema_rampup_ratio"],
    "augment_p": lambda v, c: v["train.py:augment"],
    "precision": lambda v, c: "fp16" if v["train.py:fp16"] else "fp32",
    "num_steps": lambda v, c: v["generate.py:num_steps"],
    "kimg_per_tick": lambda v, c: v["train.py:tick"],
}
TDSM_MAP = {f: ({"tdsm": rule, "edm": _EDM[f]} if f in _EDM else rule) for f, rule in TDSM_MAP.items()}
TDSM_KIT_ONLY = {
    "model_channels": "network-size override for the reduced profiles; unset (the arch's own) in the paper profile",
    "channel_mult": "network-size override for the reduced profiles; unset in the paper profile",
    "num_blocks": "network-size override for the reduced profiles; unset in the paper profile",
    "attn_resolutions": "network-size override for the reduced profiles; unset in the paper profile",
    "weights_form": "behaviour switch whose default is the original's R^-1 weights (docs/tdsm.md §12 #8); pinned by "
                    "tests/test_golden_tdsm.py",
    "renorm_after_skip": "behaviour switch, default the original's (docs/tdsm.md §12 #9); pinned by the golden",
    "full_grad": "behaviour switch, default the original's stop-gradient (docs/tdsm.md §12 #10); pinned by the golden",
    "cls_aug_labels": "behaviour switch, default the original's (docs/tdsm.md §12 #4)",
    "extra_chunk": "memory chunking of the extra classifier passes; no effect on the numbers",
    "cls_arch": "the classifier network per dataset (docs/tdsm.md, differences table, classifier networks row); "
                "forward pinned by tests/test_golden_tdsm.py",
    "volmin_lambda": "VolMinNet cells only (docs/tdsm.md, differences table, classifier learning rate row)",
    "volmin_milestones_kimg": "VolMinNet cells only; test_classifier_learning_rate_schedules pins the schedule",
    "affine_weight": "the S = I sampler's affine score; off (0) as the original's sampler",
    "samples_per_class": "evaluation protocol: the original ships no metric code (docs/tdsm.md §10)",
    "sampling_seeds": "evaluation protocol (docs/tdsm.md §10)",
    "sample_batch": "generation batch; no effect on the samples' distribution",
    "eval_arch": "kit diagnostic (docs/tdsm.md, differences table, kit diagnostics row)",
    "cas_arch": "CAS classifier per dataset (docs/tdsm.md, differences table, CAS classifier row)",
    "eval_epochs": "kit diagnostic's training length",
    "cas_epochs": "CAS recipe: the code ships none (docs/tdsm.md, differences table, CAS training recipe row)",
    "fid_real_max": "evaluation protocol: FID reference statistics",
    "diag_samples": "kit diagnostic",
    "inception_weights": "a local file path",
    "checkpoint_every_seconds": "the kit's checkpointing",
    "time_budget_seconds": "the kit's time budget",
    "method": "which model the cell trains (classifier, dsm, sdsm, tdsm)",
    "transition": "the transition matrix the cell uses (true or learned)",
}
TDSM_UNMAPPED = {"toy-*": "the kit's 2-D toy (docs/tdsm.md): no counterpart in the original"}
TDSM_FREE: dict[str, dict[str, str]] = {}


def tdsm_sources(cell: dict) -> list[tuple[str, str]]:
    return [("tdsm", cell["dataset"]), ("edm", "defaults")]


# ---------------------------------------------------------------------------------------------- the comparison

def _config(paper: str):
    if paper == "sln":
        from nlkit.methods.sln import SLNConfig as C
    elif paper == "instancegm":
        from nlkit.methods.instancegm.train import InstanceGMConfig as C
    elif paper == "lra_diffusion":
        from nlkit.methods.lra_diffusion.train import LRAConfig as C
    else:
        from nlkit.methods.tdsm.train import TDSMConfig as C
    return C


PAPERS = {
    "sln": (SLN_MAP, SLN_KIT_ONLY, SLN_UNMAPPED, SLN_FREE, sln_sources, "docs/sln.md"),
    "instancegm": (IGM_MAP, IGM_KIT_ONLY, IGM_UNMAPPED, IGM_FREE, igm_sources, "docs/instancegm.md"),
    "lra_diffusion": (LRA_MAP, LRA_KIT_ONLY, LRA_UNMAPPED, LRA_FREE, lra_sources, "docs/lra-diffusion.md"),
    "tdsm": (TDSM_MAP, TDSM_KIT_ONLY, TDSM_UNMAPPED, TDSM_FREE, tdsm_sources, "docs/tdsm.md"),
}


def same(kit, orig) -> bool:
    if isinstance(kit, bool) or isinstance(orig, bool) or kit is None or orig is None:
        return kit is orig or kit == orig and type(kit) is type(orig)
    if isinstance(kit, (int, float)) and isinstance(orig, (int, float)):
        return math.isclose(kit, orig, rel_tol=1e-12, abs_tol=0.0)
    return kit == orig


def differences() -> list[dict]:
    return yaml.safe_load(DIFFERENCES.read_text()) or []


def listed(paper: str, cell_id: str, field: str, kit, orig) -> dict | None:
    for d in differences():
        if d["paper"] == paper and d["field"] == field and fnmatch.fnmatch(cell_id, d.get("cells", "*")) \
                and same(kit, d["kit"]) and same(orig, d["original"]):
            return d
    return None


@lru_cache(maxsize=None)   # one pass per paper and session (the params do not change while the tests run)
def compare(paper: str) -> tuple[list[str], set[int], int]:
    """(mismatches not listed as differences, ids of the difference entries used, cells compared)."""
    fmap, _, unmapped, free, sources, _ = PAPERS[paper]
    Config = _config(paper)
    bad, used, n = [], set(), 0
    for path in find_cells(paper, root=ROOT):
        if any(fnmatch.fnmatch(path.stem, g) for g in unmapped):
            continue
        cell = load_cell(path, "paper")
        cfg = Config.from_cell(cell)
        n += 1
        allowed = {f for g, fields in free.items() if fnmatch.fnmatch(path.stem, g) for f in fields}
        for field, rule in fmap.items():
            if field in allowed:
                continue
            kit, said = getattr(cfg, field), False
            for name, key in sources(cell):
                fn = rule.get(name) if isinstance(rule, dict) else rule
                if fn is None:
                    continue
                try:
                    orig = fn(values(name, key), cell)
                except KeyError:
                    continue
                said = True
                if same(kit, orig):
                    continue
                d = listed(paper, path.stem, field, kit, orig)
                if d is not None:
                    used.add(differences().index(d))
                    continue
                src = original(name)["settings"][key]
                bad.append(f"{path.stem}: {field} = {kit!r}, original {orig!r} ({name} {key}"
                           f"{', ' + src['command'] if isinstance(src.get('command'), str) else ''})")
            if not said:
                bad.append(f"{path.stem}: {field}: no source of {sources(cell)} gives it")
    return bad, used, n


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_every_config_field_is_mapped_or_kit_only(paper):
    fmap, kit_only, *_ = PAPERS[paper]
    fields = {f.name for f in dataclasses.fields(_config(paper))}
    assert not set(fmap) & set(kit_only), "a field is both mapped and kit-only"
    missing = fields - set(fmap) - set(kit_only)
    assert not missing, f"Config fields neither mapped to the original nor listed as kit-only (with the reason): " \
        f"{sorted(missing)}"
    assert set(fmap) | set(kit_only) <= fields, "mapped or kit-only names that are no Config field"
    assert all(isinstance(r, str) and len(r) > 10 for r in kit_only.values())


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_exempt_cells_and_fields_still_exist(paper):
    """An unmapped-cell or ablation glob that matches no cell, or frees a field that is not mapped, is stale."""
    fmap, _, unmapped, free, *_ = PAPERS[paper]
    names = [p.stem for p in find_cells(paper, root=ROOT)]
    for glob in list(unmapped) + list(free):
        assert fnmatch.filter(names, glob), f"{paper}: no cell matches {glob!r}"
    for glob, fields in free.items():
        assert set(fields) <= set(fmap), f"{paper} {glob}: frees fields that are not mapped: {set(fields) - set(fmap)}"


@pytest.mark.parametrize("paper", sorted(PAPERS))
def test_paper_cells_match_the_originals_hyperparameters(paper):
    bad, _, n = compare(paper)
    assert n > 0, f"no {paper} cell compared"
    assert not bad, f"{len(bad)} setting(s) differ from the original without a row in {DIFFERENCES.name}:\n  " + \
        "\n  ".join(bad)


def test_every_listed_difference_is_documented_and_still_needed():
    entries = differences()
    used = set()
    for paper in PAPERS:
        used |= compare(paper)[1]
    for i, d in enumerate(entries):
        assert {"paper", "field", "kit", "original", "docs", "row", "why"} <= set(d), d
        assert d["paper"] in PAPERS and d["docs"] == PAPERS[d["paper"]][5], d
        text = (ROOT / d["docs"]).read_text()
        table = text[text.index("Differences from the original code"):]
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert any(d["row"] in line for line in rows), f"{d['docs']} has no differences-table row with {d['row']!r}"
        assert i in used, f"stale entry (no cell differs from the original this way any more): {d}"


def test_the_goldens_name_their_originals():
    for name in ("sln", "instancegm", "dividemix", "lra_diffusion", "tdsm", "edm"):
        data = original(name)
        assert len(data["original"]["commit"]) == 40
        for setting in data["settings"].values():
            for rec in setting["values"].values():
                assert rec["src"].startswith(data["original"]["repo"] + "/") and "@" in rec["src"], rec


def test_lra_diffusion_schedule_constants_match_the_original():
    """What the kit fixes in code rather than in params: T, the β range and the number of DDIM steps."""
    import inspect

    from nlkit.methods.lra_diffusion import diffusion

    for key in original("lra_diffusion")["settings"]:
        v = values("lra_diffusion", key)
        assert diffusion.T_STEPS == v["num_timesteps"]
        assert len(diffusion.DDIM_TIMESTEPS) == v["ddim_n_step"]
        params = inspect.signature(diffusion.beta_schedule).parameters
        assert same(params["start"].default, v["beta_start"]) and same(params["end"].default, v["beta_end"])
