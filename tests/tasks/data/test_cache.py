"""tasks/data/cache.py and the caching it gives the data stages: cached or ran, and why; a cached
file is read again only when its size or mtime changed since its sha256 was checked."""

import errno
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import tasks.data.cache
import tasks.data.download
import tasks.data.prepare
from tasks.core.config import DataConfig, PreprocessConfig
from tasks.core.paths import IDX_FILES, raw_dir
from tasks.core.results import StageOutcome
from tasks.data.cache import (
    SETTLE_NS,
    diff_inputs,
    known_sha256,
    latest_manifest,
    read_manifest,
    write_manifest,
)
from tasks.data.download import fetch_dataset
from tasks.data.idx import read_idx
from tasks.data.prepare import prepare_splits
from tests.idx import make_dataset, write_idx

TRAIN_IMAGES = IDX_FILES["train_images"]


def _mirrored_mnist(mirror, idx_folder, tmp_path, monkeypatch) -> DataConfig:
    """`mnist` served by the loopback mirror from the IDX test files, with their checksums."""
    sums = {}
    for name in IDX_FILES.values():
        data = (idx_folder / name).read_bytes()
        mirror.serve(f"m/{name}", data)
        sums[name] = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(tasks.data.download.SHA256, "mnist", sums)
    cfg = DataConfig(
        source="mnist", dir=tmp_path, mirrors=(mirror.url("m"),), timeout_seconds=2, retries=0
    )
    return cfg


def test_diff_inputs_names_each_changed_key_with_old_and_new_value():
    old = {"preprocess": {"val_size": 5000, "standardize": False}, "code": 2}
    new = {"preprocess": {"val_size": 10000, "standardize": False}, "code": 3, "extra": "x"}

    assert diff_inputs(old, new) == [
        "code changed 2 -> 3",
        "extra is new (x)",
        "preprocess.val_size changed 5000 -> 10000",
    ]
    assert diff_inputs(old, old) == []
    hashes = diff_inputs({"h": "a" * 64}, {"h": "b" * 64})
    assert hashes == ["h changed aaaaaaaaaaaa… -> bbbbbbbbbbbb…"]


def test_manifests_are_written_whole_and_the_newest_is_found(tmp_path):
    write_manifest(tmp_path / "a.json", {"x": 1}, {"sha256": "1"})
    newer = write_manifest(tmp_path / "b.json", {"x": 2}, {"sha256": "2"})
    (tmp_path / "broken.json").write_text("{not json")

    assert read_manifest(tmp_path / "broken.json") is None
    assert read_manifest(tmp_path / "missing.json") is None
    assert latest_manifest(tmp_path)["inputs"] == newer["inputs"]
    assert not [p for p in tmp_path.iterdir() if ".part-" in p.name]


# --- download stage ------------------------------------------------------------------------------


def test_folder_source_is_cached_by_file_hashes_and_a_changed_file_says_so(tmp_path):
    folder = make_dataset(tmp_path / "src", n_train=40, n_test=20)
    cfg = DataConfig(source=str(folder), dir=tmp_path / "data")

    first = fetch_dataset(cfg)
    second = fetch_dataset(cfg)

    assert first.stage.status == "ran" and "no manifest yet" in first.stage.reason
    assert second.stage == StageOutcome(
        "cached",
        f"all 4 files of {folder.resolve()} unchanged (sha256 as recorded)",
    )
    assert second.digest == first.digest

    images = read_idx(folder / TRAIN_IMAGES, "images").copy()
    images[0, 0, 0] ^= 1
    write_idx(folder / TRAIN_IMAGES, images)
    third = fetch_dataset(cfg)

    assert third.stage.status == "ran"
    assert third.stage.reason.startswith(f"files.{TRAIN_IMAGES} changed ")
    assert third.digest != first.digest  # the digest was computed again, not reused


def test_downloads_cached_verified_and_a_corrupt_copy_fetched_again(
    mirror,  # noqa: F811
    idx_folder,
    tmp_path,
    monkeypatch,
):
    cfg = _mirrored_mnist(mirror, idx_folder, tmp_path, monkeypatch)

    first = fetch_dataset(cfg)
    second = fetch_dataset(cfg)
    cached = raw_dir(tmp_path, "mnist") / TRAIN_IMAGES
    cached.write_bytes(b"\x00" * 100)
    third = fetch_dataset(cfg)

    assert first.stage.status == "ran"
    assert first.stage.reason.startswith("downloaded ") and "(not cached)" in first.stage.reason
    assert second.stage == StageOutcome(
        "cached",
        "all 4 files present and verified (sha256)",
    )
    assert third.stage == StageOutcome(
        "ran",
        f"downloaded {TRAIN_IMAGES} (the cached copy failed its sha256 check)",
    )
    assert first.digest == second.digest == third.digest
    assert mirror.total_hits == 5


# --- preprocess stage ----------------------------------------------------------------------------


@pytest.fixture
def raw(idx_folder, tmp_path) -> dict:
    return fetch_dataset(DataConfig(source=str(idx_folder), dir=tmp_path / "data"))


def test_preprocess_says_cached_or_ran_and_which_input_changed(raw, tmp_path, monkeypatch):
    first = prepare_splits(raw, PreprocessConfig(val_size=100), tmp_path)
    second = prepare_splits(raw, PreprocessConfig(val_size=100), tmp_path)
    other = prepare_splits(raw, PreprocessConfig(val_size=50), tmp_path)
    standardised = prepare_splits(raw, PreprocessConfig(val_size=50, standardize=True), tmp_path)
    version = tasks.data.prepare.PREPROCESS_VERSION
    monkeypatch.setattr(tasks.data.prepare, "PREPROCESS_VERSION", version + 1)
    new_code = prepare_splits(raw, PreprocessConfig(val_size=50, standardize=True), tmp_path)

    assert first.stage == StageOutcome("ran", "no preprocessed data cached yet")
    assert second.stage.status == "cached" and second.path == first.path
    assert second.stage.reason == f"inputs unchanged, {first.path} verified (sha256)"
    assert other.stage == StageOutcome("ran", "preprocess.val_size changed 100 -> 50")
    assert standardised.stage.reason == "preprocess.standardize changed False -> True"
    version += 1
    assert new_code.stage.reason == (
        f"code_version.PREPROCESS_VERSION changed {version - 1} -> {version}"
    )
    assert len({first.path, other.path, standardised.path, new_code.path}) == 4
    manifest = read_manifest(Path(first.path).with_suffix(".json"))
    assert manifest["inputs"]["preprocess"] == {"val_size": 100, "standardize": False}
    assert manifest["inputs"]["dataset"]["digest"] == raw.digest
    assert len(manifest["output"]["sha256"]) == 64


def test_preprocess_rebuilds_a_cached_file_that_fails_its_hash_check(raw, tmp_path):
    first = prepare_splits(raw, PreprocessConfig(val_size=100), tmp_path)
    path = Path(first.path)
    with np.load(path) as npz:
        expected = npz["x_train"].copy()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size: only a hash notices
    path.write_bytes(bytes(data))

    again = prepare_splits(raw, PreprocessConfig(val_size=100), tmp_path)

    assert again.stage == StageOutcome(
        "ran",
        f"cached file {path} failed its hash check, rebuilt",
    )
    with np.load(path) as npz:
        np.testing.assert_array_equal(npz["x_train"], expected)
    assert prepare_splits(raw, PreprocessConfig(val_size=100), tmp_path).stage.status == ("cached")


def test_preprocess_adopts_a_cache_made_before_manifests(raw, tmp_path):
    first = prepare_splits(raw, PreprocessConfig(val_size=100), tmp_path)
    Path(first.path).with_suffix(".json").unlink()

    again = prepare_splits(raw, PreprocessConfig(val_size=100), tmp_path)

    assert again.stage.status == "cached" and "manifest written now" in again.stage.reason
    assert read_manifest(Path(first.path).with_suffix(".json")) is not None


# --- trusting a file's size and mtime ------------------------------------------------------------

HOUR_NS = 3600 * 10**9


def _age(*paths: Path, ns: int = HOUR_NS) -> None:
    """Set back each file's mtime by `ns` (as if written an hour ago), its content untouched."""
    for path in paths:
        stat = Path(path).stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - ns))


def _restore_mtime(path: Path, stat: os.stat_result) -> None:
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _no_reading(monkeypatch) -> None:
    """From here on, hashing, decompressing or loading any data file fails the test."""

    def fail(what):
        def reader(*args, **kwargs):
            raise AssertionError(f"{what} was called: a data file was read")

        return reader

    monkeypatch.setattr(tasks.data.cache, "sha256_file", fail("sha256_file"))
    monkeypatch.setattr(tasks.data.download, "_digest", fail("the dataset digest"))
    monkeypatch.setattr(tasks.data.prepare, "array_digest", fail("array_digest"))
    monkeypatch.setattr(tasks.data.prepare, "read_idx", fail("read_idx"))
    monkeypatch.setattr(np, "load", fail("np.load"))


@pytest.fixture
def local_source(tmp_path) -> Path:
    return make_dataset(tmp_path / "src", n_train=60, n_test=20)


def test_a_cached_run_reads_no_data_file_while_sizes_and_mtimes_are_as_recorded(
    local_source, tmp_path, monkeypatch, caplog
):
    cfg = DataConfig(source=str(local_source), dir=tmp_path / "data")
    raw = fetch_dataset(cfg)
    prepared = prepare_splits(raw, PreprocessConfig(val_size=10), tmp_path / "data")
    npz = Path(prepared.path)
    _age(*local_source.iterdir(), npz)  # written an hour ago, content unchanged
    with caplog.at_level(logging.INFO):
        rehashed = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)
    assert f"re-hashing {npz}: size/mtime changed" in caplog.text
    assert f"re-hashing {local_source / TRAIN_IMAGES}: size/mtime changed" in caplog.text
    assert rehashed.stage.reason == f"inputs unchanged, {npz} verified (sha256)"

    _no_reading(monkeypatch)
    again = fetch_dataset(cfg)
    cached = prepare_splits(again, PreprocessConfig(val_size=10), tmp_path / "data")

    assert again.stage == StageOutcome(
        "cached", f"all 4 files of {local_source} unchanged (sha256 as recorded)"
    )
    assert again.digest == raw.digest
    assert cached.stage == StageOutcome(
        "cached", f"inputs unchanged, {npz} unchanged since verified (size and mtime as recorded)"
    )
    assert cached.path == prepared.path
    assert cached.splits == prepared.splits  # MLflow's dataset digests, from the manifest
    assert cached.splits["train"].x_shape == (50, 784)


def test_a_file_touched_since_its_check_is_hashed_again_and_trusted_after(
    local_source, tmp_path, monkeypatch, caplog
):
    cfg = DataConfig(source=str(local_source), dir=tmp_path / "data")
    raw = fetch_dataset(cfg)
    npz = Path(prepare_splits(raw, PreprocessConfig(val_size=10), cfg.dir).path)
    _age(*local_source.iterdir(), npz)
    prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)  # recorded

    _age(npz, ns=HOUR_NS // 2)  # touched: another mtime, the same content
    hashed = []
    monkeypatch.setattr(
        tasks.data.cache,
        "sha256_file",
        lambda path, real=tasks.data.cache.sha256_file: hashed.append(path) or real(path),
    )
    with caplog.at_level(logging.INFO):
        touched = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)
    after = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)

    assert hashed == [npz]  # the touched file only, once
    assert f"re-hashing {npz}: size/mtime changed" in caplog.text
    assert touched.stage == StageOutcome("cached", f"inputs unchanged, {npz} verified (sha256)")
    assert "unchanged since verified" in after.stage.reason


def test_a_corrupted_file_is_caught_by_its_size_even_with_its_mtime_restored(
    local_source, tmp_path
):
    cfg = DataConfig(source=str(local_source), dir=tmp_path / "data")
    prepared = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)
    npz = Path(prepared.path)
    _age(npz)
    prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)  # recorded
    stat = npz.stat()
    with open(npz, "r+b") as f:  # a truncated write: the end of the file is gone
        f.truncate(stat.st_size - 100)
    _restore_mtime(npz, stat)

    again = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)

    assert again.stage == StageOutcome("ran", f"cached file {npz} failed its hash check, rebuilt")
    assert npz.stat().st_size == stat.st_size and again.splits == prepared.splits


def test_a_download_truncated_with_its_mtime_restored_is_fetched_again(
    mirror, idx_folder, tmp_path, monkeypatch
):
    cfg = _mirrored_mnist(mirror, idx_folder, tmp_path, monkeypatch)
    folder = raw_dir(tmp_path, "mnist")
    fetch_dataset(cfg)
    _age(*(folder / name for name in IDX_FILES.values()))
    fetch_dataset(cfg)  # hashed again, recorded
    with monkeypatch.context() as m:
        _no_reading(m)
        trusted = fetch_dataset(cfg)
    cached = folder / TRAIN_IMAGES
    stat = cached.stat()
    cached.write_bytes(cached.read_bytes()[:-10])
    _restore_mtime(cached, stat)
    truncated = fetch_dataset(cfg)

    assert trusted.stage == StageOutcome(
        "cached", "all 4 files present, unchanged since verified (size and mtime as recorded)"
    )
    assert truncated.stage == StageOutcome(
        "ran", f"downloaded {TRAIN_IMAGES} (the cached copy failed its sha256 check)"
    )
    assert cached.read_bytes() == (idx_folder / TRAIN_IMAGES).read_bytes()
    assert mirror.total_hits == 5  # four files once, the truncated one again


def test_the_accepted_limit_a_change_keeping_size_and_mtime_goes_unseen(local_source, tmp_path):
    """docs/caching.md: a cached file changed in place to other bytes of the same length, with
    its mtime set back to the recorded one, is trusted. Nothing the project does writes so."""
    cfg = DataConfig(source=str(local_source), dir=tmp_path / "data")
    npz = Path(prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir).path)
    _age(npz)
    prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)  # recorded
    stat = npz.stat()
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    _restore_mtime(npz, stat)

    again = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)

    assert again.stage.status == "cached" and "unchanged since verified" in again.stage.reason


def test_a_size_and_mtime_recorded_right_after_a_write_are_not_trusted(tmp_path, caplog):
    """Within the file system's timestamp granularity of a check, a second write can leave the
    mtime as it was: such a record is only trusted once the mtime had settled (git's 'racy
    clean' rule)."""
    path = tmp_path / "file"
    path.write_bytes(b"first")
    sha, fresh, hashed = known_sha256(path, None)
    assert hashed and fresh["sha256"] == sha == hashlib.sha256(b"first").hexdigest()

    stat = path.stat()
    path.write_bytes(b"other")  # same size, and (restored here) the same mtime
    _restore_mtime(path, stat)
    with caplog.at_level(logging.INFO):
        sha, _, hashed = known_sha256(path, fresh)
    assert hashed and sha == hashlib.sha256(b"other").hexdigest()
    assert "too recently to trust its mtime" in caplog.text

    settled = {**fresh, "checked_ns": fresh["mtime_ns"] + SETTLE_NS}
    assert known_sha256(path, settled)[2] is False  # an old enough record is trusted


def test_a_cached_stage_that_cannot_update_its_manifest_still_runs(
    local_source, tmp_path, monkeypatch, caplog
):
    """Recording sizes and mtimes again only saves the next run some hashing: on a full disk (or
    a read-only data folder) the cached stages go on, and the next run hashes again."""
    cfg = DataConfig(source=str(local_source), dir=tmp_path / "data")
    first = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tasks.data.cache, "write_manifest", full)
    with caplog.at_level(logging.WARNING):
        again = prepare_splits(fetch_dataset(cfg), PreprocessConfig(val_size=10), cfg.dir)

    assert again.stage.status == "cached" and again.splits == first.splits
    assert "No space left on device" in caplog.text and "carrying on" in caplog.text
