"""Reading gzip'd IDX files (the MNIST format) and checking them against their own headers."""

import gzip
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np

from tasks.data import DataError

_IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x00000803: ubyte, 3 dims; 0x00000801: 1 dim

_IMAGE_SHAPE = (28, 28)

N_CLASSES = 10  # MNIST-format labels: the digits 0 to 9


def gzip_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, EOFError):
        problem = "truncated (the gzip stream ends early)"
    elif isinstance(exc, gzip.BadGzipFile):
        problem = f"not a valid gzip file ({exc})"
    else:
        problem = f"corrupt gzip data ({exc})"
    return DataError(
        f"{path}: {problem}; replace it with a complete copy (delete it if it was downloaded, "
        "so the next run fetches it again) or point data.source elsewhere"
    )


def read_idx(path: Path, kind: Literal["images", "labels"]) -> np.ndarray:
    """A gzip'd IDX file as uint8: images (n, 28, 28) or labels (n,), checked against its header."""
    path = Path(path)
    expected_magic = _IDX_MAGIC[kind]
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise gzip_error(path, exc) from None

    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        swapped = {v: k for k, v in _IDX_MAGIC.items()}.get(magic)
        hint = f" (that is an IDX {swapped} file: are the files swapped?)" if swapped else ""
        raise DataError(
            f"{path}: found magic 0x{magic:08x}, expected 0x{expected_magic:08x} for IDX {kind}"
            f"{hint}; data.source must hold MNIST-format IDX files"
        )
    if len(data) < header:
        raise DataError(f"{path}: truncated: {len(data)} bytes, the IDX header alone is {header}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if kind == "images" and tuple(dims[1:]) != _IMAGE_SHAPE:
        raise DataError(
            f"{path}: images are {dims[1]}×{dims[2]}, expected 28×28 (MNIST format); "
            "data.source must hold 28×28 images"
        )
    expected_len = int(np.prod(dims, dtype=np.int64))
    found_len = len(data) - header
    if found_len != expected_len:
        problem = "truncated" if found_len < expected_len else "extra bytes after the data"
        raise DataError(
            f"{path}: {problem}: the header announces {dims[0]} {kind} ({expected_len} bytes), "
            f"the file holds {found_len} bytes; replace it with a complete copy"
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    if kind == "labels" and array.size and int(array.max()) >= N_CLASSES:
        bad = int(np.count_nonzero(array >= N_CLASSES))
        raise DataError(
            f"{path}: {bad} labels outside 0..9 (largest {int(array.max())}); "
            "MNIST-format labels are the digits 0 to 9"
        )
    return array
