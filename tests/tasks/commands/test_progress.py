"""tasks/commands/progress.py: the line per finished network, the ETA, and who hears about it."""

import io
import math

import pytest

from tasks.commands import progress
from tasks.core.config import Cell
from tasks.core.results import EvaluatedNetwork, TrainedNetwork


def evaluated(model, activation, status="ok", val=0.861, test=0.868, diverged_epoch=None):
    trained = TrainedNetwork(
        cell=Cell(model=model, activation=activation, seed=0),
        run_id="r",
        init="he_normal",
        status=status,
        reason="",
        diverged_epoch=diverged_epoch,
        costs=(0.5, 0.4),
        seconds_per_epoch=0.1,
        weights_path="w.npz",
        val_accuracy=val,
    )
    return EvaluatedNetwork(trained, test_loss=0.4, test_accuracy=test)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_line_per_network_with_done_total_outcome_speed_and_eta():
    clock = Clock()
    names = ["tutorial/relu/seed=0", "mlp/relu/seed=0", "mlp/gelu/seed=0"]
    grid = progress.GridProgress(names, now=clock)

    clock.now += 10  # 10 s for the first network: 20 s for the two left
    first = grid.finished(evaluated("tutorial", "relu", "diverged", math.nan, math.nan, 0))
    clock.now += 5
    second = grid.finished(evaluated("mlp", "relu"))
    clock.now += 6
    last = grid.finished(evaluated("mlp", "gelu", val=0.9, test=0.88))

    assert first.line == (
        "[1/3] tutorial/relu/seed=0  diverged    at epoch 0, not scored   0.10 s/epoch  ETA 0:20"
    )
    assert second.line == (
        "[2/3] mlp/relu/seed=0       ok          val 0.861  test 0.868    0.10 s/epoch  ETA 0:08"
    )
    assert last.line.endswith("val 0.900  test 0.880    0.10 s/epoch  done in 0:21")
    assert (first.eta_seconds, last.eta_seconds) == (20.0, None)
    assert (last.done, last.total, last.status) == (3, 3, "ok")


def test_clock_reads_minutes_and_hours():
    assert [progress.clock(s) for s in (0, 21, 65, 3723, -1)] == [
        "0:00",
        "0:21",
        "1:05",
        "1:02:03",
        "0:00",
    ]


def test_listeners_hear_every_event_while_listening_and_a_failing_one_stops_nothing():
    heard = []

    def broken(event):
        raise RuntimeError("a display that fails")

    with progress.listening(heard.append), progress.listening(broken):
        grid = progress.GridProgress(["mlp/relu/seed=0"])
        progress.epoch_done("mlp/relu/seed=0", 0, 2)
        grid.finished(evaluated("mlp", "relu"))
    progress.epoch_done("mlp/relu/seed=0", 1, 2)  # nobody listens any more

    kinds = [type(e).__name__ for e in heard]
    assert kinds == ["GridStarted", "EpochDone", "NetworkDone"]
    assert heard[0].total == 1 and heard[1] == progress.EpochDone("mlp/relu/seed=0", 0, 2)


def test_the_on_line_hook_gets_each_finished_network():
    lines = []
    grid = progress.GridProgress(["a", "b"], on_line=lines.append)
    grid.finished(evaluated("mlp", "relu"))
    assert [e.done for e in lines] == [1]


def test_networks_finished_together_move_the_progress_once():
    """A group trained together finishes at once: every line is logged and announced, but the
    progress artifact (a request to the Prefect server each time) moves once, to the last."""
    lines, settled, heard = [], [], []
    with progress.listening(heard.append):
        grid = progress.GridProgress(
            ["a", "b", "c", "d"], on_line=lines.append, on_settled=settled.append
        )
        group = [evaluated("mlp", a) for a in ("relu", "tanh", "gelu")]
        events = grid.finished_together(group)
        grid.finished(evaluated("tutorial", "softmax"))
        assert grid.finished_together([]) == []

    assert [e.done for e in events] == [1, 2, 3] and events == lines[:3]
    assert [e.name for e in lines] == [
        "mlp/relu/seed=0", "mlp/tanh/seed=0", "mlp/gelu/seed=0", "tutorial/softmax/seed=0"
    ]  # fmt: skip
    assert [e.done for e in settled] == [3, 4]
    assert [e.done for e in heard if isinstance(e, progress.NetworkDone)] == [1, 2, 3, 4]


def test_in_a_log_the_display_writes_the_lines_only():
    out = io.StringIO()
    display = progress.TerminalDisplay(out, live=False).start()
    with progress.listening(display):
        display.stage("loading TensorFlow")
        grid = progress.GridProgress(["mlp/relu/seed=0", "mlp/gelu/seed=0"])
        progress.epoch_done("mlp/relu/seed=0", 0, 2)
        grid.finished(evaluated("mlp", "relu"))
        grid.finished(evaluated("mlp", "gelu"))
    display.stop()
    lines = out.getvalue().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["[1/2]", "mlp/relu/seed=0"],
        ["[2/2]", "mlp/gelu/seed=0"],
    ]


def test_on_a_terminal_the_live_line_goes_and_the_network_lines_stay():
    out = io.StringIO()
    display = progress.TerminalDisplay(out, live=True).start()
    with progress.listening(display):
        grid = progress.GridProgress(["mlp/relu/seed=0"])
        progress.epoch_done("mlp/relu/seed=0", 0, 2)
        grid.finished(evaluated("mlp", "relu"))
    display.stop()
    display.stop()  # a second stop (the interrupt path) is harmless
    assert "[1/1] mlp/relu/seed=0" in out.getvalue()


@pytest.mark.parametrize("live", [False, True])
def test_the_answer_loses_its_markdown_marks(live):
    out = io.StringIO()
    sentence = "**mlp**: best is `gelu` on mnist: test accuracy 0.9800"
    progress.write_answer(out, [sentence], live=live)
    text = " ".join(out.getvalue().split())
    assert "mlp: best is gelu on mnist: test accuracy 0.9800" in text
    assert "**" not in text and "`" not in text


def test_plain_keeps_everything_but_the_marks():
    assert progress.plain("**tutorial**: `relu` (the baseline) diverged; 2·e^-L") == (
        "tutorial: relu (the baseline) diverged; 2·e^-L"
    )
