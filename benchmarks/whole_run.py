"""The whole run as a person waits for it: `actlab run` in a subprocess, from the command to the
report, measured from outside (wall time, peak memory) and from the MLflow store it wrote (when
each network started and ended, and its `epoch_seconds`).

`bench_training.py` drives it; docs/benchmarks.md says what each printed line means. The functions
that read a store and do the arithmetic are plain (tests/test_bench.py runs them on a synthetic
store); `run_actlab` and `tree_cpu_seconds` touch processes.

Reading the store: a child run (one network) is a run carrying the tag `mlflow.parentRunId`; its
`start_time` and `end_time` (ms) are when the flow created and ended it (evaluation included); its
metric `epoch_seconds` (step = epoch) is the training time of each epoch, logged as the epoch ends
with a wall-clock timestamp (ms).
"""

import math
import os
import sqlite3
import statistics
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

PARENT_TAG = "mlflow.parentRunId"
GROUP_TAG = "stack.group"  # tasks.tracking.runs.STACK_TAG: networks trained in one program
# The child params that are inputs of a network's compiled program rather than part of its
# graph: networks differing only in these could share one trace (issue: "rates and seeds are
# inputs, not constants").
NOT_SHAPE = frozenset({"seed", "learning_rate"})
GIB = 1024**3
RSS_POLL_SECONDS = 0.25  # how often the process tree's memory is sampled


# ------------------------------------------------------------------------------ the store


@dataclass(frozen=True)
class Child:
    """One network's child run, as the MLflow store recorded it."""

    name: str  # e.g. mlp/relu/seed=0
    start_ms: int
    end_ms: int
    epoch_seconds: tuple[float, ...]  # by epoch
    first_epoch_ms: int | None  # when its first epoch_seconds was logged: that epoch's end
    shape: tuple[tuple[str, str], ...]  # its params but the seed and the learning rate
    status: str  # the status tag: ok, diverged, degenerate
    test_accuracy: float  # NaN when not scored (diverged)
    final_cost: float  # the last epoch's cost; NaN once it stopped being finite
    worker: str  # the worker.pid tag: the process that trained it
    group: str = ""  # the stack.group tag: the networks it trained with in one program, if any

    @property
    def result(self) -> tuple[str, float, float]:
        return self.status, self.test_accuracy, self.final_cost


def _value(value: float, is_nan: int) -> float:
    return math.nan if is_nan else float(value)  # MLflow stores NaN as 0 with is_nan = 1


def read_children(db: Path, parent_run_id: str | None = None) -> list[Child]:
    """Every child run in the SQLite store `db` (of `parent_run_id` only, if given), in the order
    they started. A child with no end time (the run did not finish) is an error."""
    if not db.is_file():
        raise FileNotFoundError(f"no MLflow store at {db}")
    with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as con:
        query = (
            "SELECT r.run_uuid, r.name, r.start_time, r.end_time FROM runs r JOIN tags t "
            "ON t.run_uuid = r.run_uuid AND t.key = ? WHERE r.lifecycle_stage = 'active'"
        )
        args: list = [PARENT_TAG]
        if parent_run_id is not None:
            query += " AND t.value = ?"
            args.append(parent_run_id)
        runs = con.execute(query + " ORDER BY r.start_time, r.run_uuid", args).fetchall()
        metrics: dict[str, dict[str, list[tuple[int, int, float]]]] = {}
        for run_id, key, value, is_nan, step, ts in con.execute(
            "SELECT run_uuid, key, value, is_nan, step, timestamp FROM metrics "
            "WHERE key IN ('epoch_seconds', 'cost', 'test_accuracy')"
        ):
            metrics.setdefault(run_id, {}).setdefault(key, []).append(
                (step, ts, _value(value, is_nan))
            )
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in con.execute(
            "SELECT run_uuid, key, value FROM tags WHERE key IN ('status', 'worker.pid', ?)",
            (GROUP_TAG,),
        ):
            tags.setdefault(run_id, {})[key] = value
        params: dict[str, dict[str, str]] = {}
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM params"):
            params.setdefault(run_id, {})[key] = value
    children = []
    for run_id, name, start, end in runs:
        if end is None:
            raise ValueError(f"child run {name} ({run_id}) in {db} has no end time: not finished")
        own = metrics.get(run_id, {})
        epochs = _by_step(own.get("epoch_seconds", []))
        children.append(
            Child(
                name=name,
                start_ms=int(start),
                end_ms=int(end),
                epoch_seconds=tuple(v for _, v in epochs),
                first_epoch_ms=min((ts for _, ts, _ in own.get("epoch_seconds", [])), default=None),
                shape=tuple(
                    sorted((k, v) for k, v in params.get(run_id, {}).items() if k not in NOT_SHAPE)
                ),
                status=tags.get(run_id, {}).get("status", "?"),
                test_accuracy=_last(own.get("test_accuracy", [])),
                final_cost=_last(own.get("cost", [])),
                worker=tags.get(run_id, {}).get("worker.pid", "?"),
                group=tags.get(run_id, {}).get(GROUP_TAG, ""),
            )
        )
    return children


def _by_step(points: list[tuple[int, int, float]]) -> list[tuple[int, float]]:
    """(step, value) per step, the latest logged value where a step was logged twice."""
    latest: dict[int, tuple[int, float]] = {}
    for step, ts, value in points:
        if step not in latest or ts >= latest[step][0]:
            latest[step] = (ts, value)
    return [(step, latest[step][1]) for step in sorted(latest)]


def _last(points: list[tuple[int, int, float]]) -> float:
    steps = _by_step(points)
    return steps[-1][1] if steps else math.nan


# ----------------------------------------------------------------------------- the figures


def epoch_total(children: Iterable[Child]) -> float:
    """Σ epoch_seconds over the children: the training itself."""
    return math.fsum(s for c in children for s in c.epoch_seconds)


def network_overheads(children: Sequence[Child]) -> list[float]:
    """Seconds each network cost beyond its epochs, in start order: from the end of the previous
    child (the first child: from its own start) to its own end, less Σ its epoch_seconds. With one
    network at a time this is everything between two networks' ends that is not training:
    loading, building, tracing and compiling, evaluation, figures, MLflow writes.

    Networks trained stacked (the same `stack.group` tag, one after another) are timed as their
    group: from the end of the child before the group to the end of its last member, less Σ the
    members' epochs, shared equally among them (the first member's end would otherwise carry the
    whole group's training, and the others' a share of epochs they did not wait for)."""
    out, previous_end, i = [], None, 0
    while i < len(children):
        j = i + 1
        while children[i].group and j < len(children) and children[j].group == children[i].group:
            j += 1
        members = children[i:j]
        since = members[0].start_ms if previous_end is None else previous_end
        end = max(c.end_ms for c in members)
        cost = (end - since) / 1000 - math.fsum(s for c in members for s in c.epoch_seconds)
        out += [cost / len(members)] * len(members)
        previous_end, i = end, j
    return out


def first_of_shape(children: Sequence[Child]) -> list[bool]:
    """For each child in start order: is it the first of its graph's shape (its params but the
    seed and the learning rate), the one that pays for tracing and compiling?"""
    seen: set = set()
    flags = []
    for c in children:
        flags.append(c.shape not in seen)
        seen.add(c.shape)
    return flags


@dataclass(frozen=True)
class Overheads:
    """Per-network overhead (s), in start order, split by whether the network was the first of
    its shape."""

    first: tuple[float, ...]
    rest: tuple[float, ...]

    @classmethod
    def of(cls, children: Sequence[Child]) -> "Overheads":
        pairs = list(zip(network_overheads(children), first_of_shape(children), strict=True))
        return cls(first=tuple(o for o, f in pairs if f), rest=tuple(o for o, f in pairs if not f))

    @staticmethod
    def _median(values: Sequence[float]) -> float:
        return statistics.median(values) if values else math.nan

    @property
    def median(self) -> float:
        return self._median(self.first + self.rest)

    def describe(self) -> str:
        text = f"median {self.median:.3f} s over {len(self.first) + len(self.rest)} networks"
        text += f"; first of their shape {self._median(self.first):.3f} s ({len(self.first)})"
        if self.rest:
            text += f", the rest {self._median(self.rest):.3f} s ({len(self.rest)})"
        return text


def seconds_to_first_epoch(children: Iterable[Child], started_ms: int) -> float:
    """From the command's start (wall clock, ms) to the end of the first epoch of any network
    (when its `epoch_seconds` was logged), in seconds; NaN if no epoch was logged."""
    first = [c.first_epoch_ms for c in children if c.first_epoch_ms is not None]
    return (min(first) - started_ms) / 1000 if first else math.nan


def training_span(children: Sequence[Child]) -> float:
    """Seconds from the first child's start to the last child's end: the networks' part of the
    run, whichever process trained them."""
    return (max(c.end_ms for c in children) - min(c.start_ms for c in children)) / 1000


def networks_per_minute(networks: int, seconds: float) -> float:
    return 60 * networks / seconds if seconds > 0 else math.nan


def compare_results(a: Sequence[Child], b: Sequence[Child]) -> list[str]:
    """What differs between two runs of the same grid, network by network (by name): status, test
    accuracy or final cost (NaN equals NaN), or a network in one run only. [] = the same."""
    left, right = {c.name: c for c in a}, {c.name: c for c in b}
    differences = [f"{n}: only in the first run" for n in left.keys() - right.keys()]
    differences += [f"{n}: only in the second run" for n in right.keys() - left.keys()]
    for name in sorted(left.keys() & right.keys()):
        x, y = left[name], right[name]
        if x.status != y.status:
            differences.append(f"{name}: status {x.status} vs {y.status}")
        for what, u, v in (
            ("test accuracy", x.test_accuracy, y.test_accuracy),
            ("final cost", x.final_cost, y.final_cost),
        ):
            if not (u == v or (math.isnan(u) and math.isnan(v))):
                differences.append(f"{name}: {what} {u!r} vs {v!r}")
    return sorted(differences)


def describe_comparison(differences: list[str], networks: int, show: int = 3) -> str:
    if not differences:
        return f"all {networks} networks the same (status, test accuracy, final cost)"
    more = f" (and {len(differences) - show} more)" if len(differences) > show else ""
    return f"{len(differences)} DIFFERENCES: " + "; ".join(differences[:show]) + more


# ------------------------------------------------------------------------- targets, lines


@dataclass(frozen=True)
class Target:
    """A bound the project sets itself: value <= limit, or >= limit when `at_least`."""

    limit: float
    at_least: bool = False

    def met(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= self.limit if self.at_least else value <= self.limit

    def __str__(self) -> str:
        return f"target {'>=' if self.at_least else '<='} {self.limit:g}"


LABEL_WIDTH = 46


def judged(value: float | None, target: Target | None) -> tuple[str, str]:
    """(the bound as printed, the verdict): `target <= 2` and PASS or FAIL; `(no target)` and no
    verdict without one."""
    if target is None:
        return "(no target)", ""
    return str(target), "PASS" if target.met(value) else "FAIL"


def target_line(label: str, value: float | None, target: Target | None, note: str = "") -> str:
    """`  label   value   target <= 2   PASS  note`; with no target, `(no target)` and no verdict;
    a value that could not be measured (None, NaN) shows `n/a` and fails its target."""
    shown = "n/a" if value is None or math.isnan(value) else f"{value:.2f}"
    bound, verdict = judged(value, target)
    line = f"  {label:<{LABEL_WIDTH}} {shown:>8}   {bound:<14} {verdict:<4}"
    return f"{line}  {note}".rstrip()


# ------------------------------------------------------------------------------ processes


@dataclass
class Finished:
    """One `actlab run`, as it went."""

    wall_seconds: float  # from just before the process started to its exit
    started_ms: int  # wall clock (ms) just before it started: MLflow's timestamps' clock
    peak_tree_bytes: int  # the most the command and all its descendants held (_TreeRss.peak)
    peak_process_bytes: int  # the largest single process of the tree (its high-water mark)
    children: list[Child]
    log: Path  # its stdout and stderr


def _high_water_bytes(pid: int) -> int | None:
    """The most resident memory the process `pid` has held since it started (its program's:
    VmHWM in /proc/PID/status); None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


class _TreeRss(threading.Thread):
    """Samples the memory of a process and all its descendants (Prefect's temporary server and
    its watchdog included) every RSS_POLL_SECONDS. `peak`: the largest sum, over the processes
    of one sample, of each one's high-water mark so far (so no spike between two samples is
    missed; an overstatement when the processes' peaks do not coincide). `largest`: the largest
    single process's high-water mark.

    Not the kernel's `ru_maxrss` from wait4: Linux carries the parent's resident size over into
    an exec'd child's maximum, so a command this benchmark starts (1.6 GiB by then, having run
    the per-epoch parts) reported 1.64 GiB whatever it used. A process's VmHWM counts its own
    program only."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.largest, self.done = pid, 0, 0, threading.Event()
        self._high: dict[int, int] = {}

    def sample(self, processes: list[psutil.Process]) -> None:
        total = 0
        for proc in processes:
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # ended between the listing and the reading
            high = max(self._high.get(proc.pid, 0), _high_water_bytes(proc.pid) or rss, rss)
            self._high[proc.pid] = high
            total += high
        self.peak = max(self.peak, total)
        self.largest = max(self.largest, *self._high.values(), 0)

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
            while not self.done.is_set():
                self.sample([root, *root.children(recursive=True)])
                self.done.wait(RSS_POLL_SECONDS)
        except psutil.NoSuchProcess:
            pass  # the command has exited


def run_actlab(
    workdir: Path,
    overrides: Sequence[str],
    store: Path,
    params: Path,
    actlab: Path,
    env: dict[str, str] | None = None,
) -> Finished:
    """`actlab run -p params --set ...` in `workdir` (created), timed from outside; then its child
    runs read from the SQLite `store` it wrote to (or its tracking server did). A failed command
    raises RuntimeError with the end of its output."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [str(actlab), "run", "-p", str(params)]
    for override in overrides:
        cmd += ["--set", override]
    log = workdir / "actlab.log"
    with open(log, "wb") as out:
        started_ms = time.time_ns() // 1_000_000
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env)
        sampler = _TreeRss(proc.pid)
        sampler.start()
        _, status = os.waitpid(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        sampler.done.set()
        sampler.join(timeout=10)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"actlab run failed ({proc.returncode}) in {workdir}:\n{tail}")
    return Finished(
        wall_seconds=wall,
        started_ms=started_ms,
        peak_tree_bytes=sampler.peak,
        peak_process_bytes=sampler.largest,
        children=read_children(store),
        log=log,
    )


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds (user + system) used so far by these processes and their descendants."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


CPU_POLL_SECONDS = 0.5


class CpuSampler(threading.Thread):
    """The CPU seconds of some process trees (Dask workers), sampled with a wall-clock time
    every CPU_POLL_SECONDS, so that the cores they used can be read for any stretch of time
    afterwards (the networks' span, leaving out the workers' imports before it)."""

    def __init__(self, pids: Iterable[int]):
        super().__init__(daemon=True)
        self.pids, self.done = list(pids), threading.Event()
        self.samples: list[tuple[int, float]] = []  # (wall clock ms, CPU seconds so far)

    def __enter__(self) -> "CpuSampler":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join(timeout=10)

    def run(self) -> None:
        while True:
            self.samples.append((time.time_ns() // 1_000_000, tree_cpu_seconds(self.pids)))
            if self.done.wait(CPU_POLL_SECONDS):
                self.samples.append((time.time_ns() // 1_000_000, tree_cpu_seconds(self.pids)))
                return

    def cores(self, start_ms: int, end_ms: int) -> float:
        """CPU seconds per second from the last sample at or before `start_ms` to the first at
        or after `end_ms` (NaN if the samples do not cover that stretch)."""
        return cores_between(self.samples, start_ms, end_ms)


def cores_between(samples: Sequence[tuple[int, float]], start_ms: int, end_ms: int) -> float:
    before = [s for s in samples if s[0] <= start_ms]
    after = [s for s in samples if s[0] >= end_ms]
    if not before or not after:
        return math.nan
    (t0, c0), (t1, c1) = before[-1], after[0]
    return (c1 - c0) / ((t1 - t0) / 1000) if t1 > t0 else math.nan
