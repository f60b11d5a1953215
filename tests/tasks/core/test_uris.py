"""tasks/core/uris.py: which store, what may be shown of a URI, where a run's page is."""

from pathlib import Path

from tasks.core.uris import (
    artifact_location,
    experiment_url,
    redact_uri,
    resolve_tracking_uri,
    run_url,
    sqlite_path,
    ui_base,
)

SECRET = "https://alice:s3cret@mlflow.example.org:5000/base?x=1#top"


def test_the_default_store_is_mlflow_db_here_unless_told(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:///x.db") == "sqlite:///x.db"  # params win


def test_sqlite_store_and_its_artifacts_sit_side_by_side(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert sqlite_path(uri) == tmp_path / "mlflow.db"
    assert artifact_location(uri) == (tmp_path / "mlruns").as_uri()
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert artifact_location("http://127.0.0.1:5000") is None
    assert sqlite_path("sqlite:////abs/mlflow.db?timeout=5") == Path("/abs/mlflow.db")


def test_a_password_is_never_shown():
    assert redact_uri(SECRET) == "https://alice:***@mlflow.example.org:5000/base?x=1#top"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_ui_urls_carry_no_credentials():
    base, note = ui_base(SECRET)
    assert base == "https://mlflow.example.org:5000/base" and note == ""
    url = run_url(base, "3", "abc")
    assert url == (
        "https://mlflow.example.org:5000/base/#/experiments/3/runs/abc"
        "?workflowType=machine_learning"  # MLflow 3.17's UI: its runs, not its GenAI overview
    )
    assert "s3cret" not in url and "alice" not in url
    # handed a base that still carries credentials, the page's URL drops them
    direct = run_url("https://alice:s3cret@mlflow.example.org:5000/base/", "3", "abc")
    view = "?workflowType=machine_learning"
    assert direct == f"https://mlflow.example.org:5000/base/#/experiments/3/runs/abc{view}"
    assert (
        run_url("http://bob@127.0.0.1:5000", "1", "r")
        == f"http://127.0.0.1:5000/#/experiments/1/runs/r{view}"
    )
    local, note = ui_base("sqlite:///mlflow.db")
    assert run_url(local + "/", "1", "r") == (
        "http://127.0.0.1:5000/#/experiments/1/runs/r?workflowType=machine_learning"
    )
    assert experiment_url(local, "1") == (
        "http://127.0.0.1:5000/#/experiments/1/runs?workflowType=machine_learning"
    )
    assert "actlab ui" in note
