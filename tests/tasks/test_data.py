"""tasks/data.py: fetching (folder and loopback mirrors), reading IDX files, preprocessing."""

import gzip
import hashlib
import logging
import os
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import tasks.data
from tasks.config import DataConfig, PreprocessConfig
from tasks.data import (
    DataError,
    download_dataset,
    download_file,
    fetch_dataset,
    preprocess,
    preprocess_dataset,
    read_idx,
)
from tasks.paths import IDX_FILES, processed_dir, raw_dir
from tests.idx import idx_bytes, make_dataset, make_images, write_idx

TRAIN_IMAGES = IDX_FILES["train_images"]
TRAIN_LABELS = IDX_FILES["train_labels"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name)


# --- a loopback mirror ---------------------------------------------------------------------------


class Truncated:
    """Announce the full length, send only the first half, hang up."""

    def __init__(self, body: bytes):
        self.body = body


class Slow:
    """Answer only after `seconds`."""

    def __init__(self, body: bytes, seconds: float):
        self.body, self.seconds = body, seconds


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        answer = self.server.routes.get(self.path, 404)
        if isinstance(answer, int):
            self.send_error(answer)
            return
        if isinstance(answer, Slow):
            time.sleep(answer.seconds)
            answer = answer.body
        body = answer.body if isinstance(answer, Truncated) else answer
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if isinstance(answer, Truncated):
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (the Slow case)

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


class Mirror:
    """A loopback HTTP server: `serve(path, answer)`, then fetch `url(prefix)` + file names."""

    def __init__(self, server: ThreadingHTTPServer):
        self._server = server
        self.root = f"http://127.0.0.1:{server.server_address[1]}/"

    def url(self, prefix: str = "a") -> str:
        return f"{self.root}{prefix}/"

    def serve(self, path: str, answer) -> None:
        """answer: bytes (200), an HTTP status code, Truncated(bytes) or Slow(bytes, seconds)."""
        self._server.routes["/" + path] = answer

    def hits(self, path: str) -> int:
        return self._server.hits["/" + path]

    @property
    def total_hits(self) -> int:
        return sum(self._server.hits.values())


@pytest.fixture
def mirror():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes, server.hits = {}, Counter()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Mirror(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def fast(**kw):
    return {"timeout": 2.0, "retries": 0} | kw


# --- folder sources and the dataset digest -------------------------------------------------------


def test_folder_source_is_used_in_place_with_a_digest(idx_folder, tmp_path):
    cfg = DataConfig(source=str(idx_folder), dir=tmp_path / "data")

    raw = fetch_dataset(cfg)

    assert raw["source"] == str(idx_folder.resolve())
    assert raw["name"] == idx_folder.name
    folder = idx_folder.resolve()
    assert raw["files"] == {role: str(folder / name) for role, name in IDX_FILES.items()}
    assert re.fullmatch(r"[0-9a-f]{64}", raw["digest"])
    # nothing downloaded, nothing copied: only the manifest of the folder's hashes (tasks/cache.py)
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert [p.name for p in written] == ["manifest.json"]
    assert fetch_dataset(cfg)["digest"] == raw["digest"]


def _regzip(src: Path, dest: Path) -> None:
    """Same content, different gzip header (file name and mtime), as another packager would make."""
    with gzip.open(src, "rb") as f:
        data = f.read()
    with open(dest, "wb") as raw, gzip.GzipFile("other-name", "wb", 9, raw, mtime=1234567) as g:
        g.write(data)


def test_digest_follows_content_not_gzip_bytes(idx_folder, tmp_path):
    copy = tmp_path / "regzipped"
    copy.mkdir()
    for name in IDX_FILES.values():
        _regzip(idx_folder / name, copy / name)
    assert (copy / TRAIN_IMAGES).read_bytes() != (idx_folder / TRAIN_IMAGES).read_bytes()

    data = tmp_path / "data"
    original = fetch_dataset(DataConfig(source=str(idx_folder), dir=data))["digest"]
    assert fetch_dataset(DataConfig(source=str(copy), dir=data))["digest"] == original

    images = read_idx(copy / TRAIN_IMAGES, "images").copy()
    images[7, 3, 4] ^= 1  # one pixel, one bit
    write_idx(copy / TRAIN_IMAGES, images)
    assert fetch_dataset(DataConfig(source=str(copy), dir=data))["digest"] != original


def test_truncated_gzip_in_a_folder_source_names_the_file(idx_folder, tmp_path):
    broken = make_dataset(tmp_path / "broken", n_train=20, n_test=10)
    cfg = DataConfig(source=str(broken), dir=tmp_path / "data")  # config: only that files exist
    gz = (broken / TRAIN_LABELS).read_bytes()
    (broken / TRAIN_LABELS).write_bytes(gz[: len(gz) // 2])

    with pytest.raises(DataError, match="truncated") as err:
        fetch_dataset(cfg)
    assert str(broken / TRAIN_LABELS) in str(err.value)


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
    different_data = preprocess_dataset(raw | {"digest": "0" * 64}, cfg, tmp_path)
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


# --- download_file against a loopback mirror -----------------------------------------------------

PAYLOAD = gzip.compress(b"pretend IDX bytes " * 1000, mtime=0)
SUM = sha256(PAYLOAD)


def test_download_verifies_and_then_uses_the_cache(mirror, tmp_path):
    mirror.serve("a/f.gz", PAYLOAD)
    dest = tmp_path / "raw" / "f.gz"

    assert download_file([mirror.url()], "f.gz", dest, SUM, **fast()) == dest
    assert dest.read_bytes() == PAYLOAD
    assert download_file([mirror.url()], "f.gz", dest, SUM, **fast()) == dest
    assert mirror.hits("a/f.gz") == 1
    assert leftovers(dest.parent) == []


def test_wrong_checksum_leaves_no_file(mirror, tmp_path):
    mirror.serve("a/f.gz", PAYLOAD)
    dest = tmp_path / "f.gz"

    with pytest.raises(DataError) as err:
        download_file([mirror.url()], "f.gz", dest, "0" * 64, **fast(retries=2))

    msg = str(err.value)
    assert f"{mirror.url()}f.gz" in msg and "sha256 mismatch" in msg
    assert not dest.exists()
    assert leftovers(tmp_path) == []
    assert mirror.hits("a/f.gz") == 1  # same mirror, same bytes: not retried


# (what the first mirror does, how often it is asked with retries=1): transient failures are
# retried, an answer that would not change (404, other bytes) is not; a refused connection
# never reaches it.
@pytest.mark.parametrize(
    ("first", "asked"),
    [("404", 1), ("refused", 0), ("html page", 1), ("truncated", 2), ("timeout", 2)],
)
def test_a_failing_first_mirror_falls_back_to_the_second(
    mirror, refused_url, tmp_path, first, asked
):
    bad = refused_url if first == "refused" else mirror.url("a")
    if first == "html page":
        mirror.serve("a/f.gz", b"<html>rate limited</html>")
    elif first == "truncated":
        mirror.serve("a/f.gz", Truncated(PAYLOAD))
    elif first == "timeout":
        mirror.serve("a/f.gz", Slow(PAYLOAD, seconds=1.5))
    mirror.serve("b/f.gz", PAYLOAD)
    dest = tmp_path / "f.gz"

    timeout = 0.3 if first == "timeout" else 2.0
    download_file([bad, mirror.url("b")], "f.gz", dest, SUM, **fast(timeout=timeout, retries=1))

    assert dest.read_bytes() == PAYLOAD
    assert mirror.hits("a/f.gz") == asked
    assert mirror.hits("b/f.gz") == 1
    assert leftovers(tmp_path) == []


def test_all_mirrors_failing_lists_every_url_and_the_way_out(mirror, refused_url, tmp_path):
    mirror.serve("b/f.gz", b"<html>moved</html>")
    dest = tmp_path / "f.gz"
    urls = [refused_url, mirror.url("a"), mirror.url("b")]

    with pytest.raises(DataError) as err:
        download_file(urls, "f.gz", dest, SUM, **fast(retries=1))

    msg = str(err.value)
    assert f"{refused_url}f.gz (attempt 1)" in msg and f"{refused_url}f.gz (attempt 2)" in msg
    assert f"{mirror.url('a')}f.gz (attempt 1): HTTP 404" in msg
    assert f"{mirror.url('b')}f.gz: sha256 mismatch" in msg
    assert "offline or no mirror reachable: set data.source to a local folder" in msg
    assert "--set data.source=/usr/share/datasets/fashion-mnist" in msg
    assert not dest.exists() and leftovers(tmp_path) == []


def test_a_corrupted_cached_file_is_replaced(mirror, tmp_path):
    mirror.serve("a/f.gz", PAYLOAD)
    dest = tmp_path / "f.gz"
    dest.write_bytes(PAYLOAD[:100])  # e.g. an interrupted copy by hand

    download_file([mirror.url()], "f.gz", dest, SUM, **fast())

    assert dest.read_bytes() == PAYLOAD
    assert mirror.hits("a/f.gz") == 1


def test_a_corrupted_cached_file_is_removed_even_offline(refused_url, tmp_path):
    dest = tmp_path / "f.gz"
    dest.write_bytes(b"not it")

    with pytest.raises(DataError):
        download_file([refused_url], "f.gz", dest, SUM, **fast())
    assert not dest.exists()


# --- fetch_dataset from mirrors ------------------------------------------------------------------


def test_fetch_named_dataset_from_configured_mirrors(mirror, idx_folder, tmp_path, monkeypatch):
    sums = {}
    for name in IDX_FILES.values():
        data = (idx_folder / name).read_bytes()
        mirror.serve(f"m/{name}", data)
        sums[name] = sha256(data)
    monkeypatch.setitem(tasks.data.SHA256, "mnist", sums)
    cfg = DataConfig(
        source="mnist", dir=tmp_path, mirrors=(mirror.url("m"),), timeout_seconds=2, retries=0
    )

    raw = fetch_dataset(cfg)

    folder = raw_dir(tmp_path, "mnist")
    assert raw["source"] == "mnist" and raw["name"] == "mnist"
    assert raw["files"] == {role: str(folder / name) for role, name in IDX_FILES.items()}
    for name in IDX_FILES.values():
        assert (folder / name).read_bytes() == (idx_folder / name).read_bytes()
    # the same content read in place from a folder is the same dataset
    folder_cfg = DataConfig(source=str(idx_folder), dir=tmp_path / "other")
    assert raw["digest"] == fetch_dataset(folder_cfg)["digest"]
    again = fetch_dataset(cfg)
    assert {**again, "stage": None} == {**raw, "stage": None}
    assert raw["stage"]["status"] == "ran" and again["stage"]["status"] == "cached"
    assert mirror.total_hits == 4  # the second fetch came from the verified cache


def test_fetch_named_dataset_offline_says_what_to_do(refused_url, tmp_path):
    cfg = DataConfig(source="fashion_mnist", dir=tmp_path, mirrors=(refused_url,), retries=0)

    with pytest.raises(DataError, match="set data.source to a local folder"):
        fetch_dataset(cfg)
    assert leftovers(raw_dir(tmp_path, "fashion_mnist")) == []


def test_prefect_tasks_wrap_the_functions(idx_folder, tmp_path):
    cfg = DataConfig(source=str(idx_folder), dir=tmp_path / "data")
    raw = download_dataset.fn(cfg)
    assert {**raw, "stage": None} == {**fetch_dataset(cfg), "stage": None}
    prepared = preprocess.fn(raw, PreprocessConfig(val_size=100), tmp_path)
    assert prepared["path"] == preprocess_dataset(raw, PreprocessConfig(val_size=100), tmp_path)
    assert prepared["stage"]["status"] == "ran"
    assert (download_dataset.name, preprocess.name) == ("download_dataset", "preprocess")


def test_xor_source_is_generated_with_two_inputs_and_two_classes(tmp_path):
    from tasks.data import xor_cloud

    raw = fetch_dataset(DataConfig(source="xor", dir=tmp_path))
    assert raw["name"] == "xor" and raw["files"] == {} and len(raw["digest"]) == 64
    assert fetch_dataset(DataConfig(source="xor", dir=tmp_path))["digest"] == raw["digest"]
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
