"""Files written whole or not at all, their sha256, and a full disk said plainly.

Every write of something another run or reader may pick up (downloads, preprocessed splits,
manifests, weights) goes to a temporary sibling first and is renamed into place, so an interrupted
or failed write never leaves a partial file under the real name. A write that fails for lack of
space becomes a `NoSpaceError` naming the file, the space left and what to free.
"""

import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left; disk quota exceeded


class NoSpaceError(OSError):
    """A write failed for lack of disk space. The message names the file and what to free."""

    def __init__(self, message: str, code: int = errno.ENOSPC):
        super().__init__(message)
        self.errno = code


_CHUNK = 1 << 20  # bytes per read when hashing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_identity(path: str | Path) -> tuple[int, ...]:
    """What tells one written file from another at the same path: a rewrite (a new file renamed
    into place, as atomic_path makes) changes the inode, an edit the size or modification time.
    Raises OSError if there is no file."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextmanager
def atomic_path(dest: Path, make_parent: bool = True) -> Iterator[Path]:
    """A temporary path beside `dest` to write to; renamed to `dest` if the block succeeds, removed
    whatever happens. Open it with mode "xb"/"x" (a fresh file) or pass it to a writer. With
    `make_parent` False, `dest`'s folder must exist (FileNotFoundError otherwise)."""
    dest = Path(dest)
    if make_parent:
        dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part-{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(dest: Path, text: str) -> None:
    """`dest` holds `text` (UTF-8), or keeps what it held if the write fails."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _free_bytes(path: Path) -> int | None:
    """Free space on the file system holding `path` (or its nearest existing parent)."""
    for folder in (Path(path), *Path(path).parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@contextmanager
def explaining_full_disk(path: Path, what: str, to_free: str) -> Iterator[None]:
    """Turn a write that fails for lack of space inside the block into a NoSpaceError: "no space
    left writing `what` to `path` (N free on that file system): `to_free`"."""
    try:
        yield
    except NoSpaceError:
        raise
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        raise NoSpaceError(
            f"no space left writing {what} to {path} ({_size(_free_bytes(path))} free on that "
            f"file system): {to_free}",
            exc.errno,
        ) from exc
