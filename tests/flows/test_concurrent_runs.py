"""Two `actlab run` started together in the same fresh project folder: one mlflow.db created by
both, one data cache filled by both. Each run completes with its own parent and children."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prefect.settings import PREFECT_API_URL

from tests.flows.conftest import PARAMS


@pytest.mark.slow
@pytest.mark.timeout(900)  # two flows at once on 2 cores
def test_two_runs_started_together_in_a_fresh_folder_both_complete(tmp_path, idx_folder):
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    env.pop("MLFLOW_TRACKING_URI", None)
    sets = [
        f"data.source={idx_folder}",
        "preprocess.val_size=100",
        "train.epochs=2",
        "train.batch_size=50",
        "sweep.models=[tutorial, mlp]",
        "sweep.activations=[softmax, relu]",
        "models.mlp.hidden_units=[16]",
    ]
    args = [str(Path(sys.executable).with_name("actlab")), "run", "-p", str(PARAMS)]
    args += [word for s in sets for word in ("--set", s)]
    procs = [
        subprocess.Popen(
            args, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]

    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-4000:]
        assert "database is locked" not in err
    reports = {
        tmp_path / out.strip().splitlines()[-1].removeprefix("report: ") for out, _ in outputs
    }
    assert len(reports) == 2 and all(r.is_file() for r in reports)  # one report each

    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("pragma integrity_check").fetchall() == [("ok",)]
        (count,) = con.execute(
            "select count(*) from experiments where name = 'activation-lab'"
        ).fetchone()
        assert count == 1  # created once, though both runs found no store
        runs = con.execute(
            "select r.run_uuid, r.status, t.value from runs r left join tags t "
            "on t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId'"
        ).fetchall()
        experiments = con.execute("select name from experiments").fetchall()
    assert sorted(experiments) == [("Default",), ("activation-lab",)]
    parents = {run_id for run_id, _, parent in runs if parent is None}
    assert len(parents) == 2 and {r.parent.name for r in reports} == parents
    assert {status for _, status, _ in runs} == {"FINISHED"}
    children = [parent for _, _, parent in runs if parent is not None]
    # tutorial x {softmax, relu} + mlp x {relu} under each parent
    assert sorted(children.count(p) for p in parents) == [3, 3]

    # one .npz, its cache manifest (tasks/data/cache.py) and its images as bytes; no temp file
    processed = sorted((tmp_path / "data" / "processed").iterdir(), key=lambda p: p.suffix)
    assert sorted(p.suffix for p in processed) == [".json", ".npz", ".pixels"]
    assert processed[0].stem == processed[1].stem
    assert json.loads(processed[0].read_text())["output"]
    with np.load(processed[1], allow_pickle=False) as npz:
        assert npz["x_train"].shape == (500, 784)
