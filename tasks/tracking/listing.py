"""Listing runs for the commands that only read (`actlab runs`): the recent parent runs of an
experiment and each one's children, with their tags, params and latest metrics.

Two readers with one interface. On a tracking server, `MlflowReader` asks MLflow. On the default
SQLite store, `SqliteReader` reads the database directly (only reading), with the standard library:
importing MLflow and opening its store costs about 2 s on 2 cores, which a command that prints a
table should not pay. It reads only MLflow's stable core tables (experiments, runs, tags, params,
latest_metrics) and returns the same fields MlflowClient's runs carry; a test compares the two
readers on the same store.
"""

import math
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from tasks.core.uris import sqlite_path
from tasks.tracking.predictions import PREDICTIONS_FILE, decode, decode_local, local_artifacts

PARENT_TAG = "mlflow.parentRunId"  # MLflow's tag linking a child run to its parent


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    status: str  # RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    start_time: int  # ms since the epoch
    run_name: str
    artifact_uri: str = ""


@dataclass(frozen=True)
class RunData:
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the latest value of each


@dataclass(frozen=True)
class RunView:
    """The parts of an MLflow run a listing needs, shaped like `mlflow.entities.Run`."""

    info: RunInfo
    data: RunData


class RunReader(Protocol):
    def recent_parents(self, experiment: str, limit: int) -> list: ...

    def children(self, parent) -> list: ...

    def running_parents(self) -> list: ...
    def test_predictions(self, run) -> tuple[np.ndarray, np.ndarray] | None: ...


class MlflowReader:
    """Any store, through MlflowClient."""

    def __init__(self, tracking_uri: str):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)

    def recent_parents(self, experiment: str, limit: int) -> list:
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return []
        return list(
            self.client.search_runs(
                [found.experiment_id],
                filter_string=f"tags.`{PARENT_TAG}` IS NULL",
                order_by=["attributes.start_time DESC"],
                max_results=limit,
            )
        )

    def children(self, parent) -> list:
        return list(
            self.client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'",
                max_results=10_000,
            )
        )

    def running_parents(self) -> list:
        """Every RUNNING parent run of the store, in any experiment."""
        ids = [e.experiment_id for e in self.client.search_experiments()]
        if not ids:
            return []
        found = self.client.search_runs(
            ids, filter_string="attributes.status = 'RUNNING'", max_results=10_000
        )
        return [run for run in found if PARENT_TAG not in run.data.tags]

    def test_predictions(self, run) -> tuple[np.ndarray, np.ndarray] | None:
        """A child run's recorded test predictions and labels, fetched through MLflow."""
        import tempfile

        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.client.download_artifacts(run.info.run_id, PREDICTIONS_FILE, tmp)
            except (MlflowException, OSError):
                return None
            return decode(path)


def connect_for_reading(db: Path) -> sqlite3.Connection:
    """A connection to MLflow's SQLite store `db` that runs no statement but reads
    (`query_only`), never creates the file, and migrates nothing.

    Read-write underneath when the file and its folder are writable: after a `kill -9` in the
    middle of a write the store keeps a hot journal, which SQLite rolls back on the next read,
    and a `mode=ro` connection cannot ("attempt to write a readonly database"). A store that is
    not writable is opened `mode=ro`."""
    db = Path(db)
    writable = os.access(db, os.W_OK) and os.access(db.resolve().parent, os.W_OK)
    mode = "rw" if writable else "ro"
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode={mode}", uri=True, timeout=30)
    con.execute("PRAGMA query_only = 1")
    return con


class SqliteReader:
    """MLflow's SQLite store, read directly (`connect_for_reading`: nothing written, created or
    migrated)."""

    def __init__(self, db: Path):
        self.db = Path(db)

    def _connect(self) -> sqlite3.Connection | None:
        if not self.db.is_file():
            return None
        return connect_for_reading(self.db)

    def recent_parents(self, experiment: str, limit: int) -> list[RunView]:
        con = self._connect()
        if con is None:
            return []
        with con:
            row = con.execute(
                "SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = "
                "'active' ORDER BY experiment_id LIMIT 1",
                (experiment,),
            ).fetchone()
            if row is None:
                return []
            rows = con.execute(
                "SELECT run_uuid, experiment_id, status, start_time, name, artifact_uri "
                "FROM runs r WHERE experiment_id = ? AND lifecycle_stage = 'active' AND NOT EXISTS "
                "(SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?) "
                "ORDER BY start_time DESC, run_uuid LIMIT ?",
                (row[0], PARENT_TAG, limit),
            ).fetchall()
            return _views(con, rows)

    def children(self, parent) -> list[RunView]:
        con = self._connect()
        if con is None:
            return []
        with con:
            rows = con.execute(
                "SELECT r.run_uuid, r.experiment_id, r.status, r.start_time, r.name, "
                "r.artifact_uri FROM runs r "
                "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ? "
                "WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' "
                "ORDER BY r.start_time, r.run_uuid",  # as MLflow's search: the parent's experiment
                (PARENT_TAG, parent.info.run_id, int(parent.info.experiment_id)),
            ).fetchall()
            return _views(con, rows)

    def running_parents(self) -> list[RunView]:
        """Every RUNNING parent run of the store, in any experiment."""
        con = self._connect()
        if con is None:
            return []
        with con:
            try:
                rows = con.execute(
                    "SELECT run_uuid, experiment_id, status, start_time, name, artifact_uri "
                    "FROM runs r "
                    "WHERE status = 'RUNNING' AND lifecycle_stage = 'active' AND NOT EXISTS "
                    "(SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?) "
                    "ORDER BY start_time, run_uuid",
                    (PARENT_TAG,),
                ).fetchall()
            except sqlite3.OperationalError:  # a database MLflow has not made its tables in yet
                return []
            return _views(con, rows)

    def test_predictions(self, run) -> tuple[np.ndarray, np.ndarray] | None:
        """A child run's recorded test predictions and labels, read from its artifact folder when
        that is on this machine (else None: there is nothing to compare image by image)."""
        folder = local_artifacts(run.info.artifact_uri)
        return decode_local(folder / PREDICTIONS_FILE) if folder is not None else None


def _views(con: sqlite3.Connection, rows: list[tuple]) -> list[RunView]:
    ids = [r[0] for r in rows]
    tags: dict[str, dict] = {i: {} for i in ids}
    params: dict[str, dict] = {i: {} for i in ids}
    metrics: dict[str, dict] = {i: {} for i in ids}
    for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for run_id, key, value in con.execute(
            f"SELECT run_uuid, key, value FROM tags WHERE run_uuid IN ({marks})", chunk
        ):
            tags[run_id][key] = value
        for run_id, key, value in con.execute(
            f"SELECT run_uuid, key, value FROM params WHERE run_uuid IN ({marks})", chunk
        ):
            params[run_id][key] = value
        for run_id, key, value, is_nan in con.execute(
            f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({marks})",
            chunk,
        ):
            metrics[run_id][key] = math.nan if is_nan else float(value)
    return [
        RunView(
            RunInfo(
                run_id, str(experiment_id), status, int(start_time or 0), name or "", uri or ""
            ),
            RunData(tags[run_id], params[run_id], metrics[run_id]),
        )
        for run_id, experiment_id, status, start_time, name, uri in rows
    ]


def run_status(run) -> tuple[str, str]:
    """(status, reason): the training outcome tag, or why the run has none."""
    tags = run.data.tags
    status = tags.get("status", "")
    reason = tags.get("status_reason", "")
    if run.info.status == "FAILED":
        return "failed", reason or "the run failed (an error ended it; see its Prefect task log)"
    if run.info.status == "KILLED":
        return "killed", reason or "the run was interrupted"
    if status in ("", "running") or run.info.status == "RUNNING":
        return "unfinished", reason or "the run has not finished"
    return status, reason


def reader_for(tracking_uri: str) -> RunReader:
    """A SQLite store read directly; any other store through MLflow."""
    db = sqlite_path(tracking_uri)
    return SqliteReader(db) if db is not None else MlflowReader(tracking_uri)
