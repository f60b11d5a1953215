"""parent_run on the way out: no child run of an interrupted or failed flow stays RUNNING."""

import signal

import pytest
from mlflow.tracking import MlflowClient
from prefect.exceptions import TerminationSignal

from tasks.core.config import Cell, load_config
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
def test_open_children_end_with_the_parent(tmp_path, raised, status):
    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"])
    client = MlflowClient(cfg.tracking.uri)
    cell = Cell(model="mlp", activation="relu", seed=0)

    with pytest.raises(type(raised)), tracking.parent_run(cfg) as run:
        open_child = tracking.start_child_run(client, run, cell, {"seed": 0})
        done_child = tracking.start_child_run(client, run, cell, {"seed": 1})
        tracking.end_run(client, done_child, "FINISHED")
        raise raised

    assert client.get_run(run.parent_run_id).info.status == status
    assert client.get_run(open_child).info.status == status
    assert client.get_run(done_child).info.status == "FINISHED"  # a finished child stays so
