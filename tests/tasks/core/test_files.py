"""tasks/core/files.py: a file is written whole or not at all."""

import hashlib

import pytest

from tasks.core.dotted import flatten
from tasks.core.files import (
    NoSpaceError,
    atomic_path,
    explaining_full_disk,
    sha256_file,
    write_text_atomic,
)
from tests.conftest import fill


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "report.json"
    write_text_atomic(dest, "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half of the new", encoding="utf-8")
        raise RuntimeError("disk full")
    assert dest.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_write_on_a_full_disk_keeps_the_old_file_and_says_what_to_free(small_disk):
    dest = small_disk / "manifest.json"
    write_text_atomic(dest, "old")
    fill(small_disk)

    with pytest.raises(NoSpaceError) as err:
        with explaining_full_disk(dest, "the manifest", "remove the filler"):
            write_text_atomic(dest, "new " * 100_000)

    message = str(err.value)
    assert message.startswith(f"no space left writing the manifest to {dest} (")
    assert "free on that file system): remove the filler" in message
    assert err.value.errno == 28  # still an OSError with ENOSPC for whoever checks
    assert dest.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "manifest.json"]


def test_other_write_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(PermissionError), explaining_full_disk(tmp_path, "x", "y"):
        raise PermissionError(13, "Permission denied")


def test_a_write_creates_the_folder_and_replaces_whole(tmp_path):
    dest = tmp_path / "a" / "b.txt"
    write_text_atomic(dest, "one")
    write_text_atomic(dest, "two")
    assert dest.read_text(encoding="utf-8") == "two"
    assert sha256_file(dest) == hashlib.sha256(b"two").hexdigest()


def test_flatten_gives_dotted_keys_and_keeps_lists_and_empty_mappings():
    record = {"train": {"epochs": 3, "lr": {"start": 0.1}}, "seeds": [0, 1], "extra": {}}
    assert flatten(record) == {
        "train.epochs": 3,
        "train.lr.start": 0.1,
        "seeds": [0, 1],
        "extra": {},
    }
