"""The stacking benchmark measures both ways on the same grid and says whether they agree to the
bit (speed itself is for the benchmark run, never for a test)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_stack.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_stack", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(wall: float, prints: list[dict]) -> dict:
    timing = {"wall": wall, "train": wall / 2, "epoch0": wall / 4, "fingerprint": prints}
    return {"networks": len(prints), "cold": timing, "warm": timing}


def _print(activation: str, weights: str) -> dict:
    history = [["0x1.0p+0"] * 4]
    return {"activation": activation, "status": "ok", "reason": "", "history": history,
            "weights": weights}  # fmt: skip


def test_report_gives_medians_ratios_and_says_when_results_differ(bench):
    same = [_print("relu", "aa")]
    results = {
        ("mlp", "stacked"): [_run(1.0, same), _run(3.0, same), _run(2.0, same)],
        ("mlp", "sequential"): [_run(4.0, same), _run(5.0, same), _run(6.0, same)],
    }
    text = "\n".join(bench.report(results, ["mlp"]))
    assert "mlp 784-128-10 x 1 networks (median of 3 runs)" in text
    # medians 2.0 and 5.0: sequential / stacked = 2.5
    assert "cold wall s 2.000 5.000 2.50" in " ".join(text.split())
    assert "bit-identical across all 12 runs" in text
    results[("mlp", "sequential")][1] = _run(5.0, [_print("relu", "bb")])
    text = "\n".join(bench.report(results, ["mlp"]))
    assert "DIFFERENT" in text and "bit-identical" not in text


@pytest.mark.slow  # ten tutorial networks compiled one by one, then stacked: about 30 s
def test_both_ways_train_the_default_tutorial_grid_to_the_same_bits(bench, tmp_path):
    rng = np.random.default_rng(0)

    def pixels(n):  # 8-bit pixels scaled to [0, 1], as preprocessing writes them
        return (rng.integers(0, 256, (n, 784)) / np.float32(255)).astype(np.float32)

    path = tmp_path / "splits.npz"
    np.savez(
        path, x_train=pixels(500), y_train=rng.integers(0, 10, 500), x_val=pixels(100),
        y_val=rng.integers(0, 10, 100), n_classes=10,
    )  # fmt: skip
    stacked = bench.measure("tutorial", "stacked", str(path), epochs=2)
    sequential = bench.measure("tutorial", "sequential", str(path), epochs=2)
    assert stacked["networks"] == sequential["networks"] == 10
    prints = [r[run]["fingerprint"] for r in (stacked, sequential) for run in ("cold", "warm")]
    assert all(p == prints[0] for p in prints)
    assert {p["status"] for p in prints[0]} >= {"diverged"}  # the tutorial's grid: some diverge
    assert all(r[run]["wall"] > r[run]["train"] > 0 for r in (stacked, sequential)
               for run in ("cold", "warm"))  # fmt: skip
