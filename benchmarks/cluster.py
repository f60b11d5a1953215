"""The several-machines topology of docs/operations.md ("Scaling out"), on one machine: a
`dask scheduler`, `dask worker` processes with one thread each, and an `mlflow server` over SQLite,
each a separate process bound to 127.0.0.1.

Used by `make bench` (networks per minute on one worker against two) and by the slow test
tests/flows/test_dask_cluster.py (the flow pointed at it trains and logs every network there).

The project's runner (tasks/commands/runner.py) gives a scheduler it is pointed at nothing but
its address: how many threads a worker and its TensorFlow use is the worker process's own
business. So each worker gets `--nthreads 1` (one network at a time) and an environment holding
TensorFlow's thread pools, and BLAS's, to one thread (`one_thread_env`).
"""

import contextlib
import importlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]  # the checkout the workers import the project from
BIN = Path(sys.executable).parent
START_DEADLINE = 120.0  # seconds for the scheduler, the workers and the MLflow server to be up
STOP_DEADLINE = 20.0  # seconds a process may take to exit once asked to
PREFECT_SERVER_APP = "prefect.server.api.server:create_app"  # in a Prefect server's command line


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
            raise RuntimeError(f"{what}: a process exited early: {dead}")
        time.sleep(0.5)
    raise RuntimeError(f"{what} not up after {START_DEADLINE:.0f} s")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def project_env() -> dict[str, str]:
    """This environment, with the project imported from this checkout (first on PYTHONPATH)."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }


# TensorFlow's two thread pools (TF reads these when it starts) and BLAS/OpenMP, at one thread.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1"}


def one_thread_env() -> dict[str, str]:
    """`project_env`, with TensorFlow (and BLAS) held to one thread per worker process."""
    return {**project_env(), **ONE_THREAD}


def _import(module: str) -> None:
    """Run on a worker: import `module` (returning nothing, so the client imports nothing)."""
    importlib.import_module(module)


class Cluster:
    """A scheduler, `workers` single-threaded workers and an MLflow server, all on 127.0.0.1;
    their logs and the MLflow store (`mlflow.db`, `mlartifacts/`) in `folder`."""

    def __init__(self, folder: Path, workers: int):
        self.folder, self.workers = folder, workers
        self.procs: list[subprocess.Popen] = []
        self.logs: list = []
        self.scheduler = f"tcp://127.0.0.1:{_free_port()}"
        self.mlflow_port = _free_port()
        self.tracking_uri = f"http://127.0.0.1:{self.mlflow_port}"
        self.store = folder / "mlflow.db"  # the tracking server's SQLite backend

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
            "--backend-store-uri", f"sqlite:///{self.store}",
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

    @property
    def worker_pids(self) -> list[int]:
        """The `dask worker` processes (each runs its worker in a child process)."""
        return [proc.pid for proc in self.procs[1 : 1 + self.workers]]

    def _workers_joined(self) -> bool:
        from distributed import Client

        with Client(self.scheduler, timeout=10) as client:
            return len(client.scheduler_info()["workers"]) >= self.workers

    def import_on_workers(self, module: str) -> float:
        """Have every worker import `module` now, as the workers of a cluster that has been up a
        while have: what is timed next leaves out each worker's one-time start-up (seconds of
        TensorFlow imports, which on two workers would otherwise fall among the first networks).
        Returns the seconds it took."""
        from distributed import Client

        start = time.perf_counter()
        with Client(self.scheduler, timeout=60) as client:
            client.run(_import, module)
        return time.perf_counter() - start

    def descendants(self) -> list[psutil.Process]:
        """Every process the cluster's processes started (a worker's own process under its
        nanny, the MLflow server's, a Prefect server a worker started)."""
        found = []
        for proc in self.procs:
            try:
                found += psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        return found

    def prefect_servers(self) -> int:
        """How many Prefect servers the workers started for themselves: a worker that runs a
        Prefect task with no PREFECT_API_URL starts Prefect's temporary server, as any process
        does (the flow's own temporary server is not known to it)."""
        count = 0
        for proc in self.descendants():
            try:
                count += any(PREFECT_SERVER_APP in arg for arg in proc.cmdline())
            except psutil.NoSuchProcess:
                pass
        return count

    def __exit__(self, *exc) -> None:
        # What the processes started dies with them: a Prefect server a worker started would
        # otherwise outlive a worker that is stopped before it can stop the server.
        descendants = self.descendants()
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        left = [p for p in descendants if p.is_running()]
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(left, timeout=STOP_DEADLINE)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        for log in self.logs:
            log.close()
