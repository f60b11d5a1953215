"""tasks/data/idx.py: reading gzip'd IDX files and checking them against their headers."""

import gzip

import numpy as np
import pytest

from tasks.core.paths import IDX_FILES
from tasks.data import DataError
from tasks.data.idx import read_idx
from tests.idx import idx_bytes, make_images, write_idx

TRAIN_IMAGES = IDX_FILES["train_images"]
TRAIN_LABELS = IDX_FILES["train_labels"]


# --- read_idx ------------------------------------------------------------------------------------


def test_read_idx_returns_what_was_written(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, size=30, dtype=np.uint8)
    images = make_images(labels, rng)

    got_images = read_idx(write_idx(tmp_path / "i.gz", images), "images")
    got_labels = read_idx(write_idx(tmp_path / "l.gz", labels), "labels")

    assert got_images.dtype == np.uint8 and got_images.shape == (30, 28, 28)
    assert got_labels.dtype == np.uint8 and got_labels.shape == (30,)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_idx_wrong_magic_names_file_and_magic(tmp_path):
    labels_file = write_idx(tmp_path / "labels.gz", np.zeros(5, dtype=np.uint8))

    with pytest.raises(DataError) as err:
        read_idx(labels_file, "images")

    msg = str(err.value)
    assert str(labels_file) in msg
    assert "0x00000801" in msg and "0x00000803" in msg


def test_read_idx_rejects_a_non_idx_file(tmp_path):
    path = tmp_path / "page.gz"
    path.write_bytes(gzip.compress(b"<html>Not Found</html>"))

    with pytest.raises(DataError, match=r"found magic 0x3c68746d, expected 0x00000801"):
        read_idx(path, "labels")


@pytest.mark.parametrize(
    ("cut", "problem"), [(-10, "truncated"), (+3, "extra bytes")], ids=["short", "long"]
)
def test_read_idx_payload_must_match_header(tmp_path, cut, problem):
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    data = data[:cut] if cut < 0 else data + b"\0" * cut
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(data))

    with pytest.raises(DataError, match=problem) as err:
        read_idx(path, "images")
    assert str(path) in str(err.value)
    assert "4 images (3136 bytes)" in str(err.value)


def test_read_idx_rejects_other_image_sizes(tmp_path):
    path = write_idx(tmp_path / "small.gz", np.zeros((3, 20, 20), dtype=np.uint8))

    with pytest.raises(DataError, match="20×20, expected 28×28") as err:
        read_idx(path, "images")
    assert str(path) in str(err.value)


def test_read_idx_rejects_labels_outside_0_to_9(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.array([0, 9, 10, 3], dtype=np.uint8))

    with pytest.raises(DataError, match=r"1 labels outside 0\.\.9 \(largest 10\)"):
        read_idx(path, "labels")


def test_read_idx_truncated_gzip_stream(idx_folder, tmp_path):
    gz = (idx_folder / TRAIN_IMAGES).read_bytes()
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(gz[: len(gz) * 2 // 3])

    with pytest.raises(DataError, match="truncated") as err:
        read_idx(path, "images")
    assert str(path) in str(err.value)


def test_read_idx_not_gzip(tmp_path):
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(b"<html><body>403 Forbidden</body></html>")

    with pytest.raises(DataError, match="not a valid gzip file") as err:
        read_idx(path, "images")
    assert str(path) in str(err.value)
