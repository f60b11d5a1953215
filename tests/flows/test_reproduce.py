"""`actlab reproduce RUN_ID`: the recorded config re-run, compared epoch by epoch."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from flows.compare import compare_activations
from tasks.commands.reproduce import compare_results, config_from_params
from tasks.core.config import load_config, validate_config
from tasks.tracking.runs import config_params, config_record
from tests.flows.conftest import PARAMS, small_overrides

runner = CliRunner()


@pytest.fixture
def recorded(tmp_path, idx_folder):
    """One finished flow run with non-default params: (config, parent run id, child run ids)."""
    overrides = small_overrides(tmp_path, idx_folder) + [
        "train.learning_rate=0.2",
        "sweep.activations=[softmax, tanh]",
        "sweep.models=[tutorial]",
    ]
    cfg = load_config(PARAMS, overrides)
    parent_id = Path(compare_activations(cfg)).name
    client = MlflowClient(cfg.tracking.uri)
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
    )
    return cfg, parent_id, [c.info.run_id for c in children]


def _reproduce(cfg, run_id: str, tmp_path: Path):
    # -p names a file that does not exist: reproduction needs only the run's record
    args = ["reproduce", run_id, "-p", str(tmp_path / "gone.yaml")]
    return runner.invoke(app, [*args, "--tracking-uri", cfg.tracking.uri])


def _parents(client: MlflowClient, cfg):
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`mlflow.parentRunId` IS NULL")
    return {r.info.run_id: r for r in runs}


@pytest.mark.slow
def test_reproducing_a_child_run_id_reruns_its_parent_and_says_reproduced(recorded, tmp_path):
    cfg, parent_id, child_ids = recorded

    result = _reproduce(cfg, child_ids[0], tmp_path)

    assert result.exit_code == 0, result.output + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "reproduced (max |Δcost| = 0, 2 networks)"
    client = MlflowClient(cfg.tracking.uri)
    parents = _parents(client, cfg)
    assert len(parents) == 2  # the original and its reproduction, in the same experiment
    (new,) = [r for r in parents.values() if r.info.run_id != parent_id]
    assert new.data.tags["reproduced_from"] == child_ids[0]
    assert new.data.params["train.learning_rate"] == "0.2"  # the recorded, not the default
    assert new.info.status == "FINISHED"


@pytest.mark.slow
def test_a_perturbed_record_diverges_at_epoch_0_and_exits_1(recorded, tmp_path):
    cfg, parent_id, _ = recorded
    client = MlflowClient(cfg.tracking.uri)
    record = config_record(cfg)
    record["train"]["learning_rate"] = 0.05
    client.log_dict(parent_id, record, "config.json")  # overwrite what was recorded

    result = _reproduce(cfg, parent_id, tmp_path)

    assert result.exit_code == 1, result.output + result.stderr
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith("diverged at epoch 0 (tutorial/")
    assert "cost " in verdict


def test_unknown_run_id_exits_2_naming_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(app, ["reproduce", "0123abcd", "--tracking-uri", uri])
    assert result.exit_code == 2
    assert "run '0123abcd' not found" in result.stderr


def test_config_is_rebuilt_from_typed_params_when_config_json_is_missing(small_config):
    record = config_record(small_config)
    params = config_params(record)  # what parent_run logs as params

    rebuilt = validate_config(config_from_params(params))

    assert rebuilt == small_config
    assert json.loads(json.dumps(record)) == rebuilt.model_dump(mode="json")


def _results(*costs, accuracy=0.9):
    return {("mlp", "relu", "0"): {"cost": list(costs), "test_accuracy": accuracy}}


def test_compare_results_names_the_first_differing_epoch():
    nan = float("nan")
    same = compare_results(_results(1.0, 0.5), _results(1.0, 0.5 + 1e-9))
    assert same.reproduced and same.message == "reproduced (max |Δcost| = 1e-09, 1 network)"
    assert compare_results(_results(nan), _results(nan)).reproduced  # diverged alike
    late = compare_results(_results(1.0, 0.5), _results(1.0, 0.6))
    assert not late.reproduced
    assert late.message == "diverged at epoch 1 (mlp/relu/seed=0: cost 0.5 -> 0.6)"
    short = compare_results(_results(1.0, 0.5), _results(1.0))
    assert short.message.startswith("diverged at epoch 1 (mlp/relu/seed=0: 2 epochs recorded")
    accuracy = compare_results(_results(1.0), _results(1.0, accuracy=0.8))
    assert accuracy.message == (
        "diverged in test accuracy (mlp/relu/seed=0: test accuracy 0.9 -> 0.8)"
    )
    missing = compare_results(_results(1.0), {})
    assert missing.message == "diverged at epoch 0 (mlp/relu/seed=0: not re-run)"
