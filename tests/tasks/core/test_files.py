"""tasks/core/files.py: a file is written whole or not at all."""

import hashlib

import pytest

from tasks.core.dotted import flatten
from tasks.core.files import atomic_path, sha256_file, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    dest = tmp_path / "report.json"
    write_text_atomic(dest, "old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half of the new", encoding="utf-8")
        raise RuntimeError("disk full")
    assert dest.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


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
