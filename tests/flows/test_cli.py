"""`actlab` as a user types it: exit codes, messages, and nothing written for a bad config."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from flows.cli import app
from tests.flows.conftest import PARAMS, small_overrides

runner = CliRunner()


def _sets(overrides: list[str]) -> list[str]:
    return [word for o in overrides for word in ("--set", o)]


def _actlab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The installed console script in a child process, on the session's Prefect test server."""
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    actlab = Path(sys.executable).with_name("actlab")
    return subprocess.run(
        [str(actlab), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.slow  # the flow in a child process
def test_run_prints_the_report_path(tmp_path, idx_folder):
    overrides = _sets(small_overrides(tmp_path, idx_folder))
    done = _actlab("run", "-p", str(PARAMS), *overrides, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = Path(done.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.name == "report.md" and report.is_file()
    assert "| tutorial | softmax" in report.read_text()


def test_bad_key_exits_2_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(PARAMS, tmp_path / "params.yaml")
    result = runner.invoke(app, ["run", "--set", "train.epoch=3", "--set", "sweep.seeds=[0,0]"])
    assert result.exit_code == 2
    assert "train.epoch: unknown key (did you mean 'epochs'?)" in result.stderr
    assert "seed listed more than once: 0" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no data, runs, reports


def test_missing_params_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["run", "-p", "nope.yaml"])
    assert result.exit_code == 2
    assert "params file 'nope.yaml' not found" in result.stderr


@pytest.mark.slow  # the flow in a child process
def test_bad_data_exits_1_naming_the_file(tmp_path, idx_folder):
    broken = tmp_path / "broken"
    shutil.copytree(idx_folder, broken)
    (broken / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    overrides = _sets(small_overrides(tmp_path, broken))
    done = _actlab("run", "-p", str(PARAMS), *overrides, cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "train-images-idx3-ubyte.gz" in last


def test_console_script_is_installed_and_rejects_bad_values(tmp_path):
    done = _actlab("run", "-p", str(PARAMS), "--set", "train.lr_decay=1.5", cwd=tmp_path)
    assert done.returncode == 2
    assert "train.lr_decay = 1.5: Input should be less than 1" in done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_report_rebuilds_a_past_run_from_mlflow_alone(tmp_path, idx_folder):
    """A tiny two-seed flow (logging its best network), then `actlab report <parent id>`."""
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from flows.compare import compare_activations
    from tasks.core.config import load_config

    overrides = small_overrides(tmp_path, idx_folder) + [
        "sweep.seeds=[0, 1]",
        "tracking.log_models=true",
    ]
    report = Path(compare_activations(load_config(PARAMS, overrides)))
    parent_id = report.name
    original = {
        name: (report / name).read_text(encoding="utf-8")
        for name in ("results.csv", "summary.csv", "report.md")
    }
    assert len(pd.read_csv(report / "results.csv")) == 6  # 3 cells x 2 seeds
    shutil.rmtree(report)  # nothing left on disk but MLflow's record

    result = runner.invoke(app, ["report", parent_id, "-p", str(PARAMS), *_sets(overrides)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"report: {report / 'report.md'}"
    for name, text in original.items():
        assert (report / name).read_text(encoding="utf-8") == text, name
    assert (report / "report.html").is_file()

    # the best network, logged as an MLflow model, loads and predicts what was measured
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    uri = client.get_run(parent_id).data.tags["best_model_uri"]
    run_id = uri.split("/")[1]
    assert f"best network as an MLflow model: `{uri}`" in original["report.md"]
    assert uri == f"runs:/{run_id}/model"
    model = mlflow.pyfunc.load_model(client.download_artifacts(run_id, "model", str(tmp_path)))
    assert model.metadata.get_input_schema().inputs[0].shape == (-1, 784)
    (npz_path,) = (tmp_path / "data" / "processed").glob("*.npz")
    with np.load(npz_path) as npz:
        x, y = npz["x_test"], npz["y_test"]
    probabilities = model.predict(x)
    assert probabilities.shape == (len(y), 10)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y))
    assert accuracy == pytest.approx(client.get_run(run_id).data.metrics["test_accuracy"])


def test_report_names_a_wrong_run_id(tmp_path, idx_folder):
    overrides = _sets(small_overrides(tmp_path, idx_folder))
    result = runner.invoke(app, ["report", "nope", "-p", str(PARAMS), *overrides])
    assert result.exit_code == 1
    assert "error: no MLflow store at" in result.stderr
