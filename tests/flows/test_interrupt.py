"""Ctrl-C or SIGTERM in the middle of training: `actlab run` in a child process, signalled once a
child MLflow run has logged epochs. The runs end KILLED, the SQLite store stays sound, no report
looks complete, and the next run works."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL

from tests.flows.conftest import PARAMS
from tests.idx import make_dataset


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
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
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


@pytest.fixture(scope="module")
def bigger_idx(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("idx-interrupt"), n_train=600, n_test=100)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_training_ends_runs_killed_and_the_next_run_works(
    tmp_path, bigger_idx, signum
):
    db = tmp_path / "mlflow.db"
    log = (tmp_path / "actlab.log").open("w")
    proc = _actlab(tmp_path, bigger_idx, epochs=100_000, stdout=log, stderr=subprocess.STDOUT)
    try:
        # mid-training: a child run is RUNNING and has logged a few epochs (100,000 never finish)
        while _child_epochs_logged(db) < 3:
            assert proc.poll() is None, (tmp_path / "actlab.log").read_text()[-3000:]
            time.sleep(0.2)
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
    assert runs["tutorial/softmax/seed=0"] == "KILLED", runs  # the network being trained
    assert _query(db, "pragma integrity_check") == [("ok",)]

    reports = tmp_path / "reports"
    assert not reports.exists() or list(reports.iterdir()) == []  # nothing that looks complete
    # the .npz and its cache manifest, no half-written file
    processed = (tmp_path / "data" / "processed").iterdir()
    assert sorted(p.suffix for p in processed) == [".json", ".npz"]

    again = _actlab(tmp_path, bigger_idx, epochs=1, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    report = tmp_path / out.strip().splitlines()[-1].removeprefix("report: ")  # relative
    assert report.is_file() and report.parent.parent == reports
    statuses = _query(db, "select status, count(*) from runs group by status")
    # the interrupted parent and its child, then a new parent and its 3 children
    assert dict(statuses) == {"KILLED": 2, "FINISHED": 4}, statuses


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
        while _child_epochs_logged(db) < 3:
            assert proc.poll() is None, (tmp_path / "actlab.log").read_text()[-3000:]
            time.sleep(0.2)
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
