"""parent_run on the way out: no child run of an interrupted or failed flow stays RUNNING."""

import signal

import pytest
from mlflow.tracking import MlflowClient
from prefect.exceptions import TerminationSignal

from tasks.core.config import Cell, load_config
from tasks.tracking import runs as tracking


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (KeyboardInterrupt(), "KILLED"),
        (TerminationSignal(signal.SIGTERM), "KILLED"),  # SIGTERM inside a Prefect flow
        (RuntimeError("boom"), "FAILED"),
    ],
    ids=["ctrl-c", "sigterm", "error"],
)
def test_open_children_end_with_the_parent(tmp_path, raised, status):
    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)

    with pytest.raises(type(raised)), tracking.parent_run(cfg) as run:
        open_child = tracking.start_child_run(client, run, cell, {"seed": 0})
        done_child = tracking.start_child_run(client, run, cell, {"seed": 1})
        tracking.end_run(client, done_child, "FINISHED")
        raise raised

    assert client.get_run(run.parent_run_id).info.status == status
    assert client.get_run(open_child).info.status == status
    assert client.get_run(done_child).info.status == "FINISHED"  # a finished child stays so


def test_a_child_run_logs_every_param_that_identifies_its_cell():
    from tasks.core.cells import CELL_PARAMS, cell_key
    from tasks.core.config import ModelsConfig, TrainConfig

    cell = Cell(model="mlp", activation="relu", seed=3)
    params = tracking.child_params(
        cell, [784, 64, 10], "he_normal", "cross_entropy", ModelsConfig(), TrainConfig()
    )
    logged = {k: str(v) for k, v in params.items()}  # what MLflow gives back: strings

    assert set(CELL_PARAMS) <= logged.keys()
    assert cell_key(logged) == ("mlp", "relu", 3, TrainConfig().learning_rate, (784, 64, 10))


def test_a_parent_run_records_the_machine_and_the_numerical_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)

    with tracking.parent_run(cfg) as run:
        pass

    tags = client.get_run(run.parent_run_id).data.tags
    for key in ("versions.python", "versions.tensorflow", "versions.numpy", "versions.mlflow"):
        assert tags[key][0].isdigit(), (key, tags[key])
    assert tags["env.cpu.count"] == str(__import__("os").cpu_count())
    assert tags["env.cpu.model"] and tags["env.cpu.isa"]
    assert tags["env.blas"].split()[0] in ("openblas", "mkl", "blis", "accelerate", "unknown")
    assert tags["env.onednn"] in ("on", "off")
    assert tags["env.var.XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"
    assert tags["env.var.TF_XLA_FLAGS"] == "unset"
