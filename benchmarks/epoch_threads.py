"""One network trained alone in this process: each epoch's wall time, CPU time and thread switches.

The per-epoch race (bench_training.py) gives each method's median seconds. This shows what lies
under the project's: how many cores an epoch keeps busy (CPU seconds / wall seconds) and how often
its threads wait for one another (voluntary context switches, summed over the process's
threads). It ends with a hash of the final weights, so that a setting tried from the environment
(`TF_NUM_INTRAOP_THREADS=1`, `XLA_FLAGS=...`) shows whether it changes the numbers as well as the
time. Run it several times: a process can keep one speed for many epochs.

  python benchmarks/epoch_threads.py [--data FOLDER] [--arch 784-10|784-256-10] [--epochs E]
"""

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_training import (  # noqa: E402  (after the path)
    ARCHS,
    DEFAULT_DATA,
    Project,
    initial_weights,
    load_data,
)

TASKS = Path("/proc/self/task")


def voluntary_switches() -> int | None:
    """Voluntary context switches of every thread of this process so far (None without /proc)."""
    if not TASKS.is_dir():
        return None
    total = 0
    for task in TASKS.iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:  # a thread that ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def weights_hash(weights) -> str:
    return hashlib.sha256(b"".join(w.tobytes() for w in weights)).hexdigest()[:16]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [a.name for a in ARCHS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an MNIST-format folder")
    parser.add_argument("--arch", choices=names, default=names[0], help="default: %(default)s")
    parser.add_argument("--epochs", type=int, default=20, help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (epoch 1 includes compiling), got {args.epochs}")
    if not args.data.is_dir():
        parser.error(f"--data: no folder {args.data} (an MNIST-format folder is accepted)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    arch = next(a for a in ARCHS if a.name == args.arch)
    with tempfile.TemporaryDirectory(prefix="actlab-threads-") as tmp:
        data = load_data(args.data, Path(tmp), str(args.data))
    project = Project(data, arch, initial_weights(arch))
    print(f"{arch.name}, {args.epochs} epochs, the project's loop alone ({args.data})")
    print(f"  {'epoch':>5} {'wall s':>7} {'CPU s':>7} {'cores':>6} {'switches':>9}")
    walls = []
    for e in range(args.epochs):
        switches, cpu = voluntary_switches(), time.process_time()
        wall, _ = project.epoch(e)  # the loop's own epoch_seconds: compiling is left out
        cpu = time.process_time() - cpu
        after = voluntary_switches()
        shown = "n/a" if switches is None or after is None else str(after - switches)
        print(f"  {e + 1:>5} {wall:7.3f} {cpu:7.3f} {cpu / wall:6.2f} {shown:>9}")
        walls.append(wall)
    rest = walls[1:]
    print(
        f"  epochs 2..{args.epochs}: median {statistics.median(rest):.3f} s, fastest "
        f"{min(rest):.3f}, slowest {max(rest):.3f}; final weights {weights_hash(project.weights())}"
    )


if __name__ == "__main__":
    main()
