"""The MLflow store's first creation, one process at a time.

Two `actlab run` started together in a fresh folder would both find no `mlflow.db` and both run
MLflow's schema migrations on it; the loser fails ("Online migration expected to match one row")
or finds half-made tables. A file lock beside the database makes the first process create the
store (and the experiment) while the other waits; after that SQLite's own locking suffices.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from filelock import FileLock

from tasks.core.uris import sqlite_path

LOCK_TIMEOUT_SECONDS = 600  # creating the store takes seconds; a stale lock file is harmless


@contextmanager
def creating_store(uri: str) -> Iterator[None]:
    """Hold `<db>-lock` (an exclusive OS lock, released if the process dies) for a SQLite store;
    nothing for a tracking server, which serialises creation itself."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(db.with_name(db.name + "-lock"), timeout=LOCK_TIMEOUT_SECONDS):
        yield
