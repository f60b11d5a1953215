"""tasks/training/export.py: the best network as an MLflow pyfunc model that stands on its own,
loaded and used where nothing of the project is installed."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tasks.core.config import ModelsConfig
from tasks.training.export import probabilities, save_network
from tasks.training.models import build_network, save_weights

# Building a virtual environment with TensorFlow and MLflow from pip's cache takes a few minutes
# on 2 busy cores; the first time, downloading them (about 1 GB) adds what the network needs.
INSTALL_SECONDS = 1500
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
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "-r", str(folder / "requirements.txt")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=INSTALL_SECONDS,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
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
