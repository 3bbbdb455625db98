"""What a run actually ran, in words a reader can trust.

A profile may swap the paper's data (smoke: scikit-learn digits) or its encoder (PCA features for CLIP/SimCLR).
Titles, printouts and tables then must not present the run as the paper's cell: they name the stand-in. Every
notebook takes its labels from here, and `tables.py` uses the same test to withhold a Δ against the paper."""

from __future__ import annotations

from pathlib import Path

from .params import load_cell, params_hash, repo_root


def _encoder(resolved: dict) -> str | None:
    enc = resolved.get("encoder")
    if isinstance(enc, dict):
        enc = enc.get("name")
    return str(enc) if enc else None


def _noise_model(resolved: dict) -> str | None:
    noise = resolved.get("noise")
    return noise.get("model") if isinstance(noise, dict) else noise


def paper_settings(resolved: dict) -> dict:
    """The same cell resolved under the paper profile (the settings the paper's number belongs to)."""
    if resolved.get("profile") == "paper" or not resolved.get("params_file"):
        return resolved
    return load_cell(resolved["params_file"], "paper")


def substitutions(resolved: dict, paper: dict | None = None) -> dict:
    """What this resolved cell runs in place of the paper's: {'dataset': (ran, paper), 'encoder': (ran, paper)},
    only the entries that differ."""
    paper = paper_settings(resolved) if paper is None else paper
    swaps = {}
    for key, get in (("dataset", lambda c: c.get("dataset")), ("encoder", _encoder)):
        ran, ref = get(resolved), get(paper)
        if ran != ref:
            swaps[key] = (ran, ref)
    return swaps


def is_stand_in(resolved: dict, paper: dict | None = None) -> bool:
    """True when the run used other data or another encoder than the paper's cell: its number is not comparable
    with the paper's."""
    return bool(substitutions(resolved, paper))


def reduced_budget(resolved: dict) -> str:
    """'' for a run on the cell's whole data; else what was cut (the cpu profile's subsets and pooled pixels), e.g.
    '2000 training images, 1000 test images'. Such a run's number is not the paper's protocol: no Δ is given."""
    cuts = []
    if resolved.get("train_subset"):
        cuts.append(f"{resolved['train_subset']} training images")
    if resolved.get("test_subset"):
        cuts.append(f"{resolved['test_subset']} test images")
    if int(resolved.get("downsample") or 1) > 1:
        cuts.append(f"pixels pooled {resolved['downsample']}x")
    size = resolved.get("resolution")
    images = resolved.get("method") != "toy"  # the 2-D toy has no images to shrink
    if size and images and resolved.get("profile") != "paper" and resolved.get("params_file"):
        paper = paper_settings(resolved)
        full = paper.get("resolution") or paper.get("pad_to")
        if full is None or int(size) < int(full):
            cuts.append(f"{size}x{size} images" + (f" instead of {full}x{full}" if full else ""))
    return ", ".join(cuts)


def run_label(resolved: dict, paper: dict | None = None) -> str:
    """One line naming what ran, for titles and printouts, e.g. 'digits stand-in for cifar10-sym-0.40-paper-sln,
    smoke' or 'digits stand-in for cifar10-pmd-0.35-clip, pca features instead of clip, smoke'."""
    swaps = substitutions(resolved, paper)
    name, profile = resolved.get("cell_id", "?"), resolved.get("profile", "?")
    parts = []
    if "dataset" in swaps:
        parts.append(f"{swaps['dataset'][0]} stand-in for {name}")
    else:
        parts.append(name)
    if "encoder" in swaps:
        ran, ref = swaps["encoder"]
        parts.append(f"{ran or 'no'} features instead of {ref or 'none'}")
    if "dataset" not in swaps and (cuts := reduced_budget(resolved)):
        parts.append(f"reduced: {cuts}")   # a real-data run at a cut size is not the paper's experiment either
    return ", ".join(parts + [profile])


def run_banner(resolved: dict) -> str | None:
    """One line for a run that cannot speak for the paper: a smoke run, or any run on a stand-in, is a pipeline
    check. None for a run on the paper's own data and features."""
    if resolved.get("profile") == "smoke":
        return (f"PIPELINE CHECK ({run_label(resolved)}): stand-in data at a toy budget, not the paper's claim; "
                f"the evidence is the committed cpu/quick runs (outputs/<profile>/tables/{resolved.get('paper')}.md)")
    if is_stand_in(resolved):
        return (f"STAND-IN ({run_label(resolved)}): other data or features than the paper's setting; its numbers "
                "are not comparable with the paper's")
    return None


def setting_label(dataset: str, noise: str | None, rate: float | None = None, seed: int | None = None) -> str:
    """'digits, sym p=0.4, seed 0' (rate and seed left out when they do not apply)."""
    text = f"{dataset}, {noise}"
    if rate is not None:
        text += f" p={rate:g}"
    if seed is not None:
        text += f", seed {seed}"
    return text


def output_dir(out_dir, cell: dict | None = None, seed: int | None = None) -> Path:
    """Where a notebook writes: a relative `out_dir` lies under the project folder, whatever the working directory
    (JupyterLab starts kernels in notebooks/, which must stay free of outputs). Without an `out_dir`, a folder of
    its own for what the run computes: `outputs/explore/<paper>/<cell>/<profile>-seed<k>-<settings hash>`, so
    changing the parameters cell never resumes or overwrites another run's results."""
    if out_dir is None:
        if cell is None or seed is None:
            raise ValueError("output_dir needs the cell and the seed when no out_dir is given")
        name = f"{cell.get('profile', 'run')}-seed{seed}-{params_hash(cell, seed)[:8]}"
        return repo_root() / "outputs" / "explore" / str(cell.get("paper")) / str(cell.get("cell_id")) / name
    path = Path(out_dir)
    return path if path.is_absolute() else repo_root() / path


def text(value, missing: str = "—") -> str:
    """A value for user-facing text: never the word None."""
    return missing if value is None else str(value)
