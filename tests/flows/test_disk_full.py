"""A full disk as a user meets it: `actlab report` and `actlab run` stop with one line naming the
file and what to free; the previous report and the MLflow store stay as they were."""

import hashlib
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.compare import compare_activations
from tasks.core.config import load_config
from tests.conftest import fill
from tests.flows.conftest import PARAMS, small_overrides

runner = CliRunner()


def _sets(overrides: list[str]) -> list[str]:
    return [word for o in overrides for word in ("--set", o)]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        assert con.execute("pragma integrity_check").fetchall() == [("ok",)]
        return dict(con.execute("select name, status from runs").fetchall())


@pytest.mark.slow
def test_report_on_a_full_disk_keeps_the_previous_report_and_the_store(small_disk, idx_folder):
    """Store, artifacts, data and reports all on one small disk, which then fills up."""
    overrides = small_overrides(small_disk, idx_folder)
    report = Path(compare_activations(load_config(PARAMS, overrides)))
    before = {p.name: p.read_bytes() for p in report.iterdir()}
    db = small_disk / "mlflow.db"
    store = _digest(db)
    fill(small_disk)

    result = runner.invoke(app, ["report", report.name, "-p", str(PARAMS), *_sets(overrides)])

    assert result.exit_code == 1, result.output
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: no space left writing the report to {report} (")
    assert f"remove old report folders under {report.parent}" in line
    assert {p.name: p.read_bytes() for p in report.iterdir()} == before
    assert sorted(p.name for p in report.parent.iterdir()) == sorted(["latest", report.name])
    assert _digest(db) == store  # reading a run back wrote nothing
    assert set(_statuses(db).values()) == {"FINISHED"}


@pytest.mark.slow
def test_a_run_whose_weights_find_no_space_fails_saying_what_to_free(
    tmp_path, small_disk, idx_folder
):
    """The data (cached by a first run) on a disk that then fills up; the store elsewhere."""
    overrides = small_overrides(tmp_path, idx_folder)
    overrides = [o for o in overrides if not o.startswith("data.dir=")]
    overrides += [f"data.dir={small_disk / 'data'}", "sweep.models=[tutorial]"]
    compare_activations(load_config(PARAMS, overrides))  # fills the caches on the small disk
    (npz,) = (small_disk / "data" / "processed").glob("*.npz")
    cached = _digest(npz)
    fill(small_disk)

    result = runner.invoke(app, ["run", "-p", str(PARAMS), *_sets(overrides)])

    assert result.exit_code == 1, (result.output, repr(result.exception))
    lines = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, (result.stderr[-3000:], repr(result.exception))
    line = lines[0]
    assert line.startswith("error: no space left writing a network's weights to ")
    assert str(small_disk / "data" / "weights") in line
    assert "set data.dir to a larger disk" in line
    statuses = _statuses(tmp_path / "mlflow.db")
    assert sorted(statuses.values()).count("FAILED") >= 2, statuses  # the parent and a network
    assert "RUNNING" not in statuses.values(), statuses
    assert list((small_disk / "data" / "weights").iterdir()) == []  # nothing half-written kept
    assert _digest(npz) == cached
