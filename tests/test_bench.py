"""The benchmark's contenders train the same thing, round-robin, so its ratios compare like with
like (speed itself is for `make bench`, never for a test)."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

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
