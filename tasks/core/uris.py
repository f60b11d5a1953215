"""Tracking URIs in one place: which store, where its artifacts go, what may be shown of a URI, and
the MLflow UI page of a run. Plain strings only (no MLflow import).

Default store: SQLite `mlflow.db` in the working folder, artifacts in `mlruns/` beside it (MLflow
3.13+ refuses the plain file store). `tracking.uri` in params, else `MLFLOW_TRACKING_URI`,
overrides it.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

LOCAL_UI = "http://127.0.0.1:5000"  # where `actlab ui` serves the MLflow UI by default


def resolve_tracking_uri(uri: str | None) -> str:
    """`uri` (tracking.uri), else $MLFLOW_TRACKING_URI, else sqlite:///<here>/mlflow.db."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{Path('mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def artifact_location(uri: str) -> str | None:
    """For a SQLite store: `mlruns/` beside the database file. A server decides for itself."""
    db = sqlite_path(uri)
    return None if db is None else (db.resolve().parent / "mlruns").as_uri()


def redact_uri(uri: str) -> str:
    """The URI with any password replaced, for what is logged or shown."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def ui_base(tracking_uri: str) -> tuple[str, str]:
    """(base URL of the MLflow UI showing this store, a note on how to reach it). A tracking
    server is its own UI (credentials, query and fragment dropped); a SQLite store is shown by
    `actlab ui` on 127.0.0.1:5000."""
    parts = urlsplit(tracking_uri)
    if parts.scheme in ("http", "https"):
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        base = urlunsplit(parts._replace(netloc=netloc, query="", fragment=""))
        return base.rstrip("/"), ""
    return LOCAL_UI, " (start the UI with `actlab ui` to open it)"


# MLflow 3.17's UI opens an experiment on its GenAI pages unless the URL (or a switch the browser
# remembers) asks for model training; older UIs ignore the parameter.
MODEL_TRAINING_VIEW = "?workflowType=machine_learning"


def run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    """The page of one run in the MLflow UI at `base_url` (its model-training view), without any
    user name or password `base_url` carries (the URL is logged and shown)."""
    parts = urlsplit(base_url)
    if parts.username is not None or parts.password is not None:
        netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        base_url = urlunsplit(parts._replace(netloc=netloc))
    base = base_url.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}{MODEL_TRAINING_VIEW}"


def experiment_url(base_url: str, experiment_id: str) -> str:
    """The runs of one experiment in the MLflow UI at `base_url`."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs{MODEL_TRAINING_VIEW}"
