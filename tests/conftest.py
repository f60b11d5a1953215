"""Shared fixtures: a tiny learnable MNIST-format dataset on disk, an empty MLflow store, and a
small disk to fill."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.tracking.store import checkpointed
from tests.idx import make_dataset


@pytest.fixture(scope="session")
def idx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the four gzip'd IDX files: 600 training and 200 test images. Do not modify."""
    return make_dataset(tmp_path_factory.mktemp("idx"))


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its schema made (MLflow's migrations take seconds), once."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()  # creates and migrates the database
    # Everything in the one file that tests copy (a store in WAL mode, tasks.tracking.store,
    # keeps the latest writes in mlflow.db-wal until a checkpoint).
    assert checkpointed(db), f"{db}: MLflow's connections kept the checkpoint from finishing"
    return db


@pytest.fixture
def sqlite_store(tmp_path: Path, _empty_store: Path) -> str:
    """The URI of an empty MLflow store at tmp_path/mlflow.db, as MLflow would create it."""
    shutil.copyfile(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 32 MiB tmpfs mounted at tmp_path/disk, for writes that run out of space. Mounting needs
    root (CI runs as root); where it is not permitted the test is skipped and says why."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m,mode=0755", "tmpfs", str(mount_point)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except FileNotFoundError:
        pytest.skip("no mount command: a full disk cannot be made here")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()}): run as root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Write to disk/filler until the file system has no space left; returns the filler."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 20, 1 << 12, 1):  # unbuffered: each write lands or fails now
            try:
                while os.write(fd, b"\0" * chunk):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def log_test_predictions(client, run_id: str, predicted, labels) -> None:
    """A child run's `test_predictions.npz` as evaluation writes it (tasks.tracking.runs
    .log_evaluation), without the rest of an evaluation."""
    import tempfile

    from tasks.tracking.predictions import PREDICTIONS_FILE, encode

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PREDICTIONS_FILE
        path.write_bytes(encode(predicted, labels))
        client.log_artifact(run_id, str(path))
