"""Shared fixtures: a tiny learnable MNIST-format dataset on disk."""

from pathlib import Path

import pytest

from tests.idx import make_dataset


@pytest.fixture(scope="session")
def idx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the four gzip'd IDX files: 600 training and 200 test images. Do not modify."""
    return make_dataset(tmp_path_factory.mktemp("idx"))
