"""Scaling out in the topology docs/operations.md describes, as separate processes on 127.0.0.1:
a `dask scheduler`, two `dask worker` processes with one thread each, an `mlflow server` over
SQLite, and the flow pointed at both. Every child is trained and logged by a worker, through the
tracking server, and the parent sees them all."""

import os
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmarks.cluster import Cluster  # shared with `make bench`, which times this topology
from flows.compare import run_comparison
from tasks.core.config import load_config
from tests.flows.conftest import PARAMS, small_overrides


@pytest.mark.slow
def test_flow_against_a_scheduler_two_workers_and_a_tracking_server(tmp_path, idx_folder):
    with Cluster(tmp_path, workers=2) as cluster:
        overrides = small_overrides(tmp_path, idx_folder) + [
            "runner.kind=dask",
            f"runner.address={cluster.scheduler}",
            f"tracking.uri={cluster.tracking_uri}",
            "sweep.seeds=[0, 1]",
        ]
        cfg = load_config(PARAMS, overrides)
        run_comparison(cfg)

        client = MlflowClient(cluster.tracking_uri)
        experiment = client.get_experiment_by_name(cfg.tracking.experiment)
        runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.info.status == "FINISHED"
    assert len(children) == len(cfg.grid) == 6
    assert all(c.info.status == "FINISHED" for c in children)
    assert all("test_accuracy" in c.data.metrics for c in children)
    pids = {c.data.tags["worker.pid"] for c in children}
    assert str(os.getpid()) not in pids  # trained and logged by the workers, not the flow
    assert len(pids) == 2, pids  # both workers took networks
    assert (Path(tmp_path) / "reports" / parent.info.run_id / "report.md").is_file()
