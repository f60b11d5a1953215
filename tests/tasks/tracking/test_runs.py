"""parent_run: the process it records, and on the way out: no child run of an interrupted or
failed flow stays RUNNING, and no weights file of its networks stays on disk."""

import os
import signal

import pytest
from mlflow.tracking import MlflowClient
from prefect.exceptions import TerminationSignal

from tasks.core.config import Cell, load_config
from tasks.core.paths import weights_path
from tasks.tracking import runs as tracking


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (KeyboardInterrupt(), "KILLED"),
        (TerminationSignal(signal.SIGTERM), "KILLED"),  # SIGTERM inside a Prefect flow
        (RuntimeError("boom"), "FAILED"),
    ],
    ids=["ctrl-c", "sigterm", "error"],
)
def test_open_children_end_with_the_parent(tmp_path, sqlite_store, raised, status):
    cfg = _config(tmp_path)
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)

    with pytest.raises(type(raised)), tracking.parent_run(cfg) as run:
        open_child = tracking.start_child_run(client, run, cell, {"seed": 0})
        done_child = tracking.start_child_run(client, run, cell, {"seed": 1})
        tracking.end_run(client, done_child, "FINISHED")
        weights = _scratch_weights(cfg, run, done_child)
        raise raised

    assert client.get_run(run.parent_run_id).info.status == status
    assert client.get_run(open_child).info.status == status
    assert client.get_run(done_child).info.status == "FINISHED"  # a finished child stays so
    assert not weights.exists() and not weights.parent.exists()


def _config(tmp_path):
    return load_config(
        None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", f"data.dir={tmp_path / 'data'}"]
    )


def _scratch_weights(cfg, run, child_run_id):
    """A weights file where train_network writes one (data/weights/<parent>/<child>.npz)."""
    path = weights_path(cfg.data.dir, run.parent_run_id, child_run_id)
    assert path.parent.is_dir()  # made when the flow run starts
    path.write_bytes(b"weights")
    return path


def test_a_finished_parent_records_its_process_and_leaves_no_weights(tmp_path, sqlite_store):
    cfg = _config(tmp_path)
    client = MlflowClient(cfg.tracking.uri)

    with tracking.parent_run(cfg) as run:
        child = tracking.start_child_run(
            client, run, Cell(model="mlp", activation="relu", seed=0), {}
        )
        weights = _scratch_weights(cfg, run, child)

    parent = client.get_run(run.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["process.pid"] == str(os.getpid())
    assert {"process.host", "process.start_time", "process.cwd"} <= set(parent.data.tags)
    assert not weights.parent.exists() and (tmp_path / "data" / "weights").is_dir()
