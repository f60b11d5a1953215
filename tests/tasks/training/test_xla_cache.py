"""XLA's compiled programs kept across processes: one folder per CPU, off on request, and the
same results from a loaded program as from a fresh compile."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.training import xla_cache

ROOT = Path(__file__).resolve().parents[3]


def test_the_cache_folder_is_per_cpu_and_tensorflow_version(tmp_path, monkeypatch):
    monkeypatch.setenv(xla_cache.ENV, str(tmp_path))
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")

    folder = xla_cache.enable()

    assert folder is not None and folder.parent == tmp_path and folder.is_dir()
    assert len(folder.name) == 16  # the CPU/TensorFlow fingerprint
    # the user's own flags stay, the cache flag is added after them
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {xla_cache.FLAG}={folder}"


def test_off_or_an_existing_cache_flag_leaves_tensorflow_alone(tmp_path, monkeypatch):
    monkeypatch.setenv(xla_cache.ENV, "off")
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    assert xla_cache.enable() is None and "TF_XLA_FLAGS" not in os.environ

    mine = f"{xla_cache.FLAG}={tmp_path / 'mine'}"
    monkeypatch.setenv(xla_cache.ENV, str(tmp_path / "ours"))
    monkeypatch.setenv("TF_XLA_FLAGS", mine)
    assert xla_cache.enable() is None and os.environ["TF_XLA_FLAGS"] == mine
    assert not (tmp_path / "ours").exists()


def test_a_folder_that_cannot_be_made_means_no_cache_not_a_failed_run(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(xla_cache.ENV, str(blocker / "xla"))
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    assert xla_cache.enable() is None and "TF_XLA_FLAGS" not in os.environ


_TRAIN = """
import hashlib, numpy as np
from tasks.core.config import TrainConfig, ModelsConfig
from tasks.training.models import build_network
from tasks.training.loop import fit_network
rng = np.random.default_rng(0)
x = rng.random((600, 784), dtype=np.float32); y = rng.integers(0, 10, 600)
digest = hashlib.sha256()
for model, act in [("mlp", "gelu"), ("tutorial", "softmax")]:
    net = build_network(model, act, ModelsConfig(), 0)
    fit = fit_network(net, x, y, x[:100], y[:100], TrainConfig(epochs=2, optimizer="adam"), 0)
    for w in net.numpy_weights():
        digest.update(w.tobytes())
    digest.update(repr([(e["cost"], e["val_accuracy"]) for e in fit["history"]]).encode())
print(digest.hexdigest())
"""


@pytest.mark.slow  # three fresh interpreters with TensorFlow
def test_a_program_loaded_from_the_cache_trains_bit_for_bit_as_a_fresh_compile(tmp_path):
    def train(cache: str) -> str:
        env = {**os.environ, xla_cache.ENV: cache, "PYTHONPATH": str(ROOT)}
        env.pop("TF_XLA_FLAGS", None)
        done = subprocess.run(
            [sys.executable, "-c", _TRAIN], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip()

    fresh = train("off")
    filled = train(str(tmp_path))  # compiles, and writes the programs
    entries = list(tmp_path.glob("*/xla_compile_cache__*"))
    assert len(entries) == 2  # one epoch program per network shape
    stamps = {p: p.stat().st_mtime_ns for p in entries}
    loaded = train(str(tmp_path))  # loads them
    assert {p: p.stat().st_mtime_ns for p in entries} == stamps  # read, not rewritten
    assert fresh == filled == loaded
