"""Nothing listens beyond this machine, params are data not code, pickles are never loaded,
downloads are HTTPS and hash-checked, and a tracking password is never recorded."""

import ast
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
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
from tests.flows.conftest import PARAMS, small_overrides

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


# A server command a person could copy from the docs: MLflow's, Prefect's, Dask's, uvicorn.
SERVER = re.compile(
    r"(mlflow\s+(?:server|ui)|prefect\s+server\s+start|dask[ -](?:scheduler|worker)|uvicorn)\b"
)
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
# Dask listens on every interface unless told; the others default to 127.0.0.1 (checked below).
MUST_NAME_A_HOST = ("dask",)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _commands(text: str, markdown: bool = True) -> list[str]:
    """What a person would copy: each command of a code block (or of a script), its
    backslash-continued lines joined, and each inline `code` span, even one that wraps across
    lines of a paragraph."""
    joined = re.sub(r"\\\n\s*", " ", text)  # `cmd \` + newline + `  --flag` -> one line
    code = "\n".join(FENCE.findall(joined)) if markdown else joined
    found = [" ".join(line.split()) for line in code.splitlines()]
    if markdown:
        spans = re.findall(r"`([^`]+)`", FENCE.sub("", joined))
        found += [" ".join(span.split()) for span in spans]
    return [c for c in found if SERVER.search(c)]


def _exposures(text: str, markdown: bool = True) -> list[str]:
    """Server commands that would listen beyond this machine without saying it is meant: a host
    other than loopback, unless the command's comment calls it the cluster address; no host at
    all for a server that listens everywhere by default."""
    problems = []
    for command in _commands(text, markdown):
        code, _, comment = command.partition("#")
        for start in SERVER.finditer(code):
            rest = code[start.start() :]
            host = re.search(r"--host[ =](\S+)", rest)
            marked = "cluster address" in comment
            if host is None:
                if start.group(1).startswith(MUST_NAME_A_HOST):
                    problems.append(f"no --host (listens on every interface): {command}")
            elif host.group(1) not in LOOPBACK and not marked:
                problems.append(f"--host {host.group(1)} not the cluster address: {command}")
    return problems


def test_the_scan_sees_what_a_person_would_copy():
    two_lines = "```bash\nmlflow server \\\n    --port 5000 --host 10.1.2.3\n```\n"
    assert _exposures(two_lines) == [
        "--host 10.1.2.3 not the cluster address: mlflow server --port 5000 --host 10.1.2.3"
    ]
    wrapped = "Start it with `prefect server start\n--host 10.1.2.3` on the box.\n"
    assert len(_exposures(wrapped)) == 1
    assert len(_exposures("```\ndask scheduler --port 8786\n```\n")) == 1  # every interface
    marked = "```\ndask scheduler --host 10.0.0.5  # 10.0.0.5: the cluster address\n```\n"
    assert _exposures(marked) == []
    loopback = "```\nmlflow ui \\\n  --host 127.0.0.1\nprefect server start --port 4300\n```\n"
    assert _exposures(loopback) == []


def test_docs_and_scripts_start_servers_on_loopback_only():
    from mlflow.cli import server
    from prefect.settings import get_current_settings

    # what a command without --host binds: `prefect server start`, `mlflow server` / `mlflow ui`
    assert get_current_settings().server.api.host == "127.0.0.1"
    assert next(p.default for p in server.params if p.name == "host") == "127.0.0.1"
    docs = [ROOT / "README.md", ROOT / "Makefile", *ROOT.glob("docs/*.md"), *ROOT.glob(".ci/*")]
    seen = 0
    for path in docs:
        text = path.read_text(encoding="utf-8")
        markdown = path.suffix == ".md"
        assert "0.0.0.0" not in text, path
        assert _exposures(text, markdown) == [], path
        seen += len(_commands(text, markdown))
    assert seen >= 6  # the scan found the docs' server commands (Prefect, Dask, MLflow)


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_health(url: str, server: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the MLflow server at {url} did not answer within {seconds} s")


def _sqlite_text(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return "\n".join(con.iterdump())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_tracking_password_reaches_nothing_a_flow_records(tmp_path, idx_folder, caplog):
    """The whole flow against a real MLflow server (on loopback) whose URI carries a password:
    every param, tag, metric, dataset input and artifact in MLflow, the report, the Prefect
    server's records and the logs are searched for it."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    password = "pw-e2e-7f3a9c"  # found nowhere else in the suite
    port = _free_port()
    store, artifacts = tmp_path / "server.db", tmp_path / "server-artifacts"
    log_path = tmp_path / "mlflow-server.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{store}", "--artifacts-destination", str(artifacts),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        _wait_for_health(f"http://127.0.0.1:{port}", server, log_path)
        overrides = [o for o in small_overrides(tmp_path, idx_folder) if "tracking.uri" not in o]
        uri = f"http://alice:{password}@127.0.0.1:{port}"
        overrides += [f"tracking.uri={uri}", "tracking.log_models=true"]
        with caplog.at_level(logging.DEBUG):
            report = Path(compare_activations(load_config(PARAMS, overrides)))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()

    recorded = _sqlite_text(store)  # every run, param, tag, metric, dataset input of MLflow
    assert report.name in recorded and "alice:***@127.0.0.1" in recorded  # it was all logged
    assert password not in recorded
    files = [p for p in [*artifacts.rglob("*"), *report.rglob("*")] if p.is_file()]
    assert any(p.name == "MLmodel" for p in files) and any(p.name == "report.md" for p in files)
    for path in files:
        assert password.encode() not in path.read_bytes(), path
    prefect_db = PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split(":///", 1)[1]
    assert password not in _sqlite_text(Path(prefect_db))  # parameters, artifacts, logs
    with get_client(sync_client=True) as prefect:
        assert prefect.read_artifacts()  # the report's artifacts were recorded there
    assert password not in caplog.text
