"""What a parent run records about where it came from: the code (git commit, uncommitted changes),
the package versions, the Prefect flow run, and which process logged it."""

import os
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]  # the repo, for the git commit
PACKAGES = ("tensorflow", "keras", "mlflow", "prefect", "numpy", "pandas", "pydantic")


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def run_tags(flow_run_id: str | None) -> dict[str, str]:
    """versions.*, git.commit, git.dirty and the Prefect flow run (id, and URL if a UI exists)."""
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain")
    tags = {f"versions.{k}": v for k, v in _versions().items()}
    tags["git.commit"] = commit or "unknown"
    tags["git.dirty"] = "unknown" if dirty is None else str(bool(dirty)).lower()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    if flow_run_id:
        tags["prefect.flow_run_id"] = flow_run_id
        url = flow_run_url(flow_run_id)
        if url:
            tags["prefect.flow_run_url"] = url
    return tags


def flow_run_url(flow_run_id: str) -> str | None:
    """The flow run's page in the Prefect UI; None on the ephemeral server, which has no UI."""
    from prefect.settings import PREFECT_UI_URL

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def worker_tags() -> dict[str, str]:
    """Which process logs the run: with runner.kind dask, a worker's, not the flow's."""
    return {"worker.host": socket.gethostname(), "worker.pid": str(os.getpid())}
