"""Ctrl-C, SIGTERM or `kill -9` in the middle of a run: `actlab run` in a child process,
signalled once a child MLflow run has logged epochs (or once the report is being written). After
Ctrl-C and SIGTERM the runs end KILLED, the SQLite store stays sound, no report looks complete, and
the next run works. After `kill -9` nothing can run on the way out: Prefect's temporary server dies
with the command anyway, and the next command marks the runs FAILED."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from prefect.settings import PREFECT_API_URL

from tasks.core.paths import run_weights_dir
from tests.flows.conftest import PARAMS
from tests.idx import make_dataset

STARTUP_SECONDS = 300  # from `actlab run` to a child's third epoch, on a busy 2-core machine


def _overrides(data: Path, epochs: int) -> list[str]:
    sets = [
        f"data.source={data}",
        "preprocess.val_size=100",
        f"train.epochs={epochs}",
        "train.batch_size=50",
        "sweep.models=[tutorial, mlp]",
        "sweep.activations=[softmax, tanh]",
        "models.mlp.hidden_units=[16]",
    ]
    return [word for s in sets for word in ("--set", s)]


def _actlab(
    project: Path, data: Path, epochs: int, env: dict | None = None, **kw
) -> subprocess.Popen:
    """`actlab run` in `project` with the defaults: mlflow.db, mlruns/, data/, reports/ there."""
    if env is None:
        env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    env.pop("MLFLOW_TRACKING_URI", None)
    actlab = Path(sys.executable).with_name("actlab")
    args = [str(actlab), "run", "-p", str(PARAMS), *_overrides(data, epochs)]
    return subprocess.Popen(args, cwd=project, env=env, text=True, **kw)


def _query(db: Path, sql: str) -> list[tuple]:
    # read-write, never created: after a `kill -9` mid-write the store has a hot journal, which
    # SQLite rolls back on the next read, and a read-only connection cannot ("attempt to write a
    # readonly database"). Only SELECTs go through here.
    with sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=30) as con:
        return con.execute(sql).fetchall()


def _child_epochs_logged(db: Path) -> int:
    """Per-epoch cost points logged by RUNNING child runs (0 while the store is not there yet)."""
    if not db.exists():
        return 0
    try:
        return _query(
            db,
            "select count(*) from metrics m join runs r on r.run_uuid = m.run_uuid "
            "join tags t on t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId' "
            "where r.status = 'RUNNING' and m.key = 'cost'",
        )[0][0]
    except sqlite3.OperationalError:  # tables still being created
        return 0


def _wait_for_epochs(db: Path, proc: subprocess.Popen, log: Path, epochs: int = 3) -> None:
    """Until RUNNING child runs have logged `epochs` epochs; fails if the command dies first or
    takes longer than STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while _child_epochs_logged(db) < epochs:
        assert proc.poll() is None, log.read_text()[-3000:]
        if time.monotonic() > deadline:
            pytest.fail(f"no child run logged {epochs} epochs in {STARTUP_SECONDS} s")
        time.sleep(0.2)


def _wait_until(condition, seconds: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {seconds} s")
        time.sleep(poll)


@pytest.fixture(scope="module")
def bigger_idx(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("idx-interrupt"), n_train=600, n_test=100)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.timeout(1200)  # start, unwind, then a whole run
def test_signal_during_training_ends_runs_killed_and_the_next_run_works(
    tmp_path, bigger_idx, signum
):
    db = tmp_path / "mlflow.db"
    log = (tmp_path / "actlab.log").open("w")
    proc = _actlab(tmp_path, bigger_idx, epochs=100_000, stdout=log, stderr=subprocess.STDOUT)
    try:
        # mid-training: a child run is RUNNING and has logged a few epochs (100,000 never finish)
        _wait_for_epochs(db, proc, tmp_path / "actlab.log")
        proc.send_signal(signum)
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "actlab.log").read_text()

    assert code == 128 + signum, output[-3000:]
    name = signal.Signals(signum).name
    assert f"interrupted ({name}): this flow run's MLflow runs that were still open" in output

    runs = dict(_query(db, "select name, status from runs"))
    parent = [n for n in runs if n.startswith("compare/")]
    assert len(parent) == 1 and runs[parent[0]] == "KILLED", runs
    assert "RUNNING" not in runs.values(), runs
    # the networks being trained: the tutorial's, stacked in one program (train.stack)
    assert runs["tutorial/softmax/seed=0"] == runs["tutorial/tanh/seed=0"] == "KILLED", runs
    assert _query(db, "pragma integrity_check") == [("ok",)]

    reports = tmp_path / "reports"  # (a signal while the report is written: the test below)
    # the .npz, its cache manifest and its images as bytes (tasks.training.inputs); no part file
    processed = (tmp_path / "data" / "processed").iterdir()
    assert sorted(p.suffix for p in processed) == [".json", ".npz", ".pixels"]

    again = _actlab(tmp_path, bigger_idx, epochs=1, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    report = tmp_path / out.strip().splitlines()[-1].removeprefix("report: ")  # relative
    assert report.is_file() and report.parent.parent == reports
    statuses = _query(db, "select status, count(*) from runs group by status")
    # the interrupted parent and its two children, then a new parent and its 3 children
    assert dict(statuses) == {"KILLED": 3, "FINISHED": 4}, statuses


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_also_stopping_prefects_server_exits_promptly(tmp_path, bigger_idx):
    """A terminal's Ctrl-C reaches the whole process group: the CLI and the temporary Prefect
    server it started. Prefect then retries reporting to the stopped server for about a minute;
    the CLI leaves a few seconds after the MLflow runs are ended instead."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # its own temporary server and database
    db = tmp_path / "mlflow.db"
    log = (tmp_path / "actlab.log").open("w")
    proc = _actlab(
        tmp_path, bigger_idx, epochs=100_000, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as a terminal gives
    )  # fmt: skip
    try:
        _wait_for_epochs(db, proc, tmp_path / "actlab.log")
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
        code = proc.wait(timeout=45)  # Prefect's retries alone took over a minute here
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    output = (tmp_path / "actlab.log").read_text()
    assert code == 130, output[-3000:]
    runs = dict(_query(db, "select name, status from runs"))
    assert "RUNNING" not in runs.values() and "KILLED" in runs.values(), runs
    assert _query(db, "pragma integrity_check") == [("ok",)]


@pytest.mark.slow
def test_a_signal_while_the_report_is_written_leaves_no_report_that_looks_complete(
    tmp_path, bigger_idx
):
    """SIGTERM once the report's folder is being assembled (under a temporary name): no folder
    named after the run, no `latest` link, no temporary folder left; the parent run is KILLED."""
    reports = tmp_path / "reports"
    log = (tmp_path / "actlab.log").open("w")
    proc = _actlab(tmp_path, bigger_idx, epochs=1, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until(
            lambda: proc.poll() is not None or any(reports.glob(".*.tmp-*")),
            STARTUP_SECONDS,
            "the report was not started",
            poll=0.01,
        )
        assert proc.poll() is None, "the run ended before its report could be interrupted"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "actlab.log").read_text()

    assert code == 128 + signal.SIGTERM, output[-3000:]
    assert sorted(p.name for p in reports.iterdir()) == []  # no report, no link, no temporary
    runs = dict(_query(tmp_path / "mlflow.db", "select name, status from runs"))
    parent = [n for n in runs if n.startswith("compare/")]
    assert len(parent) == 1 and runs[parent[0]] == "KILLED", runs
    assert "RUNNING" not in runs.values(), runs


def _parent_tags(db: Path) -> tuple[str, dict[str, str]]:
    (run_id,) = [r for (r,) in _query(db, "select run_uuid from runs where name like 'compare/%'")]
    return run_id, dict(_query(db, f"select key, value from tags where run_uuid = '{run_id}'"))


def _alive(pid: int, start: float) -> bool:
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() == start
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.timeout(900)  # a start of up to STARTUP_SECONDS, then two commands
def test_kill_9_leaves_no_server_behind_and_the_next_command_marks_the_runs_failed(
    tmp_path, bigger_idx
):
    """What the out-of-memory killer, a power cut or a CI hard limit does: no way out for the
    command. Its temporary Prefect server must not outlive it, and `actlab runs` must not go on
    showing the run as RUNNING."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # its own temporary server and database
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a busy machine
    db = tmp_path / "mlflow.db"
    log = (tmp_path / "actlab.log").open("w")
    proc = _actlab(
        tmp_path, bigger_idx, epochs=100_000, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its group: the cleanup below can end whatever it left
    )  # fmt: skip
    try:
        _wait_for_epochs(db, proc, tmp_path / "actlab.log")
        parent_id, tags = _parent_tags(db)
        assert tags["process.pid"] == str(proc.pid)
        server_pid = int(tags["process.prefect_server_pid"])
        server = psutil.Process(server_pid)
        server_start = server.create_time()
        assert "prefect.server.api.server" in " ".join(server.cmdline())

        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL

        # the temporary server dies with the command, within seconds
        _wait_until(
            lambda: not _alive(server_pid, server_start), 30, "the Prefect server outlived it"
        )
        # nothing could close the runs on the way out
        assert _query(db, f"select status from runs where run_uuid = '{parent_id}'") == [
            ("RUNNING",)
        ]
        # the weights a finished network would have left (none finishes in 100,000 epochs)
        weights = run_weights_dir(tmp_path / "data", parent_id)
        weights.mkdir(parents=True, exist_ok=True)
        (weights / "finished-child.npz").write_bytes(b"weights")

        # the next command that opens the store closes them
        done = subprocess.run(
            [str(Path(sys.executable).with_name("actlab")), "runs", "-p", str(PARAMS)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        log.close()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its group still there
        except ProcessLookupError:
            pass
    output = (tmp_path / "actlab.log").read_text()
    assert done.returncode == 0, done.stderr[-3000:] + output[-3000:]
    assert f"note: run {parent_id} marked FAILED: its process (pid {proc.pid}" in done.stderr
    (row,) = [line for line in done.stdout.splitlines() if parent_id in line]
    assert "| FAILED" in row and f"killed without warning (pid {proc.pid} gone)" in row
    runs = _query(db, "select name, status from runs")
    assert "RUNNING" not in dict(runs).values(), runs
    reasons = dict(_query(db, "select run_uuid, value from tags where key = 'status_reason'"))
    assert "killed without warning" in reasons[parent_id]
    child = _query(db, "select run_uuid from runs where name = 'tutorial/softmax/seed=0'")[0][0]
    assert "the flow run's process" in reasons[child]
    assert dict(runs)["tutorial/softmax/seed=0"] == "FAILED"
    assert not weights.exists()
    assert _query(db, "pragma integrity_check") == [("ok",)]
