"""The kit's shape: layers import only downwards, and every cell resolves into its paper's contract."""

import ast
from pathlib import Path

import pytest

from nlkit.methods import available_methods, method_for
from nlkit.pipeline import PROFILES, find_cells, load_cell
from nlkit.pipeline.tables import table_entries

PACKAGE = Path(__file__).resolve().parents[1] / "nlkit"

# data -> noise -> models/train -> encoders -> methods -> presentation -> pipeline -> command line
LAYER = {"errors": 0, "io": 0, "safeload": 0, "data": 1, "noise": 2, "models": 3, "train": 3, "diffusion": 3, "encoders": 4, "metrics": 4,
         "methods": 5,
         "viz": 6, "pipeline": 7, "cli": 8, "labhooks": 8, "__main__": 8}


def _layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 and parts[0] == "nlkit" else None


def _imports(path: Path) -> list[str]:
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
            found += [f"{target}.{a.name}" for a in node.names if _layer_of(f"{target}.{a.name}") is not None
                      and target == "nlkit"]
    return found


def test_lower_layers_never_import_higher_ones():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        if own is None:
            continue
        for target in _imports(path):
            layer = _layer_of(target)
            if layer is not None and layer > own:
                violations.append(f"{path.relative_to(PACKAGE.parent)} imports {target}")
    assert not violations, "\n".join(violations)


def test_the_layer_check_sees_a_violation(tmp_path, monkeypatch):
    bad = PACKAGE / "models" / "_probe_for_test.py"
    bad.write_text("from ..pipeline import runner\n")
    try:
        with pytest.raises(AssertionError, match="pipeline"):
            test_lower_layers_never_import_higher_ones()
    finally:
        bad.unlink()


@pytest.mark.parametrize("profile", PROFILES)
def test_every_cell_resolves_into_its_papers_contract(profile):
    cells = find_cells()
    assert cells
    for cell in cells:
        resolved = load_cell(cell, profile)
        method = method_for(resolved["paper"])
        for entry in table_entries(resolved):
            method.SPEC.check_metric(entry["metric"], str(cell))
        if hasattr(method, "Config"):
            method.Config.from_cell(resolved)


def test_every_params_folder_has_a_method():
    folders = {p.name for p in (PACKAGE.parent / "params").iterdir() if p.is_dir()}
    assert folders <= set(available_methods())


@pytest.mark.parametrize("paper, key, value", [
    ("tdsm", "duration_kimg", -5), ("tdsm", "cls_duration_kimg", 0), ("tdsm", "batch_size", 0),
    ("tdsm", "lr", -1e-3), ("tdsm", "kimg_per_tick", 0), ("tdsm", "samples_per_class", -1),
    ("tdsm", "augment_p", 1.5), ("instancegm", "epochs", -3), ("instancegm", "lr", -0.02),
    ("instancegm", "batch_size", 0), ("instancegm", "vae_lr", 0), ("instancegm", "p_threshold", 2),
    ("instancegm", "warmup_epochs", -1)])
def test_train_values_outside_their_range_are_one_line_errors(paper, key, value):
    """A negative TDSM duration used to finish as "done" with its numbers in the tables."""
    from nlkit.errors import UserError

    cell = load_cell(next(c for c in find_cells(paper) if c.stem.endswith(("-tdsm", "-instancegm"))), "smoke")
    with pytest.raises(UserError, match=rf"train\.{key}: .*\(got {value}\)"):
        method_for(paper).Config.from_cell({**cell, "train": {**(cell.get("train") or {}), key: value}})


def pipeline_import_graph(folder: Path, package: str = "nlkit.pipeline") -> dict[str, set[str]]:
    """Which modules of `package` (the .py files of `folder`) each one imports, statically: module-level and
    function-local imports alike (a local import still ties the two modules together, it only hides it)."""
    modules = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        edges = graph.setdefault(path.stem, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    base = f"{package}.{node.module}" if node.module else package
                elif node.level == 0:
                    base = node.module or ""
                else:
                    continue  # above the package: another layer, see test_lower_layers_never_import_higher_ones
                targets = [(base, a.name) for a in node.names]
            else:
                continue
            for base, name in targets:
                if base == package and name in modules:       # from . import ray_backend
                    edges.add(name)
                elif base.startswith(package + "."):           # from .runner import x / import nlkit.pipeline.runner
                    edges.add(base[len(package) + 1:].split(".")[0])
        edges.discard(path.stem)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk, each as A -> B -> ... -> A (one per back edge)."""
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "visiting"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "visiting":
                cycles.append(path[path.index(target):] + [module, target] if target in path
                              else [module, target])
            elif target not in state:
                visit(target, path + [module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return cycles


def test_pipeline_modules_import_one_way():
    """Planning, currency, execution backends and recording import one way: no module of nlkit/pipeline imports,
    directly or through others, a module that imports it (function-local imports count)."""
    cycles = import_cycles(pipeline_import_graph(PACKAGE / "pipeline"))
    assert not cycles, "import cycles in nlkit/pipeline:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_cycle_through_a_local_import(tmp_path):
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import y\n")
    (tmp_path / "c.py").write_text("import os\n\ndef g():\n    from nlkit.pipeline import a\n")
    (tmp_path / "d.py").write_text("from .a import z\nimport ray\n")
    graph = pipeline_import_graph(tmp_path)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c", "a"]]
