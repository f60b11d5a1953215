"""`actlab` as a user types it: exit codes, messages, and nothing written for a bad config."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

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
