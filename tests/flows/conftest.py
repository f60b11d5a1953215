"""Flow tests: one Prefect test server for the session, and the real config shrunk to seconds."""

import os
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from tasks.core.config import Config, load_config

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def prefect_server():
    """One Prefect test server (and database) for the session's flow tests."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _prefect_server_for_flow_tests(request):
    """The tests that run flows are marked slow and get the session's Prefect test server; the
    quick tier (`make test-fast`) starts none."""
    if request.node.get_closest_marker("slow"):
        request.getfixturevalue("prefect_server")


def small_overrides(tmp_path: Path, source: Path | str) -> list[str]:
    """params.yaml, shrunk: the given data, 2 epochs, 2 activations, everything under tmp_path."""
    return [
        f"data.source={source}",
        f"data.dir={tmp_path / 'data'}",
        "preprocess.val_size=100",
        "train.epochs=2",
        "train.batch_size=50",
        "sweep.activations=[softmax, relu]",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.experiment=test",
        f"report.dir={tmp_path / 'reports'}",
    ]


@pytest.fixture
def small_config(tmp_path: Path, idx_folder: Path) -> Config:
    return load_config(PARAMS, small_overrides(tmp_path, idx_folder))


@pytest.fixture
def fashion_mnist() -> Path:
    """Debian's Fashion-MNIST (`apt-get install dataset-fashion-mnist`); CI must have it."""
    if not (FASHION / "train-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{FASHION} is missing: .ci/run must install dataset-fashion-mnist")
        pytest.skip(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")
    return FASHION
