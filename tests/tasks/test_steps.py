"""tasks/steps.py: the Prefect tasks are thin wrappers over the plain functions."""

import pytest
from mlflow.tracking import MlflowClient

from tasks import steps
from tasks.core.config import Cell, DataConfig, PreprocessConfig
from tasks.core.results import CACHED, RAN, PreparedData, RawDataset, TrainedNetwork
from tasks.data.download import fetch_dataset
from tasks.data.prepare import preprocess_dataset
from tasks.steps import download_dataset, preprocess
from tasks.tracking.runs import RunContext


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
    """evaluate_networks scores a stacked group's networks one after another in one task: when
    one fails (or Ctrl-C stops it), that run and every one not yet scored end as it did."""
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("group", (tmp_path / "mlruns").as_uri())
    run = RunContext(
        tracking_uri=sqlite_store,
        experiment_id=experiment,
        parent_run_id=client.create_run(experiment).info.run_id,
    )
    group = [
        TrainedNetwork(
            cell=Cell(model="mlp", activation=activation, seed=0),
            run_id=client.create_run(experiment).info.run_id,
            init="auto",
            status="ok",
            reason="",
            diverged_epoch=None,
            costs=(0.5,),
            seconds_per_epoch=0.1,
            weights_path=str(tmp_path / f"{activation}.npz"),
        )  # fmt: skip
        for activation in ("relu", "tanh", "gelu")
    ]

    def load_weights(path):
        raise raised

    monkeypatch.setattr(steps, "load_weights", load_weights)
    with pytest.raises(type(raised)):
        steps.evaluate_networks.fn(group, "mlp/{relu,tanh,gelu}/seed=0", "unused", None, run)

    assert [client.get_run(t.run_id).info.status for t in group] == [status] * 3
