"""tasks/data/prepare.py and xor.py: the splits on disk, cached by content and settings."""

import dataclasses
import hashlib
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tasks.core.config import DataConfig, PreprocessConfig
from tasks.core.paths import IDX_FILES, processed_dir
from tasks.data import DataError
from tasks.data.download import fetch_dataset
from tasks.data.idx import read_idx
from tasks.data.prepare import preprocess_dataset
from tests.idx import make_dataset, write_idx

TRAIN_IMAGES = IDX_FILES["train_images"]
TRAIN_LABELS = IDX_FILES["train_labels"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name)


# --- preprocess ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw(idx_folder, tmp_path_factory) -> dict:
    return fetch_dataset(DataConfig(source=str(idx_folder), dir=tmp_path_factory.mktemp("data")))


def test_preprocess_splits_like_the_tutorial(raw, idx_folder, tmp_path):
    path = Path(preprocess_dataset(raw, PreprocessConfig(val_size=100), tmp_path))

    assert path.parent == processed_dir(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{16}\.npz", path.name)
    assert leftovers(path.parent) == []
    train_images = read_idx(idx_folder / TRAIN_IMAGES, "images")
    train_labels = read_idx(idx_folder / TRAIN_LABELS, "labels")
    test_images = read_idx(idx_folder / IDX_FILES["test_images"], "images")
    test_labels = read_idx(idx_folder / IDX_FILES["test_labels"], "labels")
    with np.load(path, allow_pickle=False) as npz:
        d = {k: npz[k] for k in npz.files}

    assert d["x_train"].shape == (500, 784) and d["x_val"].shape == (100, 784)
    assert d["x_test"].shape == (200, 784)
    assert (d["y_train"].shape, d["y_val"].shape, d["y_test"].shape) == ((500,), (100,), (200,))
    for split in ("train", "val", "test"):
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        assert x.dtype == np.float32 and y.dtype == np.uint8
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert d["x_train"].max() == 1.0  # the fixture has 255 pixels: scaled, not just cast
    # validation = the FIRST val_size images of the training file, train = the rest
    np.testing.assert_array_equal(d["x_val"] * 255, train_images[:100].reshape(100, 784))
    np.testing.assert_array_equal(d["y_val"], train_labels[:100])
    np.testing.assert_array_equal(d["x_train"] * 255, train_images[100:].reshape(500, 784))
    np.testing.assert_array_equal(d["y_train"], train_labels[100:])
    np.testing.assert_array_equal(d["x_test"] * 255, test_images.reshape(200, 784))
    np.testing.assert_array_equal(d["y_test"], test_labels)


def test_preprocess_can_standardise_pixels_by_the_training_images(raw, tmp_path):
    plain = Path(preprocess_dataset(raw, PreprocessConfig(val_size=100), tmp_path))
    path = Path(preprocess_dataset(raw, PreprocessConfig(val_size=100, standardize=True), tmp_path))
    assert path != plain  # its own cached file
    with np.load(plain) as npz:
        x = {k: npz[k] for k in ("x_train", "x_val", "x_test")}
    with np.load(path) as npz:
        z = {k: npz[k] for k in ("x_train", "x_val", "x_test")}
    varying = x["x_train"].std(axis=0) > 1e-6
    np.testing.assert_allclose(z["x_train"].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z["x_train"].std(axis=0)[varying], 1, rtol=1e-3)
    # validation and test use the training statistics, not their own
    mean, std = x["x_train"].mean(axis=0), x["x_train"].std(axis=0)
    j = int(np.flatnonzero(varying)[0])
    np.testing.assert_allclose(z["x_test"][:, j], (x["x_test"][:, j] - mean[j]) / std[j], rtol=1e-4)


def test_preprocess_is_cached_by_content_and_settings(raw, tmp_path, caplog):
    cfg = PreprocessConfig(val_size=100)
    first = preprocess_dataset(raw, cfg, tmp_path)
    os.utime(first, ns=(10**9, 10**9))  # an old mtime: any rewrite would show

    with caplog.at_level(logging.INFO, logger="tasks.data"):
        again = preprocess_dataset(raw, cfg, tmp_path)

    assert again == first
    assert os.stat(first).st_mtime_ns == 10**9
    assert "preprocess cached" in caplog.text
    other = preprocess_dataset(raw, PreprocessConfig(val_size=50), tmp_path)
    assert other != first
    with np.load(other) as npz:
        assert npz["x_val"].shape == (50, 784)
    different_data = preprocess_dataset(dataclasses.replace(raw, digest="0" * 64), cfg, tmp_path)
    assert different_data not in (first, other)


def test_preprocess_rebuilds_an_unreadable_cache(raw, tmp_path):
    cfg = PreprocessConfig(val_size=100)
    path = Path(preprocess_dataset(raw, cfg, tmp_path))
    path.write_bytes(path.read_bytes()[:1000])  # e.g. a disk that filled up

    assert preprocess_dataset(raw, cfg, tmp_path) == str(path)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["x_train"].shape == (500, 784)


@pytest.mark.parametrize("val_size", [600, 601])
def test_preprocess_val_size_must_leave_training_images(raw, tmp_path, val_size):
    with pytest.raises(DataError) as err:
        preprocess_dataset(raw, PreprocessConfig(val_size=val_size), tmp_path)

    msg = str(err.value)
    assert f"preprocess.val_size = {val_size}" in msg and "600 images" in msg
    assert not processed_dir(tmp_path).exists() or not any(processed_dir(tmp_path).iterdir())


def test_preprocess_image_label_count_mismatch_names_both_files(tmp_path):
    folder = make_dataset(tmp_path / "src", n_train=50, n_test=20)
    write_idx(folder / TRAIN_LABELS, np.zeros(40, dtype=np.uint8))
    raw = fetch_dataset(DataConfig(source=str(folder), dir=tmp_path / "data"))

    with pytest.raises(DataError) as err:
        preprocess_dataset(raw, PreprocessConfig(val_size=10), tmp_path)

    msg = str(err.value)
    assert str(folder / TRAIN_IMAGES) in msg and str(folder / TRAIN_LABELS) in msg
    assert "50 images" in msg and "40 labels" in msg


def test_synthetic_dataset_is_learnable_by_a_linear_softmax(raw, tmp_path):
    """The fixture promises other tests a dataset one epoch of softmax regression can learn."""
    with np.load(preprocess_dataset(raw, PreprocessConfig(val_size=100), tmp_path)) as npz:
        x, y, x_test, y_test = npz["x_train"], npz["y_train"], npz["x_test"], npz["y_test"]
    w, b = np.zeros((784, 10), np.float32), np.zeros(10, np.float32)
    for i in range(0, len(x), 50):  # one epoch, batch 50, learning rate 0.5
        xb, yb = x[i : i + 50], np.eye(10, dtype=np.float32)[y[i : i + 50]]
        logits = xb @ w + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        w -= 0.5 * xb.T @ (p - yb) / len(xb)
        b -= 0.5 * (p - yb).mean(axis=0)

    accuracy = float(np.mean((x_test @ w + b).argmax(axis=1) == y_test))
    assert accuracy > 0.8  # chance is 0.1


def test_xor_source_is_generated_with_two_inputs_and_two_classes(tmp_path):
    from tasks.data.xor import xor_cloud

    raw = fetch_dataset(DataConfig(source="xor", dir=tmp_path))
    assert raw.name == "xor" and raw.files == {} and len(raw.digest) == 64
    assert fetch_dataset(DataConfig(source="xor", dir=tmp_path)).digest == raw.digest
    path = preprocess_dataset(raw, PreprocessConfig(), tmp_path)
    with np.load(path, allow_pickle=False) as npz:
        assert npz["x_train"].shape == (55_000, 2) and npz["x_val"].shape == (5_000, 2)
        assert npz["x_test"].shape == (10_000, 2) and int(npz["n_classes"]) == 2
        x, y = npz["x_test"], npz["y_test"]
    corner = (x > 0.5).astype(int)
    # every point sits near its corner and carries the XOR of the corner's bits
    assert np.mean((corner[:, 0] ^ corner[:, 1]) == y) > 0.9999
    x_again, _ = xor_cloud(10_000, seed=1)
    np.testing.assert_array_equal(x, x_again)  # deterministic
