"""`actlab reproduce RUN_ID`: the recorded config re-run, compared epoch by epoch."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.compare import compare_activations
from tasks.commands.reproduce import config_from_params
from tasks.core.config import load_config, validate_config
from tasks.tracking.runs import config_params, config_record
from tests.flows.conftest import PARAMS, small_overrides

runner = CliRunner()


@pytest.fixture
def recorded(tmp_path, idx_folder):
    """One finished flow run of 3 networks with non-default params: (config, parent run id,
    {child run name: child run id})."""
    overrides = small_overrides(tmp_path, idx_folder) + [
        "train.learning_rate=0.2",
        "sweep.activations=[softmax, tanh]",
        "sweep.models=[tutorial, mlp]",
    ]
    cfg = load_config(PARAMS, overrides)
    parent_id = Path(compare_activations(cfg)).name
    client = MlflowClient(cfg.tracking.uri)
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
    )
    return cfg, parent_id, {c.info.run_name: c.info.run_id for c in children}


def _reproduce(cfg, run_id: str, tmp_path: Path, *more: str):
    # -p names a file that does not exist: reproduction needs only the run's record
    args = ["reproduce", run_id, "-p", str(tmp_path / "gone.yaml"), *more]
    return runner.invoke(app, [*args, "--tracking-uri", cfg.tracking.uri])


def _parents(client: MlflowClient, cfg):
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` IS NULL")
    return {r.info.run_id: r for r in runs}


def _new_parent(client: MlflowClient, cfg, original: str):
    (new,) = [r for r in _parents(client, cfg).values() if r.info.run_id != original]
    return new


def _children(client: MlflowClient, parent) -> list:
    return client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )


def _verdict(result) -> str:
    (line,) = [
        x for x in result.stdout.splitlines() if x.startswith(("identical", "equivalent", "diff"))
    ]
    return line


@pytest.mark.slow
def test_reproducing_a_child_reruns_that_network_alone_as_a_new_parent(recorded, tmp_path):
    cfg, parent_id, children = recorded
    child_id = children["mlp/tanh/seed=0"]

    result = _reproduce(cfg, child_id, tmp_path)

    assert result.exit_code == 0, result.output + result.stderr
    assert f"reproducing child run {child_id} (mlp/tanh/seed=0) of parent run {parent_id}: " in (
        result.stderr
    )
    assert "1 of 3 networks" in result.stderr
    assert "environment: as recorded" in result.stderr
    assert _verdict(result) == (
        "identical: 1 network, every per-epoch cost and test accuracy bit for bit"
    )
    client = MlflowClient(cfg.tracking.uri)
    new = _new_parent(client, cfg, parent_id)  # in the same experiment as the original
    # one network trained, not the grid's three: a third of the grid's work
    (again,) = _children(client, new)
    assert len(_children(client, client.get_run(parent_id))) == 3
    assert again.info.run_name == "mlp/tanh/seed=0"
    assert again.data.params["learning_rate"] == "0.2"  # the recorded, not the default
    tags = new.data.tags
    assert tags["reproduced_from"] == child_id
    assert tags["reproduction.verdict"] == "identical"
    assert (tags["grid_size"], tags["grid.full_size"]) == ("1", "3")
    assert new.info.status == "FINISHED"
    assert result.stdout.startswith(f"new run: {new.info.run_id} (1 network in ")

    listed = runner.invoke(
        app,
        ["runs", "--set", f"tracking.uri={cfg.tracking.uri}", "--set", "tracking.experiment=test"],
    )
    assert f"reproduces {child_id} (mlp/tanh/seed=0): identical" in listed.stdout


@pytest.mark.slow
def test_cells_rerun_the_chosen_networks_of_a_parent(recorded, tmp_path):
    cfg, parent_id, children = recorded
    chosen = f"tutorial/softmax/seed=0,{children['mlp/tanh/seed=0']}"  # a name and a run id

    result = _reproduce(cfg, parent_id, tmp_path, "--cells", chosen)

    assert result.exit_code == 0, result.output + result.stderr
    assert _verdict(result).startswith("identical: 2 networks")
    client = MlflowClient(cfg.tracking.uri)
    again = _children(client, _new_parent(client, cfg, parent_id))
    assert sorted(r.info.run_name for r in again) == ["mlp/tanh/seed=0", "tutorial/softmax/seed=0"]


@pytest.mark.slow
def test_a_perturbed_record_reruns_the_whole_grid_and_is_different_at_epoch_0(recorded, tmp_path):
    cfg, parent_id, _ = recorded
    client = MlflowClient(cfg.tracking.uri)
    record = config_record(cfg)
    record["train"]["learning_rate"] = 0.05
    client.log_dict(parent_id, record, "config.json")  # overwrite what was recorded

    result = _reproduce(cfg, parent_id, tmp_path)

    assert result.exit_code == 1, result.output + result.stderr
    verdict = _verdict(result)
    assert verdict.startswith("different at epoch 0: ")
    assert "cost " in verdict and "; tolerance 0.001" in verdict
    assert ": learning_rate 0.2 -> 0.05" in result.stdout  # the edit, named as a likely cause
    assert len(_children(client, _new_parent(client, cfg, parent_id))) == 3  # the whole grid


@pytest.mark.slow
def test_a_doctored_history_is_equivalent_by_default_and_different_at_a_tighter_tolerance(
    recorded, tmp_path
):
    cfg, parent_id, children = recorded
    child_id = children["tutorial/softmax/seed=0"]
    client = MlflowClient(cfg.tracking.uri)
    history = client.get_metric_history(child_id, "cost")
    later = max(m.timestamp for m in history) + 1  # a step logged again: the latest value counts
    scaled = [Metric("cost", m.value * (1 + 1e-4), later, m.step) for m in history]
    client.log_batch(child_id, metrics=scaled)
    client.set_tag(parent_id, "versions.numpy", "0.0.1")  # as if recorded with another NumPy

    loose = _reproduce(cfg, child_id, tmp_path)

    assert loose.exit_code == 3, loose.output + loose.stderr
    assert _verdict(loose).startswith(
        "equivalent: 1 network, every per-epoch cost within relative 0.001 (largest 0.0001: "
        "tutorial/softmax/seed=0, epoch "
    )
    assert f"versions.numpy: recorded 0.0.1, now {np.__version__}" in loose.stderr

    tight = _reproduce(cfg, child_id, tmp_path, "--tolerance", "1e-5")

    assert tight.exit_code == 1, tight.output + tight.stderr
    verdict = _verdict(tight)
    assert verdict.startswith("different at epoch 0: tutorial/softmax/seed=0: cost ")
    assert verdict.endswith("(relative difference 0.0001); tolerance 1e-05")
    details = tight.stdout.split(verdict, 1)[1]
    assert "recorded differences that may explain it:" in details
    assert f"versions.numpy: recorded 0.0.1, now {np.__version__}" in details


def test_unknown_run_id_exits_2_naming_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["reproduce", "0123abcd", "--tracking-uri", uri])
    assert result.exit_code == 2
    assert "run '0123abcd' not found" in result.stderr


def test_cells_naming_no_child_exit_2_listing_the_cells_and_train_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = validate_config({"sweep": {"models": ["mlp"], "activations": ["relu"]}})
    client = MlflowClient(uri)
    experiment = client.create_experiment("test", (tmp_path / "mlruns").as_uri())
    parent = client.create_run(experiment).info.run_id
    client.log_dict(parent, config_record(cfg), "config.json")
    client.create_run(experiment, run_name="mlp/relu/seed=0", tags={"mlflow.parentRunId": parent})

    result = runner.invoke(
        app, ["reproduce", parent, "--cells", "mlp/tanh/seed=0", "--tracking-uri", uri]
    )

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (  # after MLflow's progress bars
        f"error: --cells 'mlp/tanh/seed=0': no child run of parent run {parent} has that id, "
        "name or label; its cells are: mlp/relu/seed=0"
    )
    assert len(client.search_runs([experiment])) == 2  # no new parent run


def test_config_is_rebuilt_from_typed_params_when_config_json_is_missing(small_config):
    record = config_record(small_config)
    params = config_params(record)  # what parent_run logs as params

    rebuilt = validate_config(config_from_params(params))

    assert rebuilt == small_config
    assert json.loads(json.dumps(record)) == rebuilt.model_dump(mode="json")
