"""The MLflow store's first creation: one process at a time, and from a template.

Two `actlab run` started together in a fresh folder would both find no `mlflow.db` and both run
MLflow's schema migrations on it; the loser fails ("Online migration expected to match one row")
or finds half-made tables. A file lock beside the database makes the first process create the
store (and the experiment) while the other waits; after that SQLite's own locking suffices.

Creating a store runs every one of MLflow's schema migrations, one after another: about 1.05 s
on this project's 2-core machine, paid by each new `mlflow.db` (a new folder, a test, each run
of `make bench`). So the first store this machine makes for a given MLflow version is also kept
as a template (`$XDG_CACHE_HOME/activation-lab/mlflow-store/mlflow-<version>.db`, beside the XLA
cache; `ACTLAB_STORE_TEMPLATE` names another folder, or `off`): MLflow's own tables at its latest
revision, with no experiment in them, not even MLflow's "Default" (MLflow adds it when it first
opens the copy, with the artifact folder it gives it in a store it has just made).
A later new store is a copy of that template, written beside the database and renamed into
place, so that no half-copied file is ever taken for a store. An existing database is never
touched, and anything that goes wrong with the template (a read-only cache folder, a broken
file, MLflow failing to make it) falls back to MLflow creating the store itself.

Every connection this process opens to a SQLite store through MLflow (`tune_sqlite`) puts the
store in write-ahead-log mode (`PRAGMA journal_mode=WAL`, which stays with the file) and syncs
to disk at checkpoints rather than at every commit (`PRAGMA synchronous=NORMAL`): MLflow commits
each call on its own, and a flow makes some twenty per network. A run's creation, a batch of
metrics and a run's end take 0.6-0.7 of their time (benchmarks/bench_store.py). A crash of the
process (`kill -9` included) loses nothing committed; a crash of the machine or a power cut can
lose the last commits before a checkpoint, never the store. Readers (the MLflow UI, `actlab runs`)
no longer wait for a writer. The store keeps `mlflow.db-wal` and `mlflow.db-shm` beside it while
it is open; copy the three together, or copy `mlflow.db` once no process has it open (a flow run
checkpoints the store as it ends: `checkpoint`). WAL needs the store on a local disk, as SQLite's
own locking does.
"""

import importlib.metadata
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from tasks.core.paths import machine_cache
from tasks.core.uris import sqlite_path

LOCK_TIMEOUT_SECONDS = 600  # creating the store takes seconds; a stale lock file is harmless
TEMPLATE_ENV = "ACTLAB_STORE_TEMPLATE"


_TUNING = threading.Lock()


def tune_sqlite() -> None:
    """From now on, every SQLite connection SQLAlchemy opens in this process (MLflow's store's)
    runs in WAL mode with `synchronous=NORMAL` (see the module docstring). Idempotent."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with _TUNING:
        if not event.contains(Engine, "connect", _on_connect):
            event.listen(Engine, "connect", _on_connect)


def _on_connect(connection, record) -> None:
    if not isinstance(connection, sqlite3.Connection):
        return
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:  # another process holds it (a store made before): it stays
        pass  # in its journal mode, and the next connection tries again
    connection.execute("PRAGMA synchronous=NORMAL")


def checkpoint(uri: str) -> None:
    """Move a SQLite store's write-ahead log into the database file, so that `mlflow.db` alone
    holds every run once a flow run has ended (someone copying it then loses nothing). Best
    effort: a store another process is writing keeps what that process has not committed."""
    db = sqlite_path(uri)
    if db is not None and db.is_file():
        checkpointed(db)


def checkpointed(db: Path) -> bool:
    """Move the write-ahead log of the SQLite database `db` into its file; whether all of it
    went (not if another connection was in the middle of using it, or on any SQLite error)."""
    try:
        con = sqlite3.connect(db, timeout=1)
        try:
            busy, _, _ = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            con.close()
    except sqlite3.Error:  # never in the way of what the caller does next
        return False
    return not busy


@contextmanager
def creating_store(uri: str) -> Iterator[None]:
    """Hold `<db>-lock` (an exclusive OS lock, released if the process dies) for a SQLite store,
    and put a copy of the template in place if the database does not exist yet; nothing for a
    tracking server, which serialises creation itself."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    tune_sqlite()
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(db.with_name(db.name + "-lock"), timeout=LOCK_TIMEOUT_SECONDS):
        if not db.exists():
            copy_template(db)
        yield


def template_folder() -> Path | None:
    """Where the templates live, or None when they are off."""
    return machine_cache(TEMPLATE_ENV, "mlflow-store")


def template_path() -> Path | None:
    """This MLflow version's template (which may not exist yet), or None when they are off."""
    folder = template_folder()
    if folder is None:
        return None
    return folder / f"mlflow-{importlib.metadata.version('mlflow')}.db"


def copy_template(db: Path) -> bool:
    """Write the template (made first if missing) to `db`, which must not exist; whether it was
    written (if not, MLflow creates the store as it always does)."""
    template = template_path()
    if template is None:
        return False
    try:
        if not usable(template):
            make_template(template)
        part = db.with_name(f".{db.name}.{os.getpid()}.part")
        try:
            shutil.copyfile(template, part)
            os.replace(part, db)
        finally:
            part.unlink(missing_ok=True)
    except Exception:  # noqa: BLE001 - the template only saves time: whatever went wrong with
        return False  # it (a full cache disk, MLflow failing to make it), MLflow makes the store
    return True


def usable(template: Path) -> bool:
    """The template is a SQLite database with MLflow's revision recorded and no experiment, in
    the rollback-journal mode (one self-contained file)."""
    if not template.is_file():
        return False
    try:
        with sqlite3.connect(f"{template.resolve().as_uri()}?mode=ro", uri=True) as con:
            revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
            experiments = con.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        con.close()
    except sqlite3.Error:
        return False
    # in WAL mode, a file copied alone could miss writes left in its -wal: made again
    return len(revision) == 1 and experiments == 0 and mode == "delete"


def make_template(template: Path) -> None:
    """An empty store made by MLflow itself (every migration run), its Default experiment
    removed, renamed into place at `template` whole."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent, prefix=".making-") as tmp:
        made = Path(tmp) / "store.db"
        store = SqlAlchemyStore(f"sqlite:///{made}", (Path(tmp) / "mlruns").as_uri())
        store.engine.dispose()
        with sqlite3.connect(made) as con:
            (experiment,) = con.execute("SELECT experiment_id FROM experiments").fetchone()
            con.execute("DELETE FROM experiment_tags WHERE experiment_id = ?", (experiment,))
            con.execute("DELETE FROM experiments WHERE experiment_id = ?", (experiment,))
        # One self-contained file: MLflow's connections wrote in WAL mode (tune_sqlite), whose
        # latest writes stay in store.db-wal until a checkpoint. (A copy turns to WAL when first
        # opened.) SQLite leaves the mode as it is, saying so, if another connection holds it.
        whole = checkpointed(made)
        mode = con.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
        con.close()
        if not whole or mode != "delete":
            raise sqlite3.OperationalError(f"{made} is still open elsewhere ({mode} mode)")
        os.replace(made, template)
