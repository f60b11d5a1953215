"""tasks/commands/browse.py, `actlab runs` and `actlab ui`: recent parent runs and their URLs."""

import time

import numpy as np
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from tasks.commands.browse import latest_parent_url, runs_table
from tasks.tracking.listing import MlflowReader, SqliteReader, reader_for
from tests.conftest import log_test_predictions

runner = CliRunner()
PARAMS_SETS = ["--set", "tracking.experiment=browse"]


def _predictions(n_right: int, swap: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1,000 test images of class 0, right on the first `n_right` (then `swap` more on the next
    images, `swap` fewer before): two such networks differ on known images."""
    right = np.arange(1000) < n_right
    right[n_right - swap : n_right] = False
    right[n_right : n_right + swap] = True
    return np.where(right, 0, 1), np.zeros(1000, np.uint8)


@pytest.fixture
def store(tmp_path, sqlite_store):
    """Parent runs with children, as the flow logs them (test predictions included, but in the
    oldest); returns (uri, parent ids oldest first)."""
    uri = sqlite_store
    client = MlflowClient(uri)
    experiment = client.create_experiment("browse", (tmp_path / "mlruns").as_uri())
    parents = []
    for i, children in enumerate(
        [
            # recorded before test predictions were: one seed cannot be tested
            [("mlp", "relu", "ok", 910, 0, False), ("mlp", "tanh", "ok", 880, 0, False)],
            [("mlp", "relu", "ok", 910, 0, True), ("mlp", "tanh", "ok", 880, 0, True)],
            [
                ("tutorial", "softmax", "ok", 840, 0, True),
                ("tutorial", "relu", "diverged", 990, 0, True),
            ],
            # 1 image apart each way and 1 more for relu: McNemar cannot tell them apart
            [("mlp", "relu", "ok", 870, 0, True), ("mlp", "leaky_relu", "ok", 869, 1, True)],
        ]
    ):
        parent = client.create_run(experiment, start_time=1_700_000_000_000 + i * 60_000)
        pid = parent.info.run_id
        client.set_tag(pid, "grid_size", str(len(children)))
        for model, activation, status, n_right, swap, predicted in children:
            child = client.create_run(
                experiment,
                tags={
                    "mlflow.parentRunId": pid,
                    "model": model,
                    "activation": activation,
                    "status": status,
                },
            )
            cid = child.info.run_id
            now = int(time.time() * 1000)
            client.log_batch(cid, metrics=[Metric("test_accuracy", n_right / 1000, now, 0)])
            if predicted and status == "ok":
                log_test_predictions(client, cid, *_predictions(n_right, swap))
            client.set_terminated(cid)
        if i < 2:
            client.set_terminated(pid, "FINISHED")
        parents.append(pid)
    return uri, parents


@pytest.mark.parametrize("reader", [SqliteReader, MlflowReader], ids=["sqlite", "mlflow"])
def test_runs_table_lists_parents_newest_first_with_the_best_ok_activation(store, reader):
    uri, (unpredicted, older, newer, tied) = store
    table = runs_table(reader_for(uri) if reader is SqliteReader else MlflowReader(uri), "browse")

    assert list(table["run_id"]) == [tied, newer, older, unpredicted]
    assert list(table["grid"]) == ["2", "2", "2", "2"]
    # a diverged run never wins, whatever its accuracy says; a tie is shown as a tie (the
    # report's own McNemar test on the recorded predictions), one seed without them as untested
    assert list(table["best"]) == [
        "mlp: tie relu, leaky_relu 0.869–0.870",
        "tutorial: softmax 0.840",
        "mlp: relu 0.910",
        "mlp: relu 0.910 (untested)",
    ]
    assert list(table["status"]) == ["RUNNING", "RUNNING", "FINISHED", "FINISHED"]
    assert table.loc[3, "start"] == "2023-11-14 22:13:20"
    assert runs_table(reader_for(uri), "no-such-experiment").empty


def test_latest_parent_url_points_at_the_newest_parent_run(store):
    uri, (*_, newer) = store
    url = latest_parent_url(reader_for(uri), "browse", "http://127.0.0.1:5000/")
    experiment = MlflowClient(uri).get_run(newer).info.experiment_id
    assert url == (
        f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{newer}"
        "?workflowType=machine_learning"
    )


def test_both_readers_see_the_same_runs(store):
    uri, _ = store
    direct, mlflow = reader_for(uri), MlflowReader(uri)
    assert isinstance(direct, SqliteReader)
    a, b = direct.recent_parents("browse", 10), mlflow.recent_parents("browse", 10)
    assert [r.info.run_id for r in a] == [r.info.run_id for r in b]
    for pa, pb in zip(a, b, strict=True):
        assert (pa.info.status, pa.info.start_time) == (pb.info.status, pb.info.start_time)
        assert pa.info.experiment_id == pb.info.experiment_id
        ca = sorted(direct.children(pa), key=lambda r: r.info.run_id)
        cb = sorted(mlflow.children(pb), key=lambda r: r.info.run_id)
        assert [c.info.run_id for c in ca] == [c.info.run_id for c in cb] and ca
        for x, y in zip(ca, cb, strict=True):
            assert x.data.tags == y.data.tags
            assert x.data.params == y.data.params
            assert x.data.metrics == y.data.metrics
            assert x.info.status == y.info.status
            assert x.info.artifact_uri == y.info.artifact_uri
            # the test predictions, read from the folder or fetched through MLflow
            px, py = direct.test_predictions(x), mlflow.test_predictions(y)
            assert (px is None) == (py is None)
            if px is not None:
                assert (px[0] == py[0]).all() and (px[1] == py[1]).all() and len(px[0]) == 1000


def test_a_missing_store_lists_nothing_and_is_not_created(tmp_path):
    reader = reader_for(f"sqlite:///{tmp_path / 'none.db'}")
    assert reader.recent_parents("browse", 10) == []
    assert not (tmp_path / "none.db").exists()


def test_actlab_runs_prints_the_table(store, tmp_path, monkeypatch):
    uri, (*_, older, newer) = store
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["runs", "--set", f"tracking.uri={uri}", *PARAMS_SETS, "-p", _p()])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "run_id" in lines[0] and "best" in lines[0] and "status" in lines[0]
    assert newer in lines[2] and older in lines[3]


def test_actlab_ui_prints_the_latest_run_url_then_starts_mlflow(store, tmp_path, monkeypatch):
    uri, (*_, newer) = store
    started = []
    monkeypatch.setattr("flows.cli.os.execv", lambda exe, cmd: started.append(cmd))
    result = runner.invoke(
        app, ["ui", "--set", f"tracking.uri={uri}", *PARAMS_SETS, "-p", _p(), "--port", "5077"]
    )
    assert result.exit_code == 0, result.output
    assert "latest run: http://127.0.0.1:5077/#/experiments/" in result.stdout
    assert result.stdout.strip().endswith(f"/runs/{newer}?workflowType=machine_learning")
    (cmd,) = started
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and "5077" in cmd


def _p() -> str:
    from tests.flows.conftest import PARAMS

    return str(PARAMS)
