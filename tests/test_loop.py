"""The one resumable training loop: resume, time budget, SIGTERM, checkpoints that never run code."""

import os
import signal
import time

import pytest
import torch

from nlkit.train import Checkpointer, TrainingStopped, TrainLoop


def _toy(seed=0):
    """A tiny regression whose every epoch depends on the state (weights, optimizer, generator)."""
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(seed + 1)

    def epoch_fn(epoch):
        x = torch.randn(16, 3, generator=gen)
        loss = (model(x).squeeze(1) - x.sum(1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}  # a 0-d tensor: the loop stores a plain float

    def get_state():
        return {"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()}

    def set_state(state):
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])

    return model, epoch_fn, get_state, set_state


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    model, *fns = _toy()
    full = TrainLoop(None, epochs=6, progress=False).run(*fns)
    assert [r["epoch"] for r in full.history] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(r["loss"], float) for r in full.history)

    _, *fns = _toy()
    TrainLoop(tmp_path, epochs=3, progress=False, checkpoint_every_seconds=0).run(*fns)
    again, *fns = _toy()  # a new process: fresh objects, state from the checkpoint
    resumed = TrainLoop(tmp_path, epochs=6, progress=False).run(*fns)
    assert resumed.resumed_from == 3 and resumed.completed
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    torch.testing.assert_close(again.weight, model.weight)


def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path):
    _, epoch_fn, get_state, set_state = _toy()

    def slow(epoch):
        time.sleep(0.05)
        return epoch_fn(epoch)

    result = TrainLoop(tmp_path, epochs=50, progress=False, time_budget_seconds=0.12).run(slow, get_state, set_state)
    assert not result.completed and 1 <= len(result.history) < 50
    saved = Checkpointer(tmp_path).load()
    assert saved["epoch"] == len(result.history)
    _, *fns = _toy()
    finished = TrainLoop(tmp_path, epochs=50, progress=False).run(*fns)
    assert finished.completed and len(finished.history) == 50


def test_sigterm_checkpoints_and_stops(tmp_path):
    _, epoch_fn, get_state, set_state = _toy()

    def killed_at_two(epoch):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return epoch_fn(epoch)

    with pytest.raises(TrainingStopped):
        TrainLoop(tmp_path, epochs=10, progress=False, checkpoint_every_seconds=1e9).run(killed_at_two, get_state,
                                                                                         set_state)
    assert Checkpointer(tmp_path).load()["epoch"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again


def test_a_damaged_checkpoint_is_set_aside_and_training_starts_fresh(tmp_path):
    _, *fns = _toy()
    TrainLoop(tmp_path, epochs=2, progress=False).run(*fns)
    path = tmp_path / "checkpoints" / "last.pt"
    path.write_bytes(path.read_bytes()[:100])
    _, *fns = _toy()
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        result = TrainLoop(tmp_path, epochs=2, progress=False).run(*fns)
    assert result.resumed_from == 0 and len(result.history) == 2
    assert list((tmp_path / "checkpoints").glob("last.pt.corrupt-*"))


def test_a_checkpoint_of_another_layout_is_set_aside_and_training_starts_fresh(tmp_path, capsys):
    """A checkpoint that reads but does not fit the method (other code wrote it: a wider layer) is set aside with
    one line, and the run is the same as one that never saw it."""
    _, *fns = _toy()
    full = TrainLoop(None, epochs=3, progress=False).run(*fns)
    _, *fns = _toy()
    TrainLoop(tmp_path, epochs=2, progress=False).run(*fns)
    saved = Checkpointer(tmp_path).load()
    saved["method"]["model"]["weight"] = torch.zeros(1, 4)
    saved["method"]["gen"] = torch.Generator().manual_seed(99).get_state()
    Checkpointer(tmp_path).save(saved)
    model, epoch_fn, get_state, set_state = _toy()

    def gen_first(state):  # the generator is restored before the layer fails: the fresh start must undo it
        fns_state = dict(state)
        model_state = fns_state.pop("model")
        set_state({**get_state(), **fns_state, "model": get_state()["model"]})
        model.load_state_dict(model_state)

    result = TrainLoop(tmp_path, epochs=3, progress=False).run(epoch_fn, get_state, gen_first)
    assert result.resumed_from == 0 and [r["loss"] for r in result.history] == [r["loss"] for r in full.history]
    assert list((tmp_path / "checkpoints").glob("last.pt.unusable-*"))
    err = capsys.readouterr()
    assert len([line for line in (err.out + err.err).splitlines() if "does not fit" in line]) == 1


def test_a_checkpoint_holding_code_is_refused_not_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "checkpoints" / "last.pt"
    path.parent.mkdir()
    torch.save({"method": Payload(), "history": [], "epoch": 1}, path)
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert Checkpointer(tmp_path).load() is None
    assert not marker.exists()


def test_epochs_must_be_positive():
    from nlkit.errors import UserError

    with pytest.raises(UserError, match="epochs"):
        TrainLoop(None, epochs=0)
