"""What MLflow's SQLite store costs a child run, in the journal mode the project writes it in
(WAL, synced at checkpoints: tasks.tracking.store.tune_sqlite) against SQLite's default
(rollback journal, synced at every commit).

Each mode runs in a fresh Python process on a fresh store that MLflow makes, then fills with N
runs. Per run, three of the calls a flow makes: the run's creation (with a flow's tags), a batch
of a network's test metrics with its description, and its end. Modes alternate round after
round, so a passing load slows both alike; the figures are medians over every call of a mode.

  python benchmarks/bench_store.py [--runs N] [--rounds R]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALLS = ("create", "batch", "end")


def measure(mode: str, runs: int) -> dict:
    """Seconds of each call, `runs` runs on a fresh store written in `mode` (wal | delete), and
    the store's folder."""
    import sqlite3

    from mlflow import MlflowClient
    from mlflow.entities import Metric, RunTag

    from tasks.tracking import store

    folder = Path(tempfile.mkdtemp(prefix=f"bench-store-{mode}-"))  # main() removes it
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    if mode == "wal":
        store.tune_sqlite()  # what a flow does before it opens the store
    client = MlflowClient(tracking_uri=uri)  # MLflow makes the store (no template)
    experiment = client.create_experiment("bench", (folder / "mlruns").as_uri())
    with sqlite3.connect(folder / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == mode
    con.close()
    tags = {"model": "mlp", "activation": "relu", "seed": "0", "status": "running"}
    metrics = [Metric(f"z_test_accuracy_class_{k}", 0.9, 0, 0) for k in range(10)]
    metrics += [Metric("test_loss", 0.3, 0, 0), Metric("test_accuracy", 0.9, 0, 0)]
    seconds: dict[str, list[float]] = {call: [] for call in CALLS}
    for _ in range(runs):
        start = time.perf_counter()
        run_id = client.create_run(experiment, run_name="mlp/relu/seed=0", tags=tags).info.run_id
        created = time.perf_counter()
        client.log_batch(run_id, metrics=metrics, tags=[RunTag("mlflow.note.content", "ok")])
        logged = time.perf_counter()
        client.set_terminated(run_id, "FINISHED")
        ended = time.perf_counter()
        seconds["create"].append(created - start)
        seconds["batch"].append(logged - created)
        seconds["end"].append(ended - logged)
    return {"folder": str(folder), **seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60, help="runs per store (default 60)")
    parser.add_argument("--rounds", type=int, default=3, help="stores per mode (default 3)")
    parser.add_argument("--mode", choices=("wal", "delete"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # one measurement, in this fresh process
        print(json.dumps(measure(args.mode, args.runs)))
        return
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    seconds = {mode: {call: [] for call in CALLS} for mode in ("delete", "wal")}
    for round_ in range(args.rounds):
        for mode in ("delete", "wal") if round_ % 2 == 0 else ("wal", "delete"):
            out = subprocess.run(
                [sys.executable, __file__, "--mode", mode, "--runs", str(args.runs)],
                env=env, cwd=root, capture_output=True, text=True, check=True, timeout=600,
            )  # fmt: skip
            measured = json.loads(out.stdout.strip().splitlines()[-1])
            shutil.rmtree(measured.pop("folder"), ignore_errors=True)
            for call, values in measured.items():
                seconds[mode][call] += values
    print(f"load {os.getloadavg()[0]:.2f}; {args.rounds} stores x {args.runs} runs per mode")
    print(f"{'ms, median':12s} {'rollback journal':>17s} {'WAL + NORMAL':>13s} {'ratio':>6s}")
    for call in CALLS:
        before = statistics.median(seconds["delete"][call]) * 1000
        after = statistics.median(seconds["wal"][call]) * 1000
        print(f"{call:12s} {before:17.2f} {after:13.2f} {after / before:6.2f}")


if __name__ == "__main__":
    main()
