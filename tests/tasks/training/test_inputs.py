"""tasks/training/inputs.py: a preprocessed .npz's images are read as bytes from the copy kept
beside it while the .npz is unchanged, and are the same tensors either way."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tasks.training import inputs


def _write_npz(path, x_train, x_val, x_test) -> None:
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        np.savez(
            f,
            x_train=x_train, y_train=rng.integers(0, 10, len(x_train)),
            x_val=x_val, y_val=rng.integers(0, 10, len(x_val)),
            x_test=x_test, y_test=rng.integers(0, 10, len(x_test)),
            n_classes=np.array(10),
        )  # fmt: skip


def _pixels(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784)).astype(np.float32) / np.float32(255)


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "processed" / "abc.npz"
    path.parent.mkdir()
    _write_npz(path, _pixels(300, 1), _pixels(50, 2), _pixels(80, 3))
    return path


@pytest.fixture(autouse=True)
def _fresh_process():
    """Each read as a new process would make it (the images are otherwise held per process)."""
    inputs._splits.cache_clear()
    yield
    inputs._splits.cache_clear()


def _read(path):
    inputs._splits.cache_clear()
    (x, y, xv, yv), n_classes = inputs.training_data(str(path))
    x_test, y_test = inputs.test_data(str(path))
    return [t.numpy() if isinstance(t, tf.Tensor) else t for t in (x, y, xv, yv, x_test, y_test)]


def _expected(path):
    """What the .npz holds, images as_pixels makes them."""
    with np.load(path) as z:
        return [
            inputs.as_pixels(z["x_train"]).numpy(), z["y_train"],
            inputs.as_pixels(z["x_val"]).numpy(), z["y_val"],
            inputs.as_pixels(z["x_test"]).numpy(), z["y_test"],
        ]  # fmt: skip


def _assert_same(got, expected) -> None:
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_the_bytes_are_kept_and_a_later_read_takes_them_without_the_floats(npz, monkeypatch):
    first = _read(npz)
    _assert_same(first, _expected(npz))
    assert first[0].dtype == np.uint8
    assert inputs.pixels_path(npz).is_file()  # beside it: abc.pixels
    assert inputs.pixels_path(npz).name == "abc.pixels"

    def no_floats(*args, **kwargs):
        raise AssertionError("the float images were read and checked again")

    monkeypatch.setattr(inputs, "pixels_of", no_floats)
    _assert_same(_read(npz), first)


def test_a_rewritten_npz_is_read_again_not_its_old_bytes(npz):
    _read(npz)
    _write_npz(npz, _pixels(300, 7), _pixels(50, 8), _pixels(80, 9))  # new images
    os.utime(npz, ns=(1, 1))  # and another time, whatever the clock's resolution
    _assert_same(_read(npz), _expected(npz))
    _assert_same(_read(npz), _expected(npz))  # from the new bytes


def test_a_broken_byte_copy_is_ignored_and_written_again(npz):
    _read(npz)
    inputs.pixels_path(npz).write_bytes(b"PK\x03\x04 broken")
    _assert_same(_read(npz), _expected(npz))
    with np.load(inputs.pixels_path(npz)) as copy:
        assert set(copy.files) == {"stamp", *inputs.IMAGES}


def test_images_that_are_not_pixels_stay_float_and_get_no_byte_copy(npz):
    _write_npz(npz, _pixels(300, 1) - np.float32(0.5), _pixels(50, 2), _pixels(80, 3))
    got = _read(npz)
    assert got[0].dtype == np.float32
    _assert_same(got, _expected(npz))
    assert not inputs.pixels_path(npz).exists()


def test_a_folder_it_cannot_write_to_still_gives_the_images(npz, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(inputs.pixels_path(npz)))

    monkeypatch.setattr(inputs, "atomic_path", refused)
    _assert_same(_read(npz), _expected(npz))
    assert not inputs.pixels_path(npz).exists()
