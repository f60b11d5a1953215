"""Reading a comparison back from MLflow: a hand-made store, no training."""

import shutil

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from tasks.report.publish import rebuild_report
from tasks.steps import build_report
from tasks.tracking.records import RecordError, load_comparison, read_startup
from tasks.tracking.runs import RunContext
from tests.conftest import log_test_predictions


def _child(client, experiment, parent, model, activation, seed, costs, accuracy, status="ok"):
    run = client.create_run(
        experiment,
        run_name=f"{model}/{activation}/seed={seed}",
        tags={"mlflow.parentRunId": parent, "status": status},
    )
    run_id = run.info.run_id
    params = {"model": model, "activation": activation, "seed": seed, "init": "he_normal"}
    params |= {"learning_rate": 0.1, "layer_sizes": "[784, 64, 10]"}
    metrics = [Metric("cost", c, 0, e) for e, c in enumerate(costs)]
    metrics += [Metric("val_accuracy", 0.5 + 0.1 * e, 0, e) for e in range(len(costs))]
    metrics += [Metric("epoch_seconds", 2.0, 0, e) for e in range(len(costs))]
    tags = []
    if status == "diverged":
        tags = [RunTag("diverged_epoch", str(len(costs) - 1)), RunTag("status_reason", "nan")]
    else:
        metrics += [Metric("test_accuracy", accuracy, 0, 0), Metric("test_loss", 0.4, 0, 0)]
        metrics += [Metric("test_accuracy_class_0", 0.7, 0, 0)]
        metrics += [Metric("test_accuracy_class_1", 0.9, 0, 0)]
        client.log_dict(run_id, {"matrix": [[7, 3], [1, 9]]}, "confusion_matrix.json")
        right = np.arange(100) < round(accuracy * 100)  # 100 test images, all of class 1
        log_test_predictions(client, run_id, np.where(right, 1, 0), np.ones(100, np.uint8))
    client.log_batch(
        run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()], tags=tags
    )
    client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory, _empty_store):
    """One store for the module (made from the session's empty one: MLflow's migrations take
    seconds). Read only."""
    tmp_path = tmp_path_factory.mktemp("store")
    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "mlruns").as_uri())
    parent = client.create_run(experiment, tags={"dataset.name": "fashion-mnist"}).info.run_id
    config = {"train": {"epochs": 2}, "models": {"mlp": {"hidden_units": [64]}}}
    client.log_dict(parent, {**config, "sweep": {"baseline": "relu"}}, "config.json")
    children = [
        _child(client, experiment, parent, "mlp", "relu", 0, [1.0, 0.5], 0.80),
        _child(client, experiment, parent, "mlp", "relu", 1, [1.1, 0.6], 0.82),
        _child(client, experiment, parent, "mlp", "gelu", 0, [0.9, 0.4], 0.85),
        _child(client, experiment, parent, "mlp", "gelu", 1, [0.9, 0.45], 0.86),
        _child(client, experiment, parent, "mlp", "tanh", 0, [float("nan")], None, "diverged"),
    ]
    client.set_terminated(parent, "FINISHED")
    return uri, experiment, parent, children


def test_results_and_context_come_from_the_recorded_runs(store):
    uri, _, parent, children = store
    results, context = load_comparison(uri, parent)
    assert [r["run_id"] for r in results] == children  # in the order they were trained
    gelu = next(r for r in results if r["activation"] == "gelu" and r["seed"] == 1)
    assert gelu["costs"] == [0.9, 0.45] and gelu["val_accuracies"] == [0.5, 0.6]
    assert gelu["test_accuracy"] == 0.86 and gelu["final_cost"] == 0.45
    assert gelu["class_accuracy"] == [0.7, 0.9]
    assert gelu["confusion_matrix"] == [[7, 3], [1, 9]]
    assert gelu["seconds_per_epoch"] == 2.0 and gelu["epochs_run"] == 2
    # its learning rate, layers and test predictions: what the report compares networks by
    assert gelu["learning_rate"] == 0.1
    assert (gelu["layer_sizes"], gelu["depth"]) == ([784, 64, 10], 1)
    assert gelu["test_predictions"].dtype == np.uint8 and len(gelu["test_labels"]) == 100
    assert (gelu["test_predictions"] == gelu["test_labels"]).mean() == 0.86
    tanh = next(r for r in results if r["activation"] == "tanh")
    assert (tanh["status"], tanh["diverged_epoch"]) == ("diverged", 0)
    assert context["dataset"] == "fashion-mnist" and context["baseline"] == "relu"
    assert context["hidden_units"] == [64] and context["epochs"] == 2


def test_the_report_is_rebuilt_from_mlflow_and_the_baseline_can_be_changed(store, tmp_path):
    uri, experiment, parent, _ = store
    run = RunContext(tracking_uri=uri, experiment_id=experiment, parent_run_id=parent)
    folder = build_report.fn(run, tmp_path / "reports")
    table = pd.read_csv(f"{folder}/results.csv")
    assert len(table) == 5 and table["activation"].iloc[-1] == "tanh"  # diverged last
    markdown = open(f"{folder}/report.md", encoding="utf-8").read()
    # two seeds: gelu 0.85, 0.86 against relu 0.80, 0.82, right on every image relu gets right:
    # pooled, images 80..85 count for gelu, none against (McNemar p = 2 / 2^6), ahead on both
    assert "best is `gelu` on fashion-mnist with one hidden layer of 64 units" in markdown
    assert "the baseline `relu` (`sweep.baseline`)" in markdown
    summary = pd.read_csv(f"{folder}/summary.csv").set_index("activation")
    assert summary.loc["relu", "note"] == "the baseline"
    assert summary.loc["gelu", "test"] == "McNemar"
    assert summary.loc["relu", "p_vs_best"] == pytest.approx(2 / 2**6)

    again = rebuild_report(uri, parent, tmp_path / "reports", baseline="gelu")
    assert str(again) == str(folder) and again.folder == folder.folder
    assert "`gelu` (`sweep.baseline`)" in (again.folder / "report.md").read_text(encoding="utf-8")
    assert folder.answer[0].startswith("**mlp**: best is `gelu`")  # the answer comes back too
    assert folder.answer[0] in markdown
    summary = pd.read_csv(again.folder / "summary.csv").set_index("activation")
    assert summary.loc["gelu", "note"] == "the baseline"
    with pytest.raises(ValueError, match="baseline 'selu' was not trained"):
        rebuild_report(uri, parent, tmp_path / "reports", baseline="selu")


def test_a_child_or_unknown_run_id_is_refused_with_what_it_is(store, tmp_path):
    uri, _, parent, children = store
    with pytest.raises(
        RecordError, match=f"is a child run; its comparison is the parent run '{parent}'"
    ):
        load_comparison(uri, children[0])
    with pytest.raises(RecordError, match="is not in the MLflow store"):
        load_comparison(uri, "0" * 32)
    missing = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    with pytest.raises(RecordError, match="no MLflow store at"):
        load_comparison(missing, parent)
    assert not (tmp_path / "elsewhere.db").exists()  # nothing created by looking


def test_per_class_accuracy_is_read_under_its_current_name_too(tmp_path):
    """Runs logged since the rename (z_test_accuracy_class_<k>) and before it (the store above,
    test_accuracy_class_<k>) read back alike."""
    from tasks.tracking.records import result_from_run
    from tasks.tracking.runs import CLASS_METRIC

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "mlruns").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_batch(run_id, metrics=[Metric(CLASS_METRIC.format(k), k / 10, 0, 0) for k in (0, 1)])
    assert result_from_run(client, client.get_run(run_id))["class_accuracy"] == [0.0, 0.1]


def _same(a, b) -> bool:
    """Equal, NaN equal to NaN, arrays by value: two readings of one result."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def test_the_direct_sqlite_reading_equals_mlflows_own(tmp_path, _empty_store, monkeypatch):
    """NaN (stored as 0 with is_nan), infinities (stored clipped), a step logged twice (the latest
    wins) and per-layer series read the same straight from SQLite as through MlflowClient."""
    from tasks.tracking import records

    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "mlruns").as_uri())
    parent = client.create_run(experiment).info.run_id
    child = _child(client, experiment, parent, "mlp", "relu", 0, [1.0, float("nan")], 0.8)
    client.log_batch(
        child,
        metrics=[
            Metric("cost", 0.25, 5, 1),  # step 1 again, later: this value wins
            Metric("layer1.dead_fraction", 0.5, 0, 0),
            Metric("layer1.dead_fraction", 0.6, 0, 1),
            Metric("output.grad_norm", float("inf"), 0, 0),
            Metric("output.grad_norm", float("-inf"), 0, 1),
        ],
    )
    _child(client, experiment, parent, "mlp", "tanh", 0, [float("nan")], None, "diverged")

    direct, _ = load_comparison(uri, parent)
    read = records.sqlite_histories(uri, [child])[child]
    assert read["cost"] == [1.0, 0.25] and read["layer1.dead_fraction"] == [0.5, 0.6]
    monkeypatch.setattr(records, "sqlite_histories", lambda uri, ids: {})  # MLflow's reading
    through_mlflow, _ = load_comparison(uri, parent)

    assert _same(direct, through_mlflow)
    relu = direct[0]
    assert relu["costs"] == [1.0, 0.25]
    assert relu["diagnostics"]["output.grad_norm"] == [float("inf"), float("-inf")]
    assert np.isnan(direct[1]["costs"][0])  # the diverged run's NaN cost


def _as_compared(run) -> tuple:
    """What the report reads of a run, with NaN made comparable: two equal tuples = the same."""
    info = run.info
    fields = (info.run_id, info.experiment_id, info.status, info.start_time, info.run_name)
    metrics = {k: "nan" if np.isnan(v) else v for k, v in run.data.metrics.items()}
    return (*fields, info.artifact_uri), metrics, dict(run.data.params), dict(run.data.tags)


def test_child_runs_read_from_sqlite_equal_mlflows_search(tmp_path, _empty_store):
    """A SQLite store's child runs, read straight from its tables, are MLflow's search's: the
    same runs (not another parent's, another experiment's or a deleted one), in training order,
    with the same info, params, tags and latest metrics (NaN, infinities, a step logged twice)."""
    from tasks.tracking import records

    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("t", artifact_location=(tmp_path / "mlruns").as_uri())
    elsewhere = client.create_experiment("u", artifact_location=(tmp_path / "u").as_uri())
    parent = client.create_run(experiment).info.run_id
    other = client.create_run(experiment).info.run_id
    ok = _child(client, experiment, parent, "mlp", "relu", 0, [1.0, float("nan")], 0.8)
    client.log_batch(
        ok, metrics=[Metric("cost", 0.25, 5, 1), Metric("output.grad_norm", float("inf"), 0, 0)]
    )
    _child(client, experiment, parent, "mlp", "tanh", 0, [float("nan")], None, "diverged")
    running = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    deleted = _child(client, experiment, parent, "mlp", "gelu", 0, [0.5], 0.7)
    client.delete_run(deleted)
    _child(client, experiment, other, "mlp", "elu", 0, [0.5], 0.7)
    _child(client, elsewhere, parent, "mlp", "selu", 0, [0.5], 0.7)

    parent_run = records.get_parent(client, parent)
    direct = records.child_runs(client, parent_run)
    searched = sorted(
        records._searched_child_runs(client, parent_run),
        key=lambda r: (r.info.start_time, r.info.run_name),
    )
    assert records.sqlite_child_runs(uri, parent_run) is not None  # the direct reading was used
    assert [_as_compared(r) for r in direct] == [_as_compared(r) for r in searched]
    assert len(direct) == 3 and direct[2].info.run_id == running
    assert direct[0].data.metrics["cost"] == 0.25 and direct[0].data.metrics["output.grad_norm"]
    assert np.isnan(direct[1].data.metrics["cost"])
    assert records.sqlite_child_runs("http://127.0.0.1:5000", parent_run) is None  # a server


def test_artifacts_on_another_machine_are_downloaded_through_mlflow(store, monkeypatch):
    """A run whose artifacts are not local (a tracking server's) is read through MLflow."""
    from tasks.tracking import records

    uri, _, parent, _ = store
    local, _ = load_comparison(uri, parent)
    monkeypatch.setattr(records, "local_artifacts", lambda artifact_uri: None)
    downloaded, _ = load_comparison(uri, parent)
    assert _same(local, downloaded)
    assert downloaded[0]["confusion_matrix"] == [[7, 3], [1, 9]]
    assert len(downloaded[0]["test_predictions"]) == 100


def test_the_startup_is_the_command_start_to_the_first_epoch_of_any_child(sqlite_store):
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("startup")
    started = "2026-11-29T20:00:00.000+00:00"  # process.start_time, as tasks.tracking.reconcile
    parent = client.create_run(experiment, tags={"process.start_time": started}).info.run_id
    t0 = 1_795_982_400_000  # the same instant, in ms
    for name, ended_ms, seconds in (("a", t0 + 9_500, 0.5), ("b", t0 + 12_000, 0.25)):
        child = client.create_run(experiment, tags={"mlflow.parentRunId": parent}, run_name=name)
        points = [Metric("epoch_seconds", seconds, ended_ms + 1000 * e, e) for e in range(3)]
        client.log_batch(child.info.run_id, metrics=points)

    startup = read_startup(sqlite_store, parent)

    assert startup.first_epoch_ended == pytest.approx(t0 / 1000 + 9.5)
    assert startup.to_first_epoch == pytest.approx(9.0)  # its epoch began 0.5 s before it ended
    untrained = client.create_run(experiment, tags={"process.start_time": started}).info.run_id
    with pytest.raises(RecordError, match="recorded no epoch"):
        read_startup(sqlite_store, untrained)
