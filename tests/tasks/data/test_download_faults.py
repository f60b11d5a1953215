"""Faults mid-download: whatever stops it, nothing half-written stays in the cache."""

import pytest
import requests

from tasks.data.download import _CHUNK, download_file


class _DiesMidway:
    """A response that delivers one chunk, then the user presses Ctrl-C."""

    headers = {"Content-Length": str(4 * _CHUNK)}

    def raise_for_status(self) -> None:
        pass

    def iter_content(self, chunk_size):
        yield b"x" * chunk_size
        raise KeyboardInterrupt


def test_an_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(requests, "get", lambda url, **kw: _DiesMidway())
    dest = tmp_path / "raw" / "train-images-idx3-ubyte.gz"

    with pytest.raises(KeyboardInterrupt):
        download_file(["https://mirror.invalid/"], dest.name, dest, "0" * 64, 1.0, 0)

    assert list(dest.parent.iterdir()) == []  # neither the file nor its temporary
