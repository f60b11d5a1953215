"""The benchmark's contenders train the same thing, round-robin, so its ratios compare like with
like; its whole-run figures are the right arithmetic on what MLflow recorded (speed itself is
for `make bench`, never for a test)."""

import argparse
import importlib.util
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from benchmarks import whole_run

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_training", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(bench, n_train: int = 1_000, n_test: int = 200):
    rng = np.random.default_rng(1)

    def pixels(n):  # 8-bit pixels scaled to [0, 1], as preprocessing writes them
        return (rng.integers(0, 256, (n, 784)) / np.float32(255)).astype(np.float32)

    def labels(n):
        return rng.integers(0, 10, n).astype(np.uint8)

    return bench.Data(
        pixels(n_train), labels(n_train), pixels(100), labels(100), pixels(n_test),
        labels(n_test), "test data",
    )  # fmt: skip


@pytest.mark.parametrize("hidden", [(), (32,)], ids=["784-10", "784-32-10"])
def test_race_runs_every_contender_and_the_exact_three_agree(bench, hidden):
    arch = bench.Arch(hidden=hidden, keras_min=1.0)
    results = bench.race(_data(bench), arch, epochs=2)
    assert set(results) == {"project", "keras_fit", "tf1_loop", "numpy_loop"}
    for r in results.values():
        assert len(r.epoch_seconds) == 2 and all(s > 0 for s in r.epoch_seconds)
        assert np.isfinite(r.final_cost)
    # Same batches in the same order from the same weights: the same weights after 2 epochs.
    reference = results["numpy_loop"].weights
    for name in ("project", "tf1_loop"):
        for got, want in zip(results[name].weights, reference, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    # Keras shuffles its own way, so only: it trained (its weights left the shared start).
    start = bench.initial_weights(arch)
    moved = [
        not np.allclose(k, w) for k, w in zip(results["keras_fit"].weights, start, strict=True)
    ]
    assert all(moved)


def test_the_diagnostics_race_times_both_and_changes_no_weight(bench):
    cost = bench.race_diagnostics(_data(bench), bench.Arch(hidden=(32,), keras_min=1.0), epochs=2)
    assert len(cost.probe_seconds) == 2 and all(s > 0 for s in cost.probe_seconds)
    assert len(cost.on.epoch_seconds) == len(cost.off.epoch_seconds) == 2
    assert math.isfinite(cost.ratio) and cost.ratio > 0
    assert cost.same_weights  # the probe reads the weights and writes none
    assert cost.on.final_cost == cost.off.final_cost


def test_the_per_epoch_ratios_meet_the_issues_targets_or_fail_and_end_in_the_summary(bench):
    # 784-10 may be at most 1.2 x NumPy (issue 14): 0.088 against 0.071 is 1.24, a FAIL.
    spe = {"project": 0.088, "keras_fit": 0.50, "tf1_loop": 0.31, "numpy_loop": 0.071}
    rows = {label: (round(value, 2), t) for label, value, t in bench._ratios(bench.TUTORIAL, spe)}
    assert rows["tf1_loop/project"] == (3.52, None)
    (keras, to_keras), (numpy_x, to_numpy) = rows["keras_fit/project"], rows["project/numpy_loop"]
    assert (keras, str(to_keras), to_keras.met(keras)) == (5.68, "target >= 5", True)
    assert (numpy_x, str(to_numpy), to_numpy.met(numpy_x)) == (1.24, "target <= 1.2", False)
    assert bench._ratio_line("project/numpy_loop", 1.24, to_numpy).split()[-1] == "FAIL"
    assert bench._ratios(bench.TUTORIAL, {**spe, "project": 0.085})[2][2].met(0.085 / 0.071)
    # Racing prints them and hands the summary a line for each ratio that has a target, named by
    # its network; the mlp has none against NumPy.
    mlp = bench.Arch(hidden=(32,), keras_min=0.01)
    lines = bench.bench_arch(_data(bench), mlp, epochs=2)
    assert [line.split()[:2] for line in lines] == [["784-32-10:", "keras_fit/project"]]
    assert lines[0].split()[-3:-1] == [">=", "0.01"] and lines[0].endswith("PASS")
    tutorial = bench.Arch(hidden=(), keras_min=1e6, numpy_max=1e6)
    lines = bench.bench_arch(_data(bench), tutorial, epochs=2)
    assert [(line.split()[1], line.split()[-1]) for line in lines] == [
        ("keras_fit/project", "FAIL"), ("project/numpy_loop", "PASS")
    ]  # fmt: skip


# ------------------------------------------------------------------------ the whole run's figures
# benchmarks/whole_run.py reads what `actlab run` wrote to MLflow; here, on a store written by
# hand with known times, so every figure has one right value.


def _store_with_children(sqlite_store: str) -> tuple[str, str]:
    """A parent with five children (times in ms, as MLflow keeps them), created out of order, and
    one child of another parent; returns (parent run id, path of the SQLite file)."""
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("bench")
    parent = client.create_run(experiment, start_time=500, run_name="compare").info.run_id
    other = client.create_run(experiment, start_time=500, run_name="other").info.run_id
    # name: (start, end, epoch_seconds, activation, seed, learning rate, status, accuracy, cost)
    nan = float("nan")
    children = {
        "mlp/relu/seed=0/lr=0.3": (6550, 7700, [0.5, 0.5], "relu", 0, 0.3, "ok", 0.80, 0.50),
        "mlp/relu/seed=0": (1000, 2600, [0.5, 0.5], "relu", 0, 0.1, "ok", 0.81, 0.40),
        "mlp/relu/seed=1": (2650, 3900, [0.5, 0.5], "relu", 1, 0.1, "ok", 0.82, 0.41),
        "mlp/tanh/seed=0": (3950, 5400, [0.4, 0.4], "tanh", 0, 0.1, "diverged", nan, nan),
        "mlp/tanh/seed=1": (5450, 6500, [0.4, 0.4], "tanh", 1, 0.1, "ok", 0.79, 0.45),
    }
    for name, (start, end, epochs, act, seed, rate, status, acc, cost) in children.items():
        run_id = client.create_run(
            experiment, start_time=start, run_name=name,
            tags={"mlflow.parentRunId": parent, "status": status, "worker.pid": "7"},
        ).info.run_id  # fmt: skip
        params = {"model": "mlp", "activation": act, "seed": seed, "learning_rate": rate}
        ends = [start + 300 + 500 * (e + 1) for e in range(len(epochs))]  # each epoch's end
        metrics = [
            Metric("epoch_seconds", s, t, e)
            for e, (s, t) in enumerate(zip(epochs, ends, strict=True))
        ]
        metrics += [
            Metric("cost", c, t, e) for e, (c, t) in enumerate(zip([9.0, cost], ends, strict=True))
        ]
        metrics.append(Metric("test_accuracy", acc, end - 10, 0))
        client.log_batch(
            run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()]
        )
        client.set_terminated(run_id, end_time=end)
    stray = client.create_run(experiment, start_time=800, tags={"mlflow.parentRunId": other})
    client.set_terminated(stray.info.run_id, end_time=900)
    return parent, sqlite_store.removeprefix("sqlite:///")


def test_the_store_gives_each_networks_times_and_results_in_start_order(sqlite_store):
    parent, db = _store_with_children(sqlite_store)
    children = whole_run.read_children(Path(db), parent)
    assert [c.name for c in children] == [
        "mlp/relu/seed=0", "mlp/relu/seed=1", "mlp/tanh/seed=0", "mlp/tanh/seed=1",
        "mlp/relu/seed=0/lr=0.3",
    ]  # fmt: skip
    first = children[0]
    assert (first.start_ms, first.end_ms, first.epoch_seconds) == (1000, 2600, (0.5, 0.5))
    assert first.first_epoch_ms == 1800 and first.worker == "7"
    assert first.result == ("ok", pytest.approx(0.81), pytest.approx(0.40))  # the LAST cost
    diverged = children[2]
    assert diverged.status == "diverged"
    assert math.isnan(diverged.test_accuracy) and math.isnan(diverged.final_cost)
    assert len(whole_run.read_children(Path(db))) == 6  # without a parent: every child


def test_overhead_per_network_is_the_time_between_two_ends_less_its_epochs(sqlite_store):
    parent, db = _store_with_children(sqlite_store)
    children = whole_run.read_children(Path(db), parent)
    # (2600 - 1000) / 1000 - 1.0 (the first: from its own start), (3900 - 2600) / 1000 - 1.0, ...
    want = [0.6, 0.3, 0.7, 0.3, 0.2]
    assert whole_run.network_overheads(children) == pytest.approx(want)
    # The same graph but for the seed or the learning rate: only relu/0 and tanh/0 are first.
    assert whole_run.first_of_shape(children) == [True, False, True, False, False]
    overheads = whole_run.Overheads.of(children)
    assert overheads.first == pytest.approx((0.6, 0.7))
    assert overheads.rest == pytest.approx((0.3, 0.3, 0.2))
    assert overheads.median == pytest.approx(0.3)
    assert overheads.describe() == (
        "median 0.300 s over 5 networks; first of their shape 0.650 s (2), the rest 0.300 s (3)"
    )
    assert whole_run.epoch_total(children) == pytest.approx(4.6)
    assert whole_run.seconds_to_first_epoch(children, started_ms=300) == pytest.approx(1.5)
    assert whole_run.training_span(children) == pytest.approx(6.7)
    assert whole_run.networks_per_minute(5, 6.7) == pytest.approx(300 / 6.7)


def test_cores_used_are_read_between_the_samples_around_a_stretch():
    samples = [(0, 0.0), (500, 0.1), (1000, 0.6), (1500, 1.1), (2000, 1.2)]
    # from the sample at 500 (at or before 700) to the one at 1500 (at or after 1200): 1 s, 1 s
    assert whole_run.cores_between(samples, 700, 1200) == pytest.approx(1.0)
    assert whole_run.cores_between(samples, 0, 2000) == pytest.approx(0.6)
    assert math.isnan(whole_run.cores_between(samples, 700, 2500))  # not covered
    assert math.isnan(whole_run.cores_between([], 0, 1))


def test_a_child_that_did_not_finish_is_an_error_naming_it(sqlite_store):
    client = MlflowClient(sqlite_store)
    experiment = client.create_experiment("bench")
    client.create_run(experiment, run_name="mlp/relu/seed=0", tags={"mlflow.parentRunId": "p"})
    with pytest.raises(ValueError, match=r"mlp/relu/seed=0 .* has no end time"):
        whole_run.read_children(Path(sqlite_store.removeprefix("sqlite:///")))


def test_results_compare_network_by_network_nan_equal_to_nan(sqlite_store):
    parent, db = _store_with_children(sqlite_store)
    children = whole_run.read_children(Path(db), parent)
    assert whole_run.compare_results(children, children) == []  # the diverged NaNs too
    assert whole_run.describe_comparison([], 5) == (
        "all 5 networks the same (status, test accuracy, final cost)"
    )
    changed = [
        replace(children[0], test_accuracy=0.5),
        replace(children[1], status="degenerate"),
        *children[2:4],
    ]
    differences = whole_run.compare_results(children, changed)
    assert differences == [
        "mlp/relu/seed=0/lr=0.3: only in the first run",
        "mlp/relu/seed=0: test accuracy 0.81 vs 0.5",
        "mlp/relu/seed=1: status ok vs degenerate",
    ]
    assert whole_run.describe_comparison(differences, 5, show=1).startswith(
        "3 DIFFERENCES: mlp/relu/seed=0/lr=0.3: only in the first run (and 2 more)"
    )


def test_each_ratio_is_printed_with_its_target_and_pass_or_fail():
    at_most, at_least = whole_run.Target(2.0), whole_run.Target(1.6, at_least=True)
    assert (str(at_most), str(at_least)) == ("target <= 2", "target >= 1.6")
    assert at_most.met(2.0) and not at_most.met(2.01) and not at_most.met(math.nan)
    assert at_least.met(1.6) and not at_least.met(1.59) and not at_least.met(None)
    line = whole_run.target_line("default grid: wall / Σ epoch_seconds", 3.8, at_most)
    assert line.split() == [*"default grid: wall / Σ epoch_seconds".split(), "3.80", "target",
                            "<=", "2", "FAIL"]  # fmt: skip
    assert whole_run.target_line("x", 1.85, at_least).split()[1:] == ["1.85", "target", ">=", "1.6",
                                                                      "PASS"]  # fmt: skip
    assert whole_run.target_line("x", None, at_most).split()[1:] == ["n/a", "target", "<=", "2",
                                                                     "FAIL"]  # fmt: skip
    free = whole_run.target_line("networks per minute", 75.04, None, "the whole command")
    assert free.split()[-6:] == ["75.04", "(no", "target)", "the", "whole", "command"]
    assert "PASS" not in free and "FAIL" not in free


def test_run_actlab_times_the_command_and_reads_its_memory_and_store(tmp_path, sqlite_store):
    """A stand-in for actlab (a script that holds 200 MB for a moment), so the process side is
    checked without a flow; a failing command is an error showing its output."""
    parent, db = _store_with_children(sqlite_store)
    fake = tmp_path / "actlab"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "block = bytearray(200 * 2**20)  # resident: written through\n"
        "time.sleep(0.6)\n"
        "print('args', sys.argv[1:])\n"
        "sys.exit(3 if '--set' in sys.argv and 'fail=1' in sys.argv else 0)\n"
    )
    fake.chmod(0o755)
    before = time.time() * 1000
    done = whole_run.run_actlab(
        tmp_path / "ok", ["a.b=1"], Path(db), params=Path("p.yaml"), actlab=fake
    )
    assert done.wall_seconds >= 0.6 and done.started_ms >= before - 1
    assert done.peak_process_bytes >= 200 * 2**20  # the script's high-water mark
    assert done.peak_tree_bytes >= done.peak_process_bytes
    assert "args ['run', '-p', 'p.yaml', '--set', 'a.b=1']" in done.log.read_text()
    assert len(done.children) == 6
    with pytest.raises(RuntimeError, match=r"actlab run failed \(3\)(.|\n)*args"):
        whole_run.run_actlab(tmp_path / "bad", ["fail=1"], Path(db), Path("p.yaml"), fake)


def test_a_commands_memory_is_its_own_not_the_benchmarks(tmp_path, sqlite_store):
    """The benchmark holds far more than the command it starts: the command's peak must not
    take the benchmark's size (as the kernel's ru_maxrss of an exec'd child does on Linux)."""
    _, db = _store_with_children(sqlite_store)
    small = tmp_path / "actlab"
    small.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(0.6)\n")
    small.chmod(0o755)
    ballast = b"x" * (600 * 2**20)  # this process, 600 MB larger (written: resident)
    done = whole_run.run_actlab(tmp_path / "small", [], Path(db), Path("p.yaml"), small)
    assert len(ballast) and done.peak_process_bytes < 100 * 2**20, done.peak_process_bytes
    assert done.peak_tree_bytes < 100 * 2**20


def test_parts_are_chosen_by_name_and_skip_flow_leaves_the_per_epoch_parts(bench):
    assert bench.parse_args([]).parts == list(bench.PARTS)
    assert bench.parse_args(["--parts", "dask, whole"]).parts == ["whole", "dask"]
    assert bench.parse_args(["--skip-flow"]).parts == ["speed", "diagnostics"]
    assert not bench.parse_args([]).tiny
    with pytest.raises(argparse.ArgumentTypeError, match="unknown part.*wholerun.*accepted"):
        bench.parse_parts("speed,wholerun")
    # The 100-network grid has 100 networks: 10 activations (all valid for the mlp) x 10 seeds.
    from tasks.core.config import load_config

    grid = load_config(bench.PARAMS, list(bench.FULL.hundred)).grid
    assert len(grid) == 100 and {c.model for c in grid} == {"mlp"}


def test_networks_trained_stacked_share_their_groups_overhead():
    def child(name, start, end, epochs, group=""):
        return whole_run.Child(
            name=name, start_ms=start, end_ms=end, epoch_seconds=epochs, first_epoch_ms=None,
            shape=(), status="ok", test_accuracy=0.8, final_cost=0.4, worker="1", group=group,
        )  # fmt: skip

    g = "mlp/{relu,tanh,gelu}/seed=0"
    children = [
        child("mlp/relu/seed=0", 1000, 2000, (0.5,)),  # alone: 1.0 s, 0.5 s of it training
        # a stacked group of three: 2000 -> 5000 ms is 3 s, 3 x 0.6 s of it training
        child("mlp/relu/seed=1", 2000, 4800, (0.6,), g),
        child("mlp/tanh/seed=1", 2001, 4900, (0.6,), g),
        child("mlp/gelu/seed=1", 2002, 5000, (0.6,), g),
        child("mlp/relu/seed=2", 5000, 5400, (0.3,)),
    ]
    want = [0.5, 0.4, 0.4, 0.4, 0.1]  # (3.0 - 1.8) / 3 for each member of the group
    assert whole_run.network_overheads(children) == pytest.approx(want)


@pytest.mark.slow
def test_the_store_benchmark_prices_both_journal_modes(tmp_path):
    """bench_store.py runs each mode in its own process on a fresh store it then removes, and
    prints a median and a ratio per call."""
    import subprocess

    script = BENCH.parent / "bench_store.py"
    out = subprocess.run(
        [sys.executable, str(script), "--runs", "3", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[2:]}
    assert set(rows) == {"create", "batch", "end"}
    for before, after, ratio in rows.values():
        assert float(before) > 0 and float(after) > 0
        assert float(ratio) == pytest.approx(float(after) / float(before), abs=0.01)
    assert list(tmp_path.iterdir()) == []  # no store left behind


def test_epoch_threads_shows_each_epochs_cores_switches_and_weights(bench, tmp_path, capsys):
    from benchmarks import epoch_threads

    folder = bench.write_synthetic_idx(tmp_path / "idx", n_train=6_000, n_test=500)
    epoch_threads.main(["--data", str(folder), "--epochs", "2"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("784-10, 2 epochs, the project's loop alone")
    rows = [line.split() for line in out[2:4]]
    assert [r[0] for r in rows] == ["1", "2"]
    for _, wall, cpu, cores, switches in rows:
        assert float(wall) > 0 and float(cpu) >= 0 and float(cores) >= 0
        assert switches == "n/a" or int(switches) >= 0
    digest = out[4].split("final weights ")[1]
    assert len(digest) == 16 and int(digest, 16) >= 0
    # The same training again ends with the same hash: it changes only with the numbers.
    epoch_threads.main(["--data", str(folder), "--epochs", "2"])
    assert capsys.readouterr().out.splitlines()[4].split("final weights ")[1] == digest


def test_epoch_threads_refuses_one_epoch_and_a_missing_folder(tmp_path, capsys):
    from benchmarks import epoch_threads

    with pytest.raises(SystemExit):
        epoch_threads.parse_args(["--data", str(tmp_path), "--epochs", "1"])
    assert "--epochs must be at least 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        epoch_threads.parse_args(["--data", str(tmp_path / "nowhere")])
    assert f"no folder {tmp_path / 'nowhere'}" in capsys.readouterr().err
