"""tasks/data/cache.py and the caching it gives the data stages: cached or ran, and why."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

import tasks.data.download
import tasks.data.prepare
from tasks.core.config import DataConfig, PreprocessConfig
from tasks.core.paths import IDX_FILES, raw_dir
from tasks.core.results import StageOutcome
from tasks.data.cache import diff_inputs, latest_manifest, read_manifest, write_manifest
from tasks.data.download import fetch_dataset
from tasks.data.idx import read_idx
from tasks.data.prepare import prepare_splits
from tests.idx import make_dataset, write_idx

TRAIN_IMAGES = IDX_FILES["train_images"]


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
    sums = {}
    for name in IDX_FILES.values():
        data = (idx_folder / name).read_bytes()
        mirror.serve(f"m/{name}", data)
        sums[name] = hashlib.sha256(data).hexdigest()
    monkeypatch.setitem(tasks.data.download.SHA256, "mnist", sums)
    cfg = DataConfig(
        source="mnist", dir=tmp_path, mirrors=(mirror.url("m"),), timeout_seconds=2, retries=0
    )

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
