"""tasks/data/download.py: folder sources, the dataset digest, downloads from loopback mirrors."""

import dataclasses
import gzip
import hashlib
import re
from pathlib import Path

import pytest

import tasks.data.download
from tasks.core.config import DataConfig
from tasks.core.paths import IDX_FILES, raw_dir
from tasks.data import DataError
from tasks.data.download import download_file, fetch_dataset
from tasks.data.idx import read_idx
from tests.idx import make_dataset, write_idx
from tests.tasks.data.conftest import Slow, Truncated

TRAIN_IMAGES = IDX_FILES["train_images"]
TRAIN_LABELS = IDX_FILES["train_labels"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part-" in p.name)


def fast(**kw):
    return {"timeout": 2.0, "retries": 0} | kw


# --- folder sources and the dataset digest -------------------------------------------------------


def test_folder_source_is_used_in_place_with_a_digest(idx_folder, tmp_path):
    cfg = DataConfig(source=str(idx_folder), dir=tmp_path / "data")

    raw = fetch_dataset(cfg)

    assert raw.source == str(idx_folder.resolve())
    assert raw.name == idx_folder.name
    folder = idx_folder.resolve()
    assert raw.files == {role: str(folder / name) for role, name in IDX_FILES.items()}
    assert re.fullmatch(r"[0-9a-f]{64}", raw.digest)
    # nothing downloaded, nothing copied: only the manifest of the folder's hashes (tasks/cache.py)
    written = [p for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert [p.name for p in written] == ["manifest.json"]
    assert fetch_dataset(cfg).digest == raw.digest


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
    original = fetch_dataset(DataConfig(source=str(idx_folder), dir=data)).digest
    assert fetch_dataset(DataConfig(source=str(copy), dir=data)).digest == original

    images = read_idx(copy / TRAIN_IMAGES, "images").copy()
    images[7, 3, 4] ^= 1  # one pixel, one bit
    write_idx(copy / TRAIN_IMAGES, images)
    assert fetch_dataset(DataConfig(source=str(copy), dir=data)).digest != original


def test_truncated_gzip_in_a_folder_source_names_the_file(idx_folder, tmp_path):
    broken = make_dataset(tmp_path / "broken", n_train=20, n_test=10)
    cfg = DataConfig(source=str(broken), dir=tmp_path / "data")  # config: only that files exist
    gz = (broken / TRAIN_LABELS).read_bytes()
    (broken / TRAIN_LABELS).write_bytes(gz[: len(gz) // 2])

    with pytest.raises(DataError, match="truncated") as err:
        fetch_dataset(cfg)
    assert str(broken / TRAIN_LABELS) in str(err.value)


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
    monkeypatch.setitem(tasks.data.download.SHA256, "mnist", sums)
    cfg = DataConfig(
        source="mnist", dir=tmp_path, mirrors=(mirror.url("m"),), timeout_seconds=2, retries=0
    )

    raw = fetch_dataset(cfg)

    folder = raw_dir(tmp_path, "mnist")
    assert raw.source == "mnist" and raw.name == "mnist"
    assert raw.files == {role: str(folder / name) for role, name in IDX_FILES.items()}
    for name in IDX_FILES.values():
        assert (folder / name).read_bytes() == (idx_folder / name).read_bytes()
    # the same content read in place from a folder is the same dataset
    folder_cfg = DataConfig(source=str(idx_folder), dir=tmp_path / "other")
    assert raw.digest == fetch_dataset(folder_cfg).digest
    again = fetch_dataset(cfg)
    assert dataclasses.replace(again, stage=None) == dataclasses.replace(raw, stage=None)
    assert raw.stage.status == "ran" and again.stage.status == "cached"
    assert mirror.total_hits == 4  # the second fetch came from the verified cache


def test_fetch_named_dataset_offline_says_what_to_do(refused_url, tmp_path):
    cfg = DataConfig(source="fashion_mnist", dir=tmp_path, mirrors=(refused_url,), retries=0)

    with pytest.raises(DataError, match="set data.source to a local folder"):
        fetch_dataset(cfg)
    assert leftovers(raw_dir(tmp_path, "fashion_mnist")) == []
