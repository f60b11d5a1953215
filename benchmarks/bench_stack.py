"""Does training networks stacked in one program (tasks.training.stack.fit_stacked) pay, against
fit_network one network after another? And does it give the same numbers?

Two grids of params.yaml's defaults (batch 100, SGD at 0.1 with decay 0.05, diagnostics on, seed 0),
E epochs each, on Debian's Fashion-MNIST through the project's own preprocessing:

  tutorial   784-10 x the 10 default activations (7 of them diverge in epoch 0 with its cost)
  mlp        784-128-10 x the 9 default activations that may stand in a hidden layer

Each measurement runs in a fresh Python process (so "cold" includes tracing and XLA compilation,
as the first network of a shape pays in a flow run), and then once more in that process with fresh
networks ("warm": the compiled programs reused, as later seeds and learning rates of a grid find
them). Measurements run round-robin, stacked and sequential alternating which goes first, over
R repeats, so a passing load slows both alike; the figures are medians over the repeats, with the
load average before and after each round.

  wall      seconds from building the networks to the last result (compilation included)
  train     the sum of epoch_seconds over networks and epochs (training alone: stacked epochs
            share their seconds among the networks they trained)
  epoch 0   the sum of epoch_seconds in epoch 0, when every network still trains

Every run's results are fingerprinted (each network's per-epoch cost, validation loss and accuracy
to the bit, and a sha256 of its final weights): stacked and sequential must agree exactly.

  python benchmarks/bench_stack.py [--data FOLDER] [--epochs E] [--repeats R] [--shapes ...]
"""

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # less of TensorFlow's C++ start-up chatter

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
SEED = 0
MODES = ("stacked", "sequential")
SHAPES = {"tutorial": "784-10", "mlp": "784-128-10"}


# ------------------------------------------------------------------------ one measurement (child)


def _fingerprint(nets, fits) -> list[dict]:
    out = []
    for net, fit in zip(nets, fits, strict=True):
        weights = hashlib.sha256(b"".join(w.tobytes() for w in net.numpy_weights())).hexdigest()
        history = [
            [float(r[k]).hex() for k in ("cost", "val_loss", "val_accuracy", "learning_rate")]
            for r in fit["history"]
        ]
        out.append(
            {
                "activation": net.activation,
                "status": fit["status"],
                "reason": fit["reason"],
                "history": history,
                "weights": weights,
            }
        )
    return out


def measure(model: str, mode: str, data_path: str, epochs: int) -> dict:
    """Train the grid of `model` as `mode` twice (cold, then warm) in this process."""
    from tasks.core.config import ModelsConfig, SweepConfig, TrainConfig
    from tasks.core.names import ACTIVATIONS
    from tasks.training.inputs import training_data
    from tasks.training.loop import fit_network
    from tasks.training.models import build_network
    from tasks.training.stack import fit_stacked

    data, n_classes = training_data(data_path)
    cfg, models = TrainConfig(epochs=epochs), ModelsConfig()
    activations = [
        a for a in SweepConfig().activations if model == "tutorial" or ACTIVATIONS[a].hidden_ok
    ]
    out: dict = {"networks": len(activations)}
    for run in ("cold", "warm"):
        start = time.perf_counter()
        nets = [build_network(model, a, models, SEED, 784, n_classes) for a in activations]
        if mode == "stacked":
            fits = fit_stacked(nets, *data, cfg, SEED)
        else:
            fits = [fit_network(net, *data, cfg, SEED) for net in nets]
        wall = time.perf_counter() - start
        out[run] = {
            "wall": wall,
            "train": sum(r["epoch_seconds"] for f in fits for r in f["history"]),
            "epoch0": sum(f["history"][0]["epoch_seconds"] for f in fits),
            "fingerprint": _fingerprint(nets, fits),
        }
    return out


# ------------------------------------------------------------------------------ the race (parent)


def _child(model: str, mode: str, data_path: Path, epochs: int) -> dict:
    cmd = [sys.executable, __file__, "--child", model, mode, str(data_path), str(epochs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{model}/{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _prepare(folder: Path, workdir: Path) -> Path:
    from tasks.core.config import DataConfig, PreprocessConfig
    from tasks.data.download import fetch_dataset
    from tasks.data.prepare import preprocess_dataset

    raw = fetch_dataset(DataConfig(source=str(folder), dir=workdir))
    return Path(preprocess_dataset(raw, PreprocessConfig(), workdir))


def _median(runs: list[dict], run: str, key: str) -> float:
    return statistics.median(r[run][key] for r in runs)


def report(results: dict, shapes: list[str]) -> list[str]:
    lines = []
    for model in shapes:
        stacked, sequential = results[(model, "stacked")], results[(model, "sequential")]
        n = stacked[0]["networks"]
        lines.append(f"\n{model} {SHAPES[model]} x {n} networks (median of {len(stacked)} runs)")
        lines.append(f"  {'':18}{'stacked':>10}{'sequential':>12}{'seq/stacked':>13}")
        for run, key, label in (
            ("cold", "wall", "cold wall s"),
            ("cold", "train", "cold train s"),
            ("cold", "epoch0", "cold epoch 0 s"),
            ("warm", "wall", "warm wall s"),
            ("warm", "train", "warm train s"),
            ("warm", "epoch0", "warm epoch 0 s"),
        ):
            a, b = _median(stacked, run, key), _median(sequential, run, key)
            lines.append(f"  {label:18}{a:10.3f}{b:12.3f}{b / a:13.2f}")
        prints = [r[run]["fingerprint"] for r in stacked + sequential for run in ("cold", "warm")]
        same = all(p == prints[0] for p in prints)
        lines.append(
            "  results: "
            + ("bit-identical" if same else "DIFFERENT")
            + f" across all {len(prints)} runs (per-epoch cost, val loss and accuracy, weights)"
        )
        if not same:
            for a, b in zip(prints[0], prints[-1], strict=True):
                if a != b:
                    lines.append(f"    {a['activation']}: stacked {a} / sequential {b}")
        statuses = ", ".join(f"{p['activation']} {p['status']}" for p in prints[0])
        lines.append(f"  statuses: {statuses}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, mode, path, epochs = args.child
        print(json.dumps(measure(model, mode, path, int(epochs))))  # to the parent, as JSON
        return

    print(f"bench_stack: {os.cpu_count()} cores, {args.epochs} epochs, {args.repeats} repeats")
    print(f"load average at start: {_load()}", flush=True)
    results: dict = {(m, mode): [] for m in args.shapes for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench_stack_") as tmp:
        data_path = _prepare(args.data, Path(tmp))
        for repeat in range(args.repeats):
            for model in args.shapes:
                order = MODES if repeat % 2 == 0 else MODES[::-1]
                for mode in order:
                    before = _load()
                    out = _child(model, mode, data_path, args.epochs)
                    results[(model, mode)].append(out)
                    print(
                        f"run {repeat + 1} {model:8} {mode:10} cold wall {out['cold']['wall']:7.3f}"
                        f" s, warm wall {out['warm']['wall']:7.3f} s  (load {before} -> {_load()})",
                        flush=True,
                    )
    for line in report(results, args.shapes):
        print(line)
    print(f"\nload average at end: {_load()}")


if __name__ == "__main__":
    main()
