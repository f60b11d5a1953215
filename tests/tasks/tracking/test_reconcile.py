"""tasks/tracking/reconcile.py: runs whose process died unseen are found and closed; live ones,
and runs of other hosts, are left alone. (The real `kill -9` of `actlab run`:
tests/flows/test_interrupt.py.)"""

import os
import socket
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import psutil
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.paths import run_weights_dir
from tasks.tracking import reconcile
from tasks.tracking.listing import MlflowReader, SqliteReader
from tasks.tracking.records import sqlite_histories

PARENT = "mlflow.parentRunId"
FAKE_SERVER = [sys.executable, "-c", "import time; time.sleep(120)", "prefect.server.api.server"]


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _sleeper(*extra: str) -> subprocess.Popen:
    return subprocess.Popen(FAKE_SERVER if extra else [*FAKE_SERVER[:3]])


@pytest.fixture
def dead_process():
    """(pid, start time) of a process that ran and is gone (reaped)."""
    proc = _sleeper()
    start = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait(timeout=10)
    return proc.pid, start


@pytest.fixture
def fake_server():
    """A process whose command line reads like Prefect's temporary server."""
    proc = _sleeper("server")
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def _process(pid: int, start: float, host: str | None = None) -> dict[str, str]:
    return {
        reconcile.HOST: host or socket.gethostname(),
        reconcile.PID: str(pid),
        reconcile.START: _iso(start),
    }


def _parent(client, experiment, tags, data_dir=None) -> str:
    run_id = client.create_run(experiment, tags=tags).info.run_id
    if data_dir is not None:
        client.log_param(run_id, "data.dir", str(data_dir))
    return run_id


def _child(client, experiment, parent: str, finished: bool = False) -> str:
    run_id = client.create_run(experiment, tags={PARENT: parent, "status": "running"}).info.run_id
    if finished:
        client.set_terminated(run_id, "FINISHED")
    return run_id


def test_parent_run_records_the_process_that_logs_it(monkeypatch):
    monkeypatch.setattr(reconcile, "_TEMPORARY_SERVER", None)
    tags = reconcile.process_tags()
    assert tags[reconcile.HOST] == socket.gethostname()
    assert tags[reconcile.PID] == str(os.getpid())
    started = datetime.fromisoformat(tags[reconcile.START]).timestamp()
    assert started == pytest.approx(psutil.Process().create_time(), abs=0.01)
    assert tags[reconcile.CWD] == os.getcwd()
    assert reconcile.SERVER_PID not in tags  # no temporary Prefect server in this process


def test_the_temporary_prefect_server_is_recorded_too(monkeypatch, fake_server):
    monkeypatch.setattr(reconcile, "_TEMPORARY_SERVER", None)
    reconcile.register_temporary_server(fake_server.pid)
    tags = reconcile.process_tags()
    assert tags[reconcile.SERVER_PID] == str(fake_server.pid)
    started = datetime.fromisoformat(tags[reconcile.SERVER_START]).timestamp()
    assert started == pytest.approx(psutil.Process(fake_server.pid).create_time(), abs=0.01)
    fake_server.kill()
    fake_server.wait(timeout=10)
    assert reconcile.SERVER_PID not in reconcile.process_tags()  # once it is gone: not recorded


def test_runs_whose_process_is_gone_are_marked_failed_and_nothing_else(
    tmp_path, sqlite_store, dead_process, fake_server
):
    uri = sqlite_store
    client = MlflowClient(uri)
    experiment = client.create_experiment("reconcile", (tmp_path / "mlruns").as_uri())
    server = psutil.Process(fake_server.pid)
    dead_tags = _process(*dead_process) | {
        reconcile.SERVER_PID: str(fake_server.pid),
        reconcile.SERVER_START: _iso(server.create_time()),
    }
    data = tmp_path / "data"
    dead = _parent(client, experiment, dead_tags, data_dir=data)
    open_child = _child(client, experiment, dead)
    done_child = _child(client, experiment, dead, finished=True)
    weights = run_weights_dir(data, dead)
    weights.mkdir(parents=True)
    (weights / f"{open_child}.npz").write_bytes(b"scratch")
    me = psutil.Process()
    live = _parent(client, experiment, _process(me.pid, me.create_time()))
    live_child = _child(client, experiment, live)
    # this very pid, but a process that started a day earlier: the pid was reused
    reused = _parent(client, experiment, _process(me.pid, me.create_time() - 86_400))
    elsewhere = _parent(client, experiment, _process(*dead_process, host="another-host"))
    untagged = _parent(client, experiment, {})

    notes = reconcile.reconcile_killed_runs(uri, "runs")

    assert len(notes) == 2, notes
    (note,) = [n for n in notes if dead in n]
    assert f"run {dead} marked FAILED: its process (pid {dead_process[0]}" in note
    assert "1 open child run(s) too" in note
    assert f"stopped its orphaned Prefect server (pid {fake_server.pid})" in note
    status = {r: client.get_run(r).info.status for r in (dead, open_child, done_child, reused)}
    assert status == {
        dead: "FAILED",
        open_child: "FAILED",
        done_child: "FINISHED",
        reused: "FAILED",
    }
    reason = client.get_run(dead).data.tags["status_reason"]
    assert reason.startswith(f"its process (pid {dead_process[0]} on {socket.gethostname()}")
    assert "killed without warning" in reason and "marked FAILED by `actlab runs`" in reason
    assert "the flow run's process" in client.get_run(open_child).data.tags["status_reason"]
    assert "status_reason" not in client.get_run(done_child).data.tags
    for untouched in (live, live_child, elsewhere, untagged):
        assert client.get_run(untouched).info.status == "RUNNING"
    assert fake_server.wait(timeout=10) is not None  # the orphaned server was stopped
    assert not weights.exists() and data.joinpath("weights").is_dir()

    assert reconcile.reconcile_killed_runs(uri, "runs") == []  # nothing left to do


def test_a_pid_alive_with_another_command_is_not_stopped(tmp_path, dead_process):
    """The server's pid and start time match, its command line does not: leave it be."""
    bystander = _sleeper()
    try:
        start = psutil.Process(bystander.pid).create_time()
        assert not reconcile.stop_prefect_server(bystander.pid, start)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait(timeout=10)


def test_both_readers_list_the_same_running_parents(tmp_path, sqlite_store, dead_process):
    uri = sqlite_store
    client = MlflowClient(uri)
    a = client.create_experiment("a", (tmp_path / "mlruns").as_uri())
    b = client.create_experiment("b", (tmp_path / "mlruns").as_uri())
    running = [_parent(client, a, {}), _parent(client, b, _process(*dead_process))]
    finished = _parent(client, a, {})
    client.set_terminated(finished, "FINISHED")
    _child(client, a, running[0])

    for reader in (SqliteReader(tmp_path / "mlflow.db"), MlflowReader(uri)):
        assert sorted(r.info.run_id for r in reader.running_parents()) == sorted(running)


def test_actlab_runs_shows_a_killed_run_as_failed(tmp_path, sqlite_store, dead_process):
    uri = sqlite_store
    client = MlflowClient(uri)
    experiment = client.create_experiment("killed", (tmp_path / "mlruns").as_uri())
    dead = _parent(client, experiment, _process(*dead_process) | {"grid_size": "2"})
    _child(client, experiment, dead)

    result = CliRunner().invoke(
        app, ["runs", "--set", f"tracking.uri={uri}", "--set", "tracking.experiment=killed"]
    )

    assert result.exit_code == 0, result.output
    assert f"note: run {dead} marked FAILED" in result.stderr
    (row,) = [line for line in result.stdout.splitlines() if dead in line]
    assert "| FAILED" in row and f"killed without warning (pid {dead_process[0]} gone)" in row


HALF_WRITTEN = """
import os, signal, sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA cache_size = 1")  # pages spill into the database file before the commit
con.execute("BEGIN IMMEDIATE")
con.execute("UPDATE runs SET status = 'KILLED'")
con.execute("CREATE TABLE filler (x)")
for _ in range(500):
    con.execute("INSERT INTO filler VALUES (?)", (b"x" * 1000,))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_a_store_killed_in_the_middle_of_a_write_is_read_and_reconciled(
    tmp_path, sqlite_store, dead_process, journal
):
    """`kill -9` while MLflow writes leaves the write's pages beside mlflow.db: uncommitted frames
    in `mlflow.db-wal` (the store as this project opens it, tasks.tracking.store), or a hot
    journal (a store in the rollback-journal mode, e.g. made before). The next command must read
    the store as it was before that write (a hot journal rolled back: a `mode=ro` reader cannot,
    "attempt to write a readonly database"), then close the dead run."""
    uri = sqlite_store
    client = MlflowClient(uri)
    experiment = client.create_experiment("killed", (tmp_path / "mlruns").as_uri())
    dead = _parent(client, experiment, _process(*dead_process))
    child = _child(client, experiment, dead)
    client.log_metric(child, "cost", 0.5, step=0)
    db = tmp_path / "mlflow.db"
    client._tracking_client.store.engine.dispose()
    with sqlite3.connect(db) as con:
        con.execute(f"PRAGMA journal_mode={journal}")
    con.close()
    killed = subprocess.run([sys.executable, "-c", HALF_WRITTEN, str(db)], timeout=60)
    assert killed.returncode == -9
    left = tmp_path / ("mlflow.db-wal" if journal == "wal" else "mlflow.db-journal")
    assert left.stat().st_size > 0  # the killed write's pages

    assert [r.info.run_id for r in SqliteReader(db).running_parents()] == [dead]
    assert sqlite_histories(uri, [child]) == {child: {"cost": [0.5]}}
    result = CliRunner().invoke(
        app, ["runs", "--set", f"tracking.uri={uri}", "--set", "tracking.experiment=killed"]
    )

    assert result.exit_code == 0, result.output
    assert f"note: run {dead} marked FAILED" in result.stderr
    assert client.get_run(dead).info.status == "FAILED"
    assert not (tmp_path / "mlflow.db-journal").exists()
    with sqlite3.connect(db) as con:  # nothing of the killed write
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        statuses = {r[0] for r in con.execute("SELECT status FROM runs")}
    con.close()
    assert "filler" not in tables and "KILLED" not in statuses
