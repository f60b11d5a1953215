"""tasks/commands/browse.py, `actlab runs` and `actlab ui`: recent parent runs and their URLs."""

import time

import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from tasks.commands.browse import latest_parent_url, runs_table
from tasks.tracking.listing import MlflowReader, SqliteReader, reader_for

runner = CliRunner()
PARAMS_SETS = ["--set", "tracking.experiment=browse"]


@pytest.fixture
def store(tmp_path, sqlite_store):
    """Two parent runs with children, as the flow logs them; returns (uri, [older, newer] ids)."""
    uri = sqlite_store
    client = MlflowClient(uri)
    experiment = client.create_experiment("browse", (tmp_path / "mlruns").as_uri())
    parents = []
    for i, children in enumerate(
        [
            [("mlp", "relu", "ok", 0.91), ("mlp", "tanh", "ok", 0.88)],
            [("tutorial", "softmax", "ok", 0.84), ("tutorial", "relu", "diverged", 0.99)],
        ]
    ):
        parent = client.create_run(experiment, start_time=1_700_000_000_000 + i * 60_000)
        pid = parent.info.run_id
        client.set_tag(pid, "grid_size", str(len(children)))
        for model, activation, status, accuracy in children:
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
            client.log_batch(cid, metrics=[Metric("test_accuracy", accuracy, now, 0)])
            client.set_terminated(cid)
        if i == 0:
            client.set_terminated(pid, "FINISHED")
        parents.append(pid)
    return uri, parents


@pytest.mark.parametrize("reader", [SqliteReader, MlflowReader], ids=["sqlite", "mlflow"])
def test_runs_table_lists_parents_newest_first_with_the_best_ok_activation(store, reader):
    uri, (older, newer) = store
    table = runs_table(reader_for(uri) if reader is SqliteReader else MlflowReader(uri), "browse")

    assert list(table["run_id"]) == [newer, older]
    assert list(table["grid"]) == ["2", "2"]
    # a diverged run never wins, whatever its accuracy says
    assert list(table["best"]) == ["tutorial: softmax 0.840", "mlp: relu 0.910"]
    assert list(table["status"]) == ["RUNNING", "FINISHED"]
    assert table.loc[1, "start"] == "2023-11-14 22:13:20"
    assert runs_table(reader_for(uri), "no-such-experiment").empty


def test_latest_parent_url_points_at_the_newest_parent_run(store):
    uri, (_, newer) = store
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


def test_a_missing_store_lists_nothing_and_is_not_created(tmp_path):
    reader = reader_for(f"sqlite:///{tmp_path / 'none.db'}")
    assert reader.recent_parents("browse", 10) == []
    assert not (tmp_path / "none.db").exists()


def test_actlab_runs_prints_the_table(store, tmp_path, monkeypatch):
    uri, (older, newer) = store
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["runs", "--set", f"tracking.uri={uri}", *PARAMS_SETS, "-p", _p()])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "run_id" in lines[0] and "best" in lines[0] and "status" in lines[0]
    assert newer in lines[2] and older in lines[3]


def test_actlab_ui_prints_the_latest_run_url_then_starts_mlflow(store, tmp_path, monkeypatch):
    uri, (_, newer) = store
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
