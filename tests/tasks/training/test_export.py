"""tasks/training/export.py: the best network as an MLflow pyfunc model that stands on its own,
loaded and used where nothing of the project is installed."""

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tasks.core.config import ModelsConfig
from tasks.training.export import probabilities, save_network
from tasks.training.models import build_network, save_weights

# Installing TensorFlow and MLflow into a fresh environment: about a minute from local wheels,
# two to four when they must be downloaded (about 1 GB).
INSTALL_SECONDS = 1500
# The wheels the model's requirements resolve to are kept here between runs (pip's own cache
# does not keep them on this machine), so only the first run downloads them.
WHEELS = Path(
    os.environ.get("ACTLAB_WHEEL_CACHE", Path.home() / ".cache" / "activation-lab" / "wheels")
)
PROBE = """
import json, sys
import numpy as np
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
out = np.asarray(model.predict(np.load(sys.argv[2])))
print(json.dumps({
    "probabilities": out.tolist(),
    "loaded": [m for m in ("prefect", "filelock", "flows") if m in sys.modules],
    "tasks": sys.modules["tasks"].__file__,
}))
"""


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """An mlp (untrained: loading and predicting is what is under test) saved as a pyfunc model;
    (its folder, 5 input images, the probabilities the project computes for them)."""
    tmp = tmp_path_factory.mktemp("export")
    net = build_network("mlp", "gelu", ModelsConfig(mlp={"hidden_units": [16]}), seed=0)
    weights = tmp / "weights.npz"
    save_weights(net.numpy_weights(), weights)
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    save_network(net, str(weights), x, tmp / "model")
    return tmp / "model", x, probabilities(net, x)


def _requirement_names(folder) -> set[str]:
    lines = (folder / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return {re.split(r"[=<>~!\[ ]", line, maxsplit=1)[0].lower() for line in lines if line}


def _install(python: str, requirements: Path, cwd: Path, env: dict) -> None:
    """pip install -r `requirements` and nothing else, from wheels downloaded once per set of
    requirements (into WHEELS/<its sha256>)."""
    text = requirements.read_text(encoding="utf-8")
    wheels = WHEELS / hashlib.sha256(text.encode()).hexdigest()[:16]
    pip = [python, "-m", "pip"]
    steps = []
    if not (wheels / ".complete").is_file():
        steps.append([*pip, "download", "--quiet", "-d", str(wheels), "-r", str(requirements)])
    steps.append(
        [*pip, "install", "--quiet", "--no-index", "--find-links", str(wheels)]
        + ["-r", str(requirements)]
    )
    deadline = time.monotonic() + INSTALL_SECONDS
    for step in steps:
        done = subprocess.run(
            step, cwd=cwd, env=env, capture_output=True, text=True,
            timeout=max(1.0, deadline - time.monotonic()),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        if step[3] == "download":
            (wheels / ".complete").touch()


@pytest.mark.slow
@pytest.mark.timeout(2400)  # installs TensorFlow and MLflow
def test_the_model_predicts_in_a_fresh_virtualenv_built_from_its_own_requirements(
    saved_model, tmp_path
):
    folder, x, expected = saved_model
    assert _requirement_names(folder) == {"mlflow", "tensorflow", "numpy", "pydantic", "pyyaml"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    # nothing of the project or of this test environment: no PYTHONPATH, another folder
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _install(python, folder / "requirements.txt", tmp_path, env)
    np.save(tmp_path / "x.npy", x)

    done = subprocess.run(
        [python, "-c", PROBE, str(folder), str(tmp_path / "x.npy")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5, atol=1e-6)
    assert result["loaded"] == []  # the model's code imports neither Prefect nor filelock
    assert result["tasks"].startswith(str(folder / "code" / "tasks"))  # the model's own copy
