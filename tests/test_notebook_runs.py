"""A paper notebook run by hand is the pipeline's run of its cell: the same folder, key and numbers as `nlkit run`,
so the tables and `make reproduce` count it as current."""

import json

import pytest

CELL = "params/sln/cifar10-sym-0.40-paper-sln.yaml"


@pytest.mark.slow
def test_notebook_run_by_hand_is_the_pipeline_run(kit_project, capsys):
    import torch

    from nlkit.pipeline import load_cell
    from nlkit.pipeline.currency import is_current, run_dir
    from nlkit.pipeline.executors import execute_direct, notebook_path
    from nlkit.pipeline.runner import run_cell

    cell = load_cell(CELL, "smoke")
    threads = torch.get_num_threads()
    try:
        # the notebook's own code with out_dir left at None, as a person runs it (no runner around it)
        parameters = {"params_file": CELL, "profile": "smoke", "seed": 0, "compare_with_ce": False}
        execute_direct(notebook_path(cell), kit_project / "unused", parameters)
        assert torch.get_num_threads() == 1   # the profile's resources.num_cpus, as the runner computes with
    finally:
        torch.set_num_threads(threads)
    folder = run_dir(cell, 0)
    assert folder == kit_project / "outputs/smoke/sln/cifar10-sym-0.40-paper-sln/seed0"
    assert "run folder: outputs/smoke/sln/cifar10-sym-0.40-paper-sln/seed0" in capsys.readouterr().out
    by_hand = json.loads((folder / "metrics.json").read_text())
    assert by_hand["executor"] == "notebook" and is_current(cell, 0)
    assert run_cell(CELL, "smoke", seed=0, executor="direct")[0].status == "skipped"   # nothing to rerun
    # the runner's own run of the cell gives the same numbers
    assert run_cell(CELL, "smoke", seed=0, executor="direct", force=True)[0].status == "done"
    piped = json.loads((folder / "metrics.json").read_text())
    assert piped["params_hash"] == by_hand["params_hash"]
    for name in ("acc_last", "acc_best_test"):
        assert piped[name] == pytest.approx(by_hand[name], rel=1e-6), name


def test_a_hand_run_sets_the_finished_run_aside_and_the_pipeline_puts_it_back(kit_project):
    """Starting a notebook by hand on a finished run must not delete its evidence: it waits aside, and if the hand
    run never records its metrics (an error, a closed kernel) the next pipeline run of the cell puts it back."""
    from nlkit.pipeline import load_cell
    from nlkit.pipeline.currency import run_dir
    from nlkit.pipeline.notebook import _HAND_RUNS, run_folder
    from nlkit.pipeline.runner import ASIDE, _recover_aside

    cell = load_cell(CELL, "smoke")
    folder = run_dir(cell, 0)
    folder.mkdir(parents=True)
    finished = {"metrics.json": '{"acc_last": 50.0}', "results.json": "{}", "notebook.ipynb": "{}"}
    for name, text in finished.items():
        (folder / name).write_text(text)
    try:
        assert run_folder(None, cell, 0) == folder
        assert not (folder / "metrics.json").exists()          # not current while the hand run goes on
        assert (folder / ASIDE / "metrics.json").read_text() == finished["metrics.json"]
    finally:
        _HAND_RUNS.pop(folder)[0].release()
    _recover_aside(folder)                                     # what the runner does before deciding currency
    for name, text in finished.items():
        assert (folder / name).read_text() == text
    assert not (folder / ASIDE).exists()
