"""Scaling out in the topology docs/operations.md describes, as separate processes on 127.0.0.1:
a `dask scheduler`, two `dask worker` processes with one thread each, an `mlflow server` over
SQLite, and the flow pointed at both. Every child is trained and logged by a worker, through the
tracking server, and the parent sees them all."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.compare import run_comparison
from tasks.core.config import load_config
from tests.flows.conftest import PARAMS, small_overrides

BIN = Path(sys.executable).parent
START_DEADLINE = 120.0  # seconds for the scheduler, the workers and the MLflow server to be up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if check():
            return
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"{what}: a process exited early: {dead}")
        time.sleep(0.5)
    raise AssertionError(f"{what} not up after {START_DEADLINE:.0f} s")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def one_thread_env() -> dict[str, str]:
    """TensorFlow (and BLAS) held to one thread per worker process."""
    return {
        **os.environ,
        "TF_NUM_INTRAOP_THREADS": "1",
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(PARAMS.parent), os.environ.get("PYTHONPATH", "")]),
    }


class Cluster:
    """A scheduler, `workers` single-threaded workers and an MLflow server, all on 127.0.0.1."""

    def __init__(self, folder: Path, workers: int):
        self.folder, self.workers = folder, workers
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.scheduler = f"tcp://127.0.0.1:{_free_port()}"
        self.mlflow_port = _free_port()
        self.tracking_uri = f"http://127.0.0.1:{self.mlflow_port}"

    def _start(self, *args: str) -> None:
        log = open(self.folder / f"proc-{len(self.procs)}.log", "wb")  # closed in __exit__
        self.logs.append(log)
        self.procs.append(
            subprocess.Popen(
                list(args), cwd=self.folder, env=one_thread_env(), stdout=log, stderr=log
            )
        )

    def __enter__(self) -> "Cluster":
        port = self.scheduler.rsplit(":", 1)[1]
        self._start(
            str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard"
        )
        for _ in range(self.workers):
            self._start(
                str(BIN / "dask"), "worker", self.scheduler, "--host", "127.0.0.1",
                "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
            )  # fmt: skip
        self._start(
            str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.mlflow_port),
            "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination", (self.folder / "mlartifacts").as_uri(),
        )  # fmt: skip
        try:
            _wait_for(lambda: _listening(int(port)), "dask scheduler", self.procs)
            _wait_for(lambda: _listening(self.mlflow_port), "mlflow server", self.procs)
            _wait_for(self._workers_joined, "dask workers", self.procs)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _workers_joined(self) -> bool:
        from distributed import Client

        with Client(self.scheduler, timeout=10) as client:
            return len(client.scheduler_info()["workers"]) >= self.workers

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for log in self.logs:
            log.close()


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
