"""Where the training tasks run: Prefect's thread pool on this machine, or a Dask cluster.

`runner.kind: threads` keeps everything in the flow's process (TensorFlow already uses every
core, so one network at a time is the default). `runner.kind: dask` hands the tasks to
`prefect-dask`'s DaskTaskRunner: against the scheduler at `runner.address`, or, without one, a
local `distributed` cluster of `runner.workers` worker processes bound to 127.0.0.1. Tasks take
the preprocessed data by path, so on several machines `data/` must be on storage every worker
sees, and MLflow must be a tracking server rather than a SQLite file (docs/operations.md,
"Scaling out").
"""

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.core.config import RunnerConfig


def make_task_runner(cfg: RunnerConfig) -> TaskRunner:
    """The Prefect task runner `cfg` asks for (a new one: task runners are single-use)."""
    if cfg.kind == "threads":
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    from prefect_dask import DaskTaskRunner  # only needed, and only imported, for dask

    if cfg.address:
        return DaskTaskRunner(address=cfg.address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": cfg.workers,
            "processes": True,  # one TensorFlow per process: real parallelism, ~1 GB each
            "threads_per_worker": 1,  # one network at a time per worker
            "host": "127.0.0.1",  # the scheduler and workers listen on loopback only
            "dashboard_address": None,  # no web dashboard
        }
    )


def describe_runner(cfg: RunnerConfig) -> str:
    """One line for the CLI: where the networks will train."""
    if cfg.kind == "threads":
        return f"threads ({cfg.workers} network(s) at a time)"
    if cfg.address:
        return f"dask scheduler at {cfg.address}"
    return f"dask, local cluster of {cfg.workers} worker processes"


def runner_warnings(cfg: RunnerConfig, tracking_uri: str) -> list[str]:
    """What will not work across machines: a scheduler elsewhere cannot write a local SQLite."""
    if cfg.kind == "dask" and cfg.address and tracking_uri.startswith("sqlite:"):
        return [
            f"runner.address = {cfg.address} with the SQLite store {tracking_uri}: workers on "
            "other machines cannot log to it; use an MLflow tracking server "
            "(docs/operations.md: Scaling out)"
        ]
    return []
