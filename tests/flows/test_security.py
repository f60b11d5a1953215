"""Nothing listens beyond this machine, params are data not code, pickles are never loaded,
downloads are HTTPS and hash-checked, and a tracking password is never recorded."""

import ast
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

import flows.cli
import tasks.tracking.runs
from flows.cli import app
from flows.compare import compare_activations
from tasks.core.config import load_config
from tasks.core.paths import IDX_FILES
from tasks.data.download import MIRRORS, SHA256
from tasks.training.models import load_weights

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    p for folder in ("flows", "tasks", "benchmarks") for p in (ROOT / folder).rglob("*.py")
)
SECRET_URI = "https://alice:s3cret@mlflow.example.org:5000/"
runner = CliRunner()


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call of something named `name` (e.g. np.load, yaml.load) in the project's code."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == name:
                    found.append((path, node))
    return found


# --- servers bind to 127.0.0.1 -------------------------------------------------------------------


def _ui_command(monkeypatch, tmp_path, *args: str) -> list[str]:
    """The command `actlab ui ARGS` would exec, captured instead of run."""
    captured: list[list[str]] = []
    monkeypatch.setattr(flows.cli.os, "execv", lambda exe, cmd: captured.append(cmd))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = runner.invoke(app, ["ui", "-p", str(ROOT / "params.yaml"), *args])
    assert result.exit_code == 0, result.output
    assert len(captured) == 1
    return captured[0]


def test_mlflow_ui_binds_loopback_by_default(monkeypatch, tmp_path):
    cmd = _ui_command(monkeypatch, tmp_path)
    assert cmd[1:4] == ["-m", "mlflow", "ui"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--backend-store-uri") + 1] == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_mlflow_ui_binds_elsewhere_only_when_asked(monkeypatch, tmp_path):
    cmd = _ui_command(monkeypatch, tmp_path, "--host", "0.0.0.0", "--port", "5123")
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--port") + 1] == "5123"


def test_docs_and_scripts_start_servers_on_loopback_only():
    from prefect.settings import get_current_settings

    assert get_current_settings().server.api.host == "127.0.0.1"  # `prefect server start`
    docs = [ROOT / "README.md", ROOT / "Makefile", *ROOT.glob("docs/*.md")]
    texts = {p: p.read_text(encoding="utf-8") for p in docs}
    texts |= {p: p.read_text(encoding="utf-8") for p in ROOT.glob(".ci/*")}
    for path, text in texts.items():
        assert "0.0.0.0" not in text, path
        for line in re.findall(r".*(?:prefect server start|mlflow (?:ui|server)).*", text):
            host = re.search(r"--host[ =](\S+)", line)
            assert host is None or host.group(1) == "127.0.0.1", (path, line)


def test_ui_on_a_tracking_server_does_not_echo_its_password(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["ui", "-p", str(ROOT / "params.yaml"), "--set", f"tracking.uri={SECRET_URI}"]
    )
    assert result.exit_code == 0
    assert "https://alice:***@mlflow.example.org:5000/" in result.stderr
    assert "s3cret" not in result.output


# --- params are data, pickles are never loaded ---------------------------------------------------


def test_yaml_is_only_read_with_the_safe_loader():
    assert _calls("safe_load"), "expected yaml.safe_load somewhere"
    for name in ("load", "unsafe_load", "full_load", "load_all"):
        for path, call in _calls(name):
            func = call.func
            module = func.value.id if isinstance(func, ast.Attribute) else ""
            assert module != "yaml", f"{path}:{call.lineno} calls yaml.{name}"


def test_every_np_load_refuses_pickles():
    calls = _calls("load")
    np_loads = [(p, c) for p, c in calls if isinstance(c.func, ast.Attribute)]
    np_loads = [(p, c) for p, c in np_loads if getattr(c.func.value, "id", "") == "np"]
    assert len(np_loads) >= 4  # data, train, evaluate, the benchmark
    for path, call in np_loads:
        kw = {k.arg: k.value for k in call.keywords}
        assert "allow_pickle" in kw, f"{path}:{call.lineno}: np.load without allow_pickle=False"
        assert isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False


def test_a_weights_file_holding_a_pickle_is_refused_not_run(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, np.array([{"not": "weights"}], dtype=object))  # an object array: a pickle
    with pytest.raises(ValueError, match="allow_pickle=False"):
        load_weights(str(path))


# --- downloads -----------------------------------------------------------------------------------


def test_built_in_mirrors_are_https_and_every_file_has_a_sha256():
    for dataset, bases in MIRRORS.items():
        assert bases and all(b.startswith("https://") for b in bases), dataset
        assert set(SHA256[dataset]) == set(IDX_FILES.values())
        assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in SHA256[dataset].values())


# --- a password in tracking.uri is never recorded -----------------------------------------------


class _RecordingClient:
    """Stands in for MlflowClient against a tracking server: records everything it is given."""

    def __init__(self, tracking_uri: str):
        self.seen: list = [tracking_uri]
        _RecordingClient.instances.append(self)

    def _take(self, *args, **kwargs):
        self.seen.append((args, kwargs))

    def get_experiment_by_name(self, name):
        return None

    def create_experiment(self, name, artifact_location=None, tags=None):
        self._take(name, artifact_location, tags)
        return "1"

    def create_run(self, experiment_id, run_name=None, tags=None):
        self._take(experiment_id, run_name, tags)
        return SimpleNamespace(info=SimpleNamespace(run_id="r1"))

    def search_runs(self, *args, **kwargs):
        return []

    log_dict = log_batch = set_terminated = _take


def test_a_tracking_password_is_not_in_params_tags_or_logs(monkeypatch, caplog):
    _RecordingClient.instances = []
    monkeypatch.setattr(tasks.tracking.runs, "MlflowClient", _RecordingClient)
    cfg = load_config(ROOT / "params.yaml", [f"tracking.uri={SECRET_URI}"])

    with caplog.at_level(logging.DEBUG), tasks.tracking.runs.parent_run(cfg) as run:
        assert run.tracking_uri == SECRET_URI  # the client itself still gets the password

    (client,) = _RecordingClient.instances
    recorded = repr(client.seen[1:])  # everything logged to MLflow, after the constructor
    assert "alice:***@mlflow.example.org" in recorded  # the redacted URI is what is recorded
    assert "s3cret" not in recorded
    assert "s3cret" not in caplog.text


def test_a_tracking_password_is_not_in_prefects_flow_run_parameters():
    cfg = load_config(ROOT / "params.yaml", [f"tracking.uri={SECRET_URI}"])
    stored = compare_activations.serialize_parameters({"config": cfg})
    assert stored["config"]["tracking"]["uri"] == "https://alice:***@mlflow.example.org:5000/"
    assert "s3cret" not in repr(stored)
    assert cfg.tracking.uri == SECRET_URI  # the run itself keeps what it needs
