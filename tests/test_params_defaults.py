"""Every params cell resolves under every profile, and its citations point inside the repository (docs/)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from nlkit.pipeline.params import PROFILES, find_cells, load_cell, repo_root

ROOT = repo_root()
CELLS = find_cells(root=ROOT)
DOC_CITE = re.compile(r"docs/([\w.-]+\.md) §(\d+(?:\.\d+)*)")
ANY_MD_CITE = re.compile(r"(\S*?)([\w-]+\.md) §")


def citations(node, key=None):
    """Every string under a `source` or `sources` key, at any depth."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("source", "sources"):
                yield from strings(v)
            else:
                yield from citations(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from citations(v, key)


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


@functools.lru_cache(maxsize=None)
def doc_sections(name: str) -> frozenset[str] | None:
    path = ROOT / "docs" / name
    if not path.is_file():
        return None
    return frozenset(re.findall(r"^#+ §(\d+(?:\.\d+)*)(?:\s|$)", path.read_text(), flags=re.M))


def citation_problems(text: str) -> list[str]:
    problems = []
    if "spec §" in text:
        problems.append("cites a spec that is not part of the repository")
    for prefix, name in ANY_MD_CITE.findall(text):
        if not prefix.endswith("docs/"):
            problems.append(f"cites {name} outside docs/")
    for name, section in DOC_CITE.findall(text):
        sections = doc_sections(name)
        if sections is None:
            problems.append(f"docs/{name} does not exist")
        elif section not in sections:
            problems.append(f"docs/{name} has no heading §{section}")
    return problems


def test_there_are_cells_in_every_paper_folder():
    papers = {p.name for p in (ROOT / "params").iterdir() if p.is_dir()}
    assert papers and papers == {c.parent.name for c in CELLS}


@pytest.mark.parametrize("profile", PROFILES)
def test_every_cell_resolves_and_cites_only_the_repository(profile):
    failures = []
    for cell in CELLS:
        name = f"{cell.parent.name}/{cell.stem} ({profile})"
        resolved = load_cell(cell, profile)
        if not resolved.get("notebook"):
            failures.append(f"{name}: no notebook")
        for text in citations(resolved):
            failures += [f"{name}: {problem}: {text!r}" for problem in citation_problems(text)]
    assert not failures, "\n".join(failures[:20])


def test_citation_check_catches_bad_references():
    assert citation_problems("docs/sln.md §3.1: fine") == []
    assert citation_problems("sln spec §3.1") != []
    assert citation_problems("see noise.md §7") != []
    assert citation_problems("docs/sln.md §99.9") != []
    assert citation_problems("docs/nothere.md §1") != []


def test_defaults_then_cell_then_profile_overlays(tmp_path: Path):
    folder = tmp_path / "params" / "demo"
    folder.mkdir(parents=True)
    (folder / "_defaults.yaml").write_text(
        "notebook: demo\ntable: T\nseeds: [0, 1]\ntrain: {lr: 0.1, epochs: 10, start: 5}\nsources: {lr: docs/x.md §1}\n")
    (folder / "_profiles.yaml").write_text("smoke: {train: {epochs: 2}}\nquick: {seeds: [0]}\npaper: {}\n")
    (folder / "cell.yaml").write_text(
        "train: {epochs: 20, start: null}\nprofiles: {smoke: {train: {lr: 0.5}}}\n")
    paper = load_cell(folder / "cell.yaml", "paper")
    assert paper["train"] == {"lr": 0.1, "epochs": 20, "start": None}   # the cell wins, an explicit null is kept
    assert paper["seeds"] == [0, 1] and paper["notebook"] == "demo" and paper["sources"] == {"lr": "docs/x.md §1"}
    smoke = load_cell(folder / "cell.yaml", "smoke")
    assert smoke["train"] == {"lr": 0.5, "epochs": 2, "start": None}    # _profiles.yaml, then the cell's own overlay
    assert load_cell(folder / "cell.yaml", "quick")["seeds"] == [0]     # a list replaces
    assert "profiles" not in paper


def test_code_notebooks_and_docs_cite_only_what_the_repository_holds():
    problems = []
    for folder in ("nlkit", "notebooks", "params", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".yaml", ".md") or not path.is_file():
                continue
            for problem in citation_problems(path.read_text()):
                problems.append(f"{path.relative_to(ROOT)}: {problem}")
    assert not problems, "\n".join(problems)
