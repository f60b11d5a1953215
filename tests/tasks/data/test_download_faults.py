"""Faults mid-download: whatever stops it, nothing half-written stays in the cache."""

import io
import urllib.request

import pytest

from tasks.data.download import _CHUNK, download_file


class _DiesMidway(io.BytesIO):
    """A response that delivers one chunk, then the user presses Ctrl-C."""

    headers = {"Content-Length": str(4 * _CHUNK)}

    def read(self, size=-1):
        if self.tell():
            raise KeyboardInterrupt
        return super().read(size)


def test_an_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(
        urllib.request, "urlopen", lambda url, timeout: _DiesMidway(b"x" * 4 * _CHUNK)
    )
    dest = tmp_path / "raw" / "train-images-idx3-ubyte.gz"

    with pytest.raises(KeyboardInterrupt):
        download_file(["https://mirror.invalid/"], dest.name, dest, "0" * 64, 1.0, 0)

    assert list(dest.parent.iterdir()) == []  # neither the file nor its .part-* temporary
