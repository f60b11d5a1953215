"""`actlab` as a user types it: exit codes, messages, and nothing written for a bad config."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from typer.testing import CliRunner

from flows.cli import app, main
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


# What libraries print on their own, which `actlab run` keeps off the terminal unless -v.
CHATTER = ("absl", "oneDNN", "cuInit", "cuda", "Warning", "Traceback", "Task run", "Flow run")


@pytest.mark.slow  # the flow in a child process
def test_run_prints_a_line_per_network_the_answer_and_the_report_path(tmp_path, idx_folder):
    overrides = _sets(small_overrides(tmp_path, idx_folder))
    done = _actlab("run", "-p", str(PARAMS), *overrides, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    *answer, last = done.stdout.strip().splitlines()
    report = Path(last.removeprefix("report: "))
    assert report.name == "report.html" and report.is_file()
    markdown = (report.parent / "report.md").read_text()
    assert "| tutorial | softmax" in markdown
    # the answer: the report's headline sentences (before its first section), without their
    # Markdown marks
    opening = markdown.split("\n## ", 1)[0]
    assert answer == [
        line.removeprefix("- ").replace("**", "").replace("`", "")
        for line in opening.splitlines()
        if line.startswith("- **")
    ]
    assert answer[0].startswith("tutorial: best is softmax")
    # one line per network as it finishes, with done/total, its outcome and an ETA
    lines = done.stderr.strip().splitlines()
    networks = [line for line in lines if line.startswith("[")]
    assert [n.split()[0] for n in networks] == ["[1/3]", "[2/3]", "[3/3]"], lines
    relu = next(n for n in networks if "tutorial/relu/seed=0" in n)
    assert "diverged    at epoch 0, not scored" in relu and "ETA " in networks[0]
    assert re.search(r"ok +val [01]\.\d{3}  test [01]\.\d{3} +\d+\.\d\d s/epoch", done.stderr)
    assert "done in " in networks[-1] and "ETA" not in networks[-1]
    assert len(lines) == 2 + 3  # grid:, runner:, the networks: nothing else
    assert not [word for word in CHATTER if word in done.stderr], done.stderr


@pytest.mark.slow
def test_verbose_run_shows_prefects_log_with_task_runs_named_by_cell(tmp_path, idx_folder):
    overrides = _sets(small_overrides(tmp_path, idx_folder))
    done = _actlab("run", "-v", "-p", str(PARAMS), *overrides, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # a network trained alone is named by its cell, a stacked group (train.stack) by the group
    assert "Task run 'train mlp/relu/seed=0' - Finished in state Completed()" in done.stderr
    assert "Task run 'train tutorial/{softmax,relu}/seed=0' - Finished" in done.stderr
    assert "Task run 'evaluate tutorial/{softmax,relu}/seed=0' - Finished" in done.stderr
    assert "Task run 'evaluate mlp/relu/seed=0' - Finished" in done.stderr
    assert "[3/3] " in done.stderr  # the progress lines, as Prefect's log shows them
    assert done.stdout.strip().splitlines()[-1].endswith("report.html")


@pytest.mark.slow  # the flow in a child process
def test_offline_is_one_short_error_with_the_fix(tmp_path):
    """No mirror answers (a closed loopback port stands for no network): five lines, no
    traceback, the fix last; -v gives every attempt."""
    overrides = [
        "data.source=mnist",
        f"data.dir={tmp_path / 'data'}",
        "data.mirrors=[http://127.0.0.1:9/]",  # the discard port: nothing listens
        "data.retries=2",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"report.dir={tmp_path / 'reports'}",
    ]
    done = _actlab("run", "-p", str(PARAMS), *_sets(overrides), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 5, done.stderr
    assert lines[2].startswith("error: could not download train-images-idx3-ubyte.gz")
    assert lines[3] == "  (3 more lines: add -v to see them)"
    assert "--set data.source=/usr/share/datasets/fashion-mnist" in lines[4]
    assert "Traceback" not in done.stderr and done.stdout == ""


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


def test_the_command_exits_with_its_code_and_skips_the_last_garbage_collection(
    tmp_path, monkeypatch
):
    """main (the console script) runs the command as `app` does, then freezes what the process
    holds, so Python's collection at exit does not walk it (~2.5 s after a run)."""
    import gc

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["actlab", "run", "-p", "nope.yaml"])
    frozen = gc.get_freeze_count()
    try:
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 2
        assert gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()


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
    *answer, last = result.stdout.strip().splitlines()
    assert last == f"report: {report / 'report.html'}"
    assert answer[0].startswith("tutorial: best is ")  # the answer, as `actlab run` ends
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


def test_a_long_error_is_cut_to_its_first_and_last_lines_unless_verbose(capsys):
    from flows.cli import _error

    message = "could not download f.gz to data/f.gz:\n  - a\n  - b\n  - c\nthe fix"
    _error(RuntimeError(message), verbose=False)
    assert capsys.readouterr().err.splitlines() == [
        "error: could not download f.gz to data/f.gz:",
        "  (3 more lines: add -v to see them)",
        "the fix",
    ]
    _error(RuntimeError(message), verbose=True)
    assert capsys.readouterr().err == f"error: {message}\n"
    _error(RuntimeError("one line\nand the fix"), verbose=False)
    assert capsys.readouterr().err == "error: one line\nand the fix\n"
