"""Following a run as it goes: one line per network as it finishes, with how many are done and
left, its outcome, its time per epoch and an estimate of the time left, e.g.

    [7/19] mlp/relu/seed=0      ok          val 0.861  test 0.868  0.10 s/epoch  ETA 0:21

The flow reports each network as it finishes (`GridProgress.finished`): the line goes to the
Prefect run's log and to its progress artifact, and to whoever listens in this process
(`listening`). The terminal listens with `TerminalDisplay`: on a TTY a live display (rich: already
installed with Prefect and typer, and it prints finished lines above a live bar, so a second
progress library buys nothing), elsewhere the plain lines, one per network, which is what a log
file wants. The training task also reports each epoch; only a listener in the same process hears
it (networks trained on Dask workers report when they finish).
"""

import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from tasks.core.results import EvaluatedNetwork


@dataclass(frozen=True)
class GridStarted:
    """The grid's networks were handed to the task runner."""

    total: int


@dataclass(frozen=True)
class EpochDone:
    """A network finished an epoch (0-based) of `epochs`."""

    name: str
    epoch: int
    epochs: int


@dataclass(frozen=True)
class NetworkDone:
    """A network was trained and evaluated; `line` is what a person reads."""

    done: int
    total: int
    name: str
    status: str
    line: str
    eta_seconds: float | None  # None once every network is done


Event = GridStarted | EpochDone | NetworkDone
Listener = Callable[[Event], None]

_LISTENERS: list[Listener] = []
_LOCK = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener` with every progress event of this process while the block runs."""
    with _LOCK:
        _LISTENERS.append(listener)
    try:
        yield
    finally:
        with _LOCK:
            _LISTENERS.remove(listener)


def announce(event: Event) -> None:
    """Tell every listener (none: nothing happens). A listener's failure never stops training."""
    with _LOCK:
        listeners = list(_LISTENERS)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a display must not break the run it displays
            pass


def epoch_done(name: str, epoch: int, epochs: int) -> None:
    announce(EpochDone(name, epoch, epochs))


def clock(seconds: float) -> str:
    """0:21, 12:05, 1:02:03."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _score(value: float) -> str:
    return f"{value:.3f}" if value is not None and math.isfinite(value) else "  -  "


def network_line(
    done: int,
    total: int,
    evaluated: EvaluatedNetwork,
    name_width: int,
    eta_seconds: float | None,
    elapsed: float,
) -> str:
    """One finished network as a line (see the module docstring)."""
    trained = evaluated.trained
    counter = f"[{done:>{len(str(total))}}/{total}]"
    if trained.status == "diverged":
        outcome = f"at epoch {trained.diverged_epoch}, not scored"
    else:
        val, test = _score(trained.val_accuracy), _score(evaluated.test_accuracy)
        outcome = f"val {val}  test {test}"
    outcome = outcome.ljust(len("at epoch 10, not scored"))
    speed = f"{trained.seconds_per_epoch:.2f} s/epoch"
    when = f"ETA {clock(eta_seconds)}" if eta_seconds is not None else f"done in {clock(elapsed)}"
    name = trained.cell.name.ljust(name_width)
    return f"{counter} {name}  {trained.status:<10}  {outcome}  {speed}  {when}"


class GridProgress:
    """Counts the grid's networks as they finish and estimates the time left: the time so far
    per finished network, times the networks left (networks run in parallel are accounted for,
    since the time is wall-clock)."""

    def __init__(
        self,
        names: list[str],
        on_line: Callable[[NetworkDone], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        on_settled: Callable[[NetworkDone], None] | None = None,
    ):
        self.total = len(names)
        self.done = 0
        self.name_width = max((len(n) for n in names), default=0)
        self._on_line = on_line
        self._on_settled = on_settled
        self._now = now
        self._start = now()
        announce(GridStarted(self.total))

    def extend(self, names: list[str]) -> None:
        """More networks to wait for (seeds added where the best could not be told apart)."""
        self.total += len(names)
        self.name_width = max([self.name_width, *(len(n) for n in names)])

    def finished(self, evaluated: EvaluatedNetwork) -> NetworkDone:
        """Count `evaluated` as done; announce and return its line."""
        return self.finished_together([evaluated])[0]

    def finished_together(self, evaluations: list[EvaluatedNetwork]) -> list[NetworkDone]:
        """Count networks that finished at once (a group trained together) as done, in order:
        each line is announced and goes to `on_line`; `on_settled` hears the last one only."""
        events = [self._count(evaluated) for evaluated in evaluations]
        if events and self._on_settled is not None:
            self._on_settled(events[-1])
        return events

    def _count(self, evaluated: EvaluatedNetwork) -> NetworkDone:
        self.done += 1
        elapsed = self._now() - self._start
        left = self.total - self.done
        eta = elapsed / self.done * left if left else None
        line = network_line(self.done, self.total, evaluated, self.name_width, eta, elapsed)
        event = NetworkDone(
            self.done, self.total, evaluated.trained.cell.name, evaluated.trained.status, line, eta
        )
        if self._on_line is not None:
            self._on_line(event)
        announce(event)
        return event


def track(names: list[str]) -> GridProgress:
    """The flow's GridProgress: each finished network's line also goes to the Prefect run's log,
    and its progress artifact moves once per network or group of networks that finished together
    (each move is a request to the Prefect server: nine for one group cost ~0.06 s)."""
    from tasks.logs import run_logger
    from tasks.report.publish import start_progress_artifact, update_progress

    log = run_logger(__name__)
    artifact = start_progress_artifact(len(names))

    def on_line(event: NetworkDone) -> None:
        log.info(event.line)

    def on_settled(event: NetworkDone) -> None:
        update_progress(artifact, event.done, event.total, event.line)

    return GridProgress(names, on_line, on_settled=on_settled)


_MARKUP = re.compile(r"\*\*(.+?)\*\*|`([^`]*)`")


def plain(markdown: str) -> str:
    """A Markdown sentence as plain text: **bold** and `code` lose their marks."""
    return _MARKUP.sub(lambda m: m[1] if m[1] is not None else m[2], markdown)


class TerminalDisplay:
    """What the terminal shows of a run: on a TTY (`live`), a live line (the stage, the network
    training and its epoch, a bar with done/total and the ETA) under the lines of the finished
    networks; otherwise only those lines. Use as a listener (`listening(display)`), between
    `start()` and `stop()`."""

    def __init__(self, stream: TextIO, live: bool):
        self.stream = stream
        self.live = live
        self._progress = None
        self._task = None
        self._lock = threading.RLock()  # stop() may come from within a callback's thread

    def start(self) -> "TerminalDisplay":
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            console = Console(file=self.stream, highlight=False)
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(bar_width=30),
                TextColumn("{task.fields[count]}"),  # done/total, once training started
                TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"),
                console=console,
                transient=True,  # the live line goes; the finished networks' lines stay
            )
            self._task = self._progress.add_task("starting", total=None, count="", eta="")
            self._progress.start()
        return self

    def stage(self, description: str) -> None:
        """What the run is doing before its networks train, on the live line."""
        with self._lock:
            if self._progress is not None:
                self._progress.update(self._task, description=description)

    def stop(self) -> None:
        """End the live line (the cursor comes back); safe to call twice."""
        with self._lock:
            if self._progress is not None:
                self._progress.stop()
                self._progress = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, NetworkDone):
                self._network_done(event)
            elif self._progress is None:
                return
            elif isinstance(event, GridStarted):
                count = f"0/{event.total}"
                self._progress.update(
                    self._task, total=event.total, description="training", count=count
                )
            elif isinstance(event, EpochDone):
                description = f"training {event.name}, epoch {event.epoch + 1}/{event.epochs}"
                self._progress.update(self._task, description=description)

    def _network_done(self, event: NetworkDone) -> None:
        if self._progress is None:
            self.stream.write(event.line + "\n")
            self.stream.flush()
            return
        self._progress.console.print(event.line, markup=False)
        eta = f"ETA {clock(event.eta_seconds)}" if event.eta_seconds is not None else ""
        last = event.done == event.total
        description = "writing the report" if last else "training"
        self._progress.update(
            self._task,
            completed=event.done,
            total=event.total,
            count=f"{event.done}/{event.total}",
            eta=eta,
            description=description,
        )


def write_answer(stream: TextIO, sentences: list[str] | tuple[str, ...], live: bool) -> None:
    """The report's answer, one sentence per model: rendered (bold, code) on a TTY, plain text
    otherwise."""
    if not live:
        for sentence in sentences:
            stream.write(plain(sentence) + "\n")
        stream.flush()
        return
    from rich.console import Console
    from rich.markdown import Markdown

    Console(file=stream).print(Markdown("\n".join(f"- {s}" for s in sentences)))
