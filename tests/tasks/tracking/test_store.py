"""tasks/tracking/store.py: a new MLflow store is a copy of a template MLflow made once, the same
as the store MLflow makes itself; an existing store is never touched; a broken template or an
unusable cache folder falls back to MLflow creating the store."""

import sqlite3

import pytest
from mlflow import MlflowClient

from tasks.core.uris import artifact_location
from tasks.tracking import store


def _open(db, experiment="activation-lab") -> tuple[MlflowClient, str]:
    uri = f"sqlite:///{db}"
    with store.creating_store(uri):
        client = MlflowClient(tracking_uri=uri)
        experiment_id = client.create_experiment(experiment, artifact_location(uri))
    return client, experiment_id


def _contents(db) -> tuple:
    """The schema, the revision, and each table's row count. Each statement's lines are sorted:
    MLflow's migrations write a table's CHECK constraints in no fixed order (two stores MLflow
    makes in two processes differ in it)."""
    with sqlite3.connect(db) as con:
        schema = sorted(
            sorted(line.strip().rstrip(",") for line in r[0].splitlines())
            for r in con.execute("SELECT sql FROM sqlite_master WHERE sql > ''")
        )
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        revision = con.execute("SELECT version_num FROM alembic_version").fetchall()
    con.close()
    return schema, revision, counts


def _experiments(client: MlflowClient) -> list[tuple[str, str, str]]:
    return sorted(
        (e.experiment_id, e.name, e.artifact_location) for e in client.search_experiments()
    )


@pytest.fixture
def templates(tmp_path, monkeypatch):
    folder = tmp_path / "templates"
    monkeypatch.setenv(store.TEMPLATE_ENV, str(folder))
    return folder


def test_a_new_store_from_the_template_is_the_store_mlflow_makes(tmp_path, templates, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow puts its Default experiment's artifacts in ./mlruns
    first, _ = _open(tmp_path / "first" / "mlflow.db")  # makes the template, then copies it
    assert store.template_path().is_file() and store.usable(store.template_path())
    copied, copied_id = _open(tmp_path / "copied" / "mlflow.db")
    monkeypatch.setenv(store.TEMPLATE_ENV, "off")
    made, made_id = _open(tmp_path / "made" / "mlflow.db")  # by MLflow's migrations, as before

    assert _contents(tmp_path / "copied" / "mlflow.db") == _contents(
        tmp_path / "made" / "mlflow.db"
    )
    assert copied_id == made_id  # the same experiment ids, after the same Default experiment
    for client, folder in ((first, "first"), (copied, "copied"), (made, "made")):
        default, ours = _experiments(client)
        assert default == ("0", "Default", str(tmp_path / "mlruns" / "0"))  # as MLflow makes it
        assert ours[1:] == ("activation-lab", (tmp_path / folder / "mlruns").as_uri())
    run = copied.create_run(copied_id)  # and it takes runs
    copied.log_metric(run.info.run_id, "cost", 0.5)
    assert copied.get_run(run.info.run_id).data.metrics == {"cost": 0.5}


def test_an_existing_store_is_never_replaced(tmp_path, templates):
    db = tmp_path / "mlflow.db"
    client, experiment_id = _open(db)
    run_id = client.create_run(experiment_id).info.run_id
    with store.creating_store(f"sqlite:///{db}"):
        pass
    assert MlflowClient(tracking_uri=f"sqlite:///{db}").get_run(run_id).info.run_id == run_id


def test_a_broken_template_is_made_again(tmp_path, templates):
    _open(tmp_path / "first.db")
    store.template_path().write_bytes(b"not a database at all" * 100)
    client, _ = _open(tmp_path / "second.db")
    assert [e[1] for e in _experiments(client)] == ["Default", "activation-lab"]
    assert store.usable(store.template_path())


def test_an_unusable_template_folder_leaves_mlflow_to_make_the_store(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the template folder would be")
    monkeypatch.setenv(store.TEMPLATE_ENV, str(blocker / "templates"))
    client, _ = _open(tmp_path / "mlflow.db")
    assert [e[1] for e in _experiments(client)] == ["Default", "activation-lab"]
    assert not list(tmp_path.glob(".*.part"))  # no half-copied file left behind


def test_mlflow_failing_to_make_the_template_leaves_it_to_make_the_store(
    tmp_path, templates, monkeypatch
):
    """An error of MLflow's own while the template is made (here: its migrations refused) is no
    reason to fail the run: MLflow makes the store in place, as without a template."""
    from mlflow.exceptions import MlflowException

    def refuse(template):
        raise MlflowException("the migrations failed")

    monkeypatch.setattr(store, "make_template", refuse)
    client, _ = _open(tmp_path / "mlflow.db")
    assert [e[1] for e in _experiments(client)] == ["Default", "activation-lab"]
    assert not store.template_path().exists()


def _journal(db) -> str:
    with sqlite3.connect(db) as con:
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    con.close()
    return mode


def _synchronous(client: MlflowClient) -> int:
    """`PRAGMA synchronous` on a connection of the client's own engine (1 = NORMAL, 2 = FULL)."""
    with client._tracking_client.store.engine.connect() as con:
        return con.exec_driver_sql("PRAGMA synchronous").scalar()


@pytest.mark.parametrize("template", ["on", "off"])
def test_a_store_runs_in_wal_mode_syncing_at_checkpoints(
    tmp_path, templates, monkeypatch, template
):
    """A store copied from the template, or made by MLflow, is written in WAL mode with
    synchronous=NORMAL; the template itself stays one self-contained file."""
    if template == "off":
        monkeypatch.setenv(store.TEMPLATE_ENV, "off")
    db = tmp_path / "mlflow.db"
    client, experiment_id = _open(db)
    run_id = client.create_run(experiment_id).info.run_id
    client.log_metric(run_id, "cost", 0.5)
    assert _journal(db) == "wal"
    assert _synchronous(client) == 1
    if template == "on":
        assert _journal(store.template_path()) == "delete"
        assert not store.template_path().with_name(store.template_path().name + "-wal").exists()
    # a reader outside MLflow sees the committed metric
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as con:
        assert con.execute("SELECT value FROM metrics").fetchall() == [(0.5,)]
    con.close()


def test_a_store_made_before_turns_to_wal_when_opened(tmp_path, monkeypatch):
    """A store in the rollback-journal mode (made before, or by another tool) turns to WAL on
    this project's first connection, its runs kept."""
    monkeypatch.setenv(store.TEMPLATE_ENV, "off")
    db = tmp_path / "mlflow.db"
    client, experiment_id = _open(db)
    run_id = client.create_run(experiment_id).info.run_id
    client._tracking_client.store.engine.dispose()
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    assert _journal(db) == "delete"
    reopened = MlflowClient(tracking_uri=f"sqlite:///{db}")
    reopened._tracking_client.store.engine.dispose()  # MLflow keeps one store per URI
    assert reopened.get_run(run_id).info.run_id == run_id
    assert _journal(db) == "wal"


def test_a_store_another_process_reads_is_opened_in_the_mode_it_has(tmp_path, monkeypatch):
    """Turning a store to WAL needs it to itself for a moment: while another connection holds a
    read lock the store is opened in its rollback-journal mode (after SQLite's busy wait), and
    works."""
    monkeypatch.setenv(store.TEMPLATE_ENV, "off")
    db = tmp_path / "mlflow.db"
    client, experiment_id = _open(db)
    client._tracking_client.store.engine.dispose()
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM runs").fetchone()  # holds a SHARED lock
    try:
        connection = sqlite3.connect(db, timeout=0.1)
        store._on_connect(connection, None)
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1
        assert connection.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] == 2
        connection.close()
    finally:
        reader.execute("ROLLBACK")
        reader.close()


def test_a_template_in_wal_mode_is_made_again(tmp_path, templates):
    """A template in WAL mode could keep writes in a -wal file its copy would miss: it is not
    used, but made again, one self-contained file."""
    _open(tmp_path / "first.db")
    with sqlite3.connect(store.template_path()) as con:
        con.execute("PRAGMA journal_mode=WAL")
    con.close()
    assert not store.usable(store.template_path())
    client, _ = _open(tmp_path / "second.db")
    assert [e[1] for e in _experiments(client)] == ["Default", "activation-lab"]
    assert _journal(store.template_path()) == "delete" and store.usable(store.template_path())
