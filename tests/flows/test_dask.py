"""runner.kind: dask: the training tasks run on worker processes of a `distributed` cluster."""

import os
import socket

import pytest
from mlflow.tracking import MlflowClient

from flows.compare import run_comparison
from tasks.commands.runner import describe_runner, make_task_runner, runner_warnings
from tasks.core.config import ConfigError, load_config
from tests.flows.conftest import PARAMS, small_overrides


@pytest.mark.slow
def test_flow_on_a_local_two_process_dask_cluster_logs_every_child_from_a_worker(
    tmp_path, idx_folder
):
    overrides = small_overrides(tmp_path, idx_folder) + ["runner.kind=dask", "runner.workers=2"]
    cfg = load_config(PARAMS, overrides)

    run_comparison(cfg)

    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["runner.kind"] == "dask"
    assert parent.data.tags["flow.pid"] == str(os.getpid())  # the flow ran in this process
    assert len(children) == 3
    pids = {c.data.tags["worker.pid"] for c in children}
    assert str(os.getpid()) not in pids  # every child was logged from a worker process
    assert all(c.data.tags["worker.host"] == socket.gethostname() for c in children)
    assert all(c.info.status == "FINISHED" for c in children)
    assert all("test_accuracy" in c.data.metrics for c in children)


def test_runner_config_is_checked_and_chooses_the_task_runner(tmp_path):
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = load_config(PARAMS, ["runner.workers=2"]).runner
    assert isinstance(make_task_runner(threads), ThreadPoolTaskRunner)
    assert describe_runner(threads) == "threads (2 network(s) at a time)"
    remote = load_config(PARAMS, ["runner.kind=dask", "runner.address=tcp://10.0.0.5:8786"]).runner
    assert isinstance(make_task_runner(remote), DaskTaskRunner)
    assert describe_runner(remote) == "dask scheduler at tcp://10.0.0.5:8786"
    (warning,) = runner_warnings(remote, "sqlite:////work/mlflow.db")
    assert "workers on other machines cannot log to it" in warning
    assert runner_warnings(remote, "http://mlflow.internal:5000") == []
    assert runner_warnings(threads, "sqlite:////work/mlflow.db") == []

    with pytest.raises(ConfigError, match="runner.address = 'tcp://h:1' is only used with"):
        load_config(PARAMS, ["runner.address=tcp://h:1"])
    with pytest.raises(ConfigError, match="runner.address = '10.0.0.5': expected a Dask"):
        load_config(PARAMS, ["runner.kind=dask", "runner.address=10.0.0.5"])
    with pytest.raises(ConfigError, match=r"runner.kind = 'ray': Input should be 'threads'"):
        load_config(PARAMS, ["runner.kind=ray"])
