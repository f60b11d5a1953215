"""tasks/steps.py: the Prefect tasks are thin wrappers over the plain functions."""

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from tasks import steps
from tasks.core.config import Cell, DataConfig, ModelsConfig, PreprocessConfig
from tasks.core.results import CACHED, RAN, PreparedData, RawDataset, TrainedNetwork
from tasks.data.download import fetch_dataset
from tasks.data.prepare import preprocess_dataset
from tasks.steps import download_dataset, preprocess
from tasks.tracking import records, runs
from tasks.tracking.runs import RunContext
from tasks.training.models import build_network, save_weights


def test_prefect_tasks_wrap_the_functions(idx_folder, tmp_path):
    cfg = DataConfig(source=str(idx_folder), dir=tmp_path / "data")
    raw = download_dataset.fn(cfg)
    assert isinstance(raw, RawDataset)
    again = fetch_dataset(cfg)
    assert (raw.source, raw.name, raw.digest, raw.files) == (
        again.source,
        again.name,
        again.digest,
        again.files,
    )
    assert (raw.stage.status, again.stage.status) == (RAN, CACHED)
    prepared = preprocess.fn(raw, PreprocessConfig(val_size=100), tmp_path)
    assert isinstance(prepared, PreparedData)
    assert prepared.path == preprocess_dataset(raw, PreprocessConfig(val_size=100), tmp_path)
    assert prepared.stage.status == "ran"
    assert (download_dataset.name, preprocess.name) == ("download_dataset", "preprocess")


@pytest.mark.parametrize(
    ("raised", "status"), [(OSError("disk gone"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_a_group_whose_evaluation_stops_leaves_no_run_open(
    tmp_path, sqlite_store, monkeypatch, raised, status
):
    """evaluate_networks scores a stacked group's networks in one task: when reading them fails
    (or Ctrl-C stops it), every run of the group ends as it did."""
    client, experiment, run = _store(tmp_path, sqlite_store)
    group = _trained_group(tmp_path, client, experiment, ("relu", "tanh", "gelu"))

    def load_weights(path):
        raise raised

    monkeypatch.setattr(steps, "load_weights", load_weights)
    with pytest.raises(type(raised)):
        steps.evaluate_networks.fn(group, "mlp/{relu,tanh,gelu}/seed=0", "unused", MODELS, run)

    assert [client.get_run(t.run_id).info.status for t in group] == [status] * 3


MODELS = ModelsConfig(mlp={"hidden_units": [8]})


def _trained_group(tmp_path, client, experiment, activations, diverged=()):
    """Networks as train_networks leaves them: weights saved, child runs open. A `diverged` one
    has NaN weights and that status."""
    group = []
    for activation in activations:
        net = build_network("mlp", activation, MODELS, 0)
        weights = net.numpy_weights()
        if activation in diverged:
            weights[0][0, 0] = np.nan
        path = tmp_path / f"{activation}.npz"
        save_weights(weights, path)
        group.append(
            TrainedNetwork(
                cell=Cell(model="mlp", activation=activation, seed=0),
                run_id=client.create_run(experiment).info.run_id,
                init="auto",
                status="diverged" if activation in diverged else "ok",
                reason="",
                diverged_epoch=0 if activation in diverged else None,
                costs=(0.5,),
                seconds_per_epoch=0.1,
                weights_path=str(path),
            )
        )
    return group


def _store(tmp_path, sqlite_store):
    """(client, experiment id, the parent run's context) in an empty store."""
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("group", (tmp_path / "mlruns").as_uri())
    run = RunContext(
        tracking_uri=sqlite_store,
        experiment_id=experiment,
        parent_run_id=client.create_run(experiment).info.run_id,
    )
    return client, experiment, run


@pytest.fixture
def group_setup(idx_folder, tmp_path, sqlite_store):
    """_store's, and the path of a preprocessed .npz."""
    raw = download_dataset.fn(DataConfig(source=str(idx_folder), dir=tmp_path / "data"))
    data_path = preprocess.fn(raw, PreprocessConfig(val_size=100), tmp_path / "data").path
    return (*_store(tmp_path, sqlite_store), data_path)


def test_a_group_is_scored_as_each_of_its_networks_alone(tmp_path, group_setup):
    """evaluate_networks scores a group in one call: each network gets the very test numbers
    evaluate_network gives it alone; a diverged one is not scored (NaN), and every run ends."""
    client, experiment, run, data_path = group_setup
    activations = ("relu", "tanh", "gelu")
    label = "mlp/{relu,tanh,gelu}/seed=0"
    group = _trained_group(tmp_path, client, experiment, activations, diverged=("tanh",))
    together = steps.evaluate_networks.fn(group, label, data_path, MODELS, run)
    (tmp_path / "again").mkdir()
    again = _trained_group(tmp_path / "again", client, experiment, activations, ("tanh",))
    alone = [steps.evaluate_network.fn(t, data_path, MODELS, run) for t in again]

    for a, b in zip(together, alone, strict=True):
        assert (a.test_loss, a.test_accuracy) == pytest.approx(
            (b.test_loss, b.test_accuracy), abs=0, rel=0, nan_ok=True
        )
    assert np.isnan(together[1].test_accuracy) and np.isfinite(together[0].test_accuracy)
    for a, b in ((together[0], alone[0]), (together[2], alone[2])):
        predicted = [
            records.test_predictions(client, client.get_run(t.trained.run_id)) for t in (a, b)
        ]
        np.testing.assert_array_equal(predicted[0][0], predicted[1][0])
    assert {client.get_run(t.run_id).info.status for t in group + again} == {"FINISHED"}


@pytest.mark.parametrize(
    ("raised", "status"), [(OSError("disk gone"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_a_group_whose_logging_stops_midway_keeps_what_was_logged(
    tmp_path, group_setup, monkeypatch, raised, status
):
    """The first network's results were logged and its run ended FINISHED; the second's write
    fails (or Ctrl-C stops it): it and the third end as it did."""
    client, experiment, run, data_path = group_setup
    group = _trained_group(tmp_path, client, experiment, ("relu", "tanh", "gelu"))
    real, calls = runs.log_evaluation, []

    def log_evaluation(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise raised
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "log_evaluation", log_evaluation)
    with pytest.raises(type(raised)):
        steps.evaluate_networks.fn(group, "mlp/{relu,tanh,gelu}/seed=0", data_path, MODELS, run)

    statuses = [client.get_run(t.run_id).info.status for t in group]
    assert statuses == ["FINISHED", status, status]
    assert "test_accuracy" in client.get_run(group[0].run_id).data.metrics
