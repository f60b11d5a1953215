"""tasks/training/models.py: weights on disk, written whole, and a full disk said plainly; a
network's weights made from its seed alone."""

import numpy as np
import pytest
import tensorflow as tf

from tasks.core.config import ModelsConfig
from tasks.core.files import NoSpaceError
from tasks.core.names import INITS
from tasks.core.paths import weights_path
from tasks.training import models
from tasks.training.models import build_network, load_weights, save_weights
from tests.conftest import fill


def test_weights_round_trip_in_order(tmp_path):
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, np.float32)]
    path = weights_path(tmp_path, "parent", "child")
    path.parent.mkdir(parents=True)  # made by the flow run (tracking.runs.parent_run)
    save_weights(arrays, path)
    for got, want in zip(load_weights(path), arrays, strict=True):
        np.testing.assert_array_equal(got, want)


def test_weights_saved_here_are_handed_over_once_while_the_file_is_the_one_written(
    tmp_path, monkeypatch
):
    """load_weights gives back the arrays this process saved without reading the file, once; a
    second reading, or a file written again since (by anyone), reads what the file holds."""
    path = weights_path(tmp_path, "parent", "child")
    path.parent.mkdir(parents=True)
    arrays = [np.full((3, 2), 1.5, np.float32), np.zeros(2, np.float32)]
    save_weights(arrays, path)
    read = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: read.append(a[0]) or real_load(*a, **k))
    handed = load_weights(path)
    assert read == [] and all(g is w for g, w in zip(handed, arrays, strict=True))
    np.testing.assert_array_equal(load_weights(path)[0], arrays[0])  # again: from the file
    assert read == [path]

    save_weights(arrays, path)
    other = tmp_path / "other.npz"
    with open(other, "wb") as f:
        np.savez(f, np.full((3, 2), 7.0, np.float32), np.ones(2, np.float32))
    other.replace(path)  # another writer's file in its place
    np.testing.assert_array_equal(load_weights(path)[0], np.full((3, 2), 7.0, np.float32))


def test_weights_kept_for_reading_back_are_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(models._Saved, "MAX_BYTES", 3 * 4000)  # three of the arrays below
    kept = models._Saved()
    monkeypatch.setattr(models, "_SAVED", kept)
    (tmp_path / "weights").mkdir()
    paths = [tmp_path / "weights" / f"{k}.npz" for k in range(5)]
    for k, path in enumerate(paths):
        save_weights([np.full(1000, k, np.float32)], path)  # 4,000 bytes each
    assert [kept.take(p) is not None for p in paths] == [False, False, True, True, True]
    assert load_weights(paths[0])[0][0] == 0  # dropped: read from its file


def test_weights_are_not_written_once_their_flow_run_removed_its_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        save_weights([np.ones(3, np.float32)], weights_path(tmp_path, "ended", "late"))
    assert not (tmp_path / "weights").exists()


def test_weights_on_a_full_disk_leave_nothing_and_say_what_to_free(small_disk):
    earlier = weights_path(small_disk / "data", "parent", "earlier")
    earlier.parent.mkdir(parents=True)
    save_weights([np.ones((4, 4), np.float32)], earlier)
    before = earlier.read_bytes()
    fill(small_disk)
    path = weights_path(small_disk / "data", "parent", "child")

    with pytest.raises(NoSpaceError) as err:
        save_weights([np.ones((784, 256), np.float32)], path)  # 800 KB

    message = str(err.value)
    assert f"no space left writing a network's weights to {path}" in message
    assert "data/weights/" in message and "set data.dir to a larger disk" in message
    assert sorted(p.name for p in path.parent.iterdir()) == ["earlier.npz"]  # no temporary
    assert earlier.read_bytes() == before


@pytest.mark.parametrize("init", INITS)
def test_a_networks_weights_depend_on_its_seed_alone(init):
    """Not on TensorFlow's global seed, which seed_everything leaves alone (setting it clears
    TensorFlow's kernel caches): the same seed builds the same weights under any global seed,
    and another seed other weights."""
    models = ModelsConfig(mlp={"hidden_units": [16, 8], "init": init})

    def weights(seed: int, global_seed: int) -> list[np.ndarray]:
        tf.random.set_seed(global_seed)
        return build_network("mlp", "tanh", models, seed).numpy_weights()

    for a, b in zip(weights(3, global_seed=1), weights(3, global_seed=2), strict=True):
        np.testing.assert_array_equal(a, b)
    if init != "zeros":
        assert not np.array_equal(weights(3, 1)[0], weights(4, 1)[0])
