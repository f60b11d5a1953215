"""The best network of a comparison as an MLflow model (`tracking.log_models: true`).

The networks are plain `tf.Variable`s with a forward function (tasks.models), not Keras models,
so the sound way to serve one is a pyfunc model: the saved weights and a small JSON spec
(model, activation, slope) as artifacts, and `ActivationNetwork` rebuilding the forward pass from
them. `mlflow.pyfunc.load_model("runs:/<child run id>/model").predict(x)` takes preprocessed
images (n, 784) float32, as in the run's processed .npz, and returns (n, classes) class
probabilities. The signature records exactly that.
"""

import json
import math
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import tensorflow as tf
from mlflow.models import infer_signature
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking
from tasks.config import ModelsConfig
from tasks.logs import run_logger
from tasks.models import Network, network_from_weights

MODEL_PATH = "model"  # artifact folder of the child run
_REQUIREMENTS = ("mlflow", "tensorflow", "numpy", "pydantic", "pyyaml")


# MLflow warns at class definition that `predict` lacks type hints for its own input validation;
# the signature logged with the model (infer_signature) describes the input instead.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)

    class ActivationNetwork(mlflow.pyfunc.PythonModel):
        """A trained network from its weights: preprocessed images in, class probabilities out."""

        def load_context(self, context) -> None:
            spec = json.loads(Path(context.artifacts["spec"]).read_text(encoding="utf-8"))
            with np.load(context.artifacts["weights"], allow_pickle=False) as npz:
                arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
            weights = [tf.Variable(a) for a in arrays]
            self._net = Network(
                spec["model"], spec["activation"], spec["init"], weights, spec["leaky_slope"]
            )

        def predict(self, context, model_input, params=None) -> np.ndarray:
            return probabilities(self._net, np.asarray(model_input, dtype=np.float32))


def probabilities(net: Network, x: np.ndarray) -> np.ndarray:
    """(n, inputs) -> (n, classes): softmax of the mlp's logits, the tutorial's pred as is."""
    out = net.output(tf.constant(x, tf.float32))
    return (tf.nn.softmax(out) if net.model == "mlp" else out).numpy()


def best_result(results: list[dict]) -> dict | None:
    """The sound run with the highest test accuracy (ties: the earlier in the grid)."""
    sound = [
        r
        for r in results
        if r["status"] == "ok" and r["test_accuracy"] is not None
        if math.isfinite(r["test_accuracy"])
    ]
    return max(sound, key=lambda r: r["test_accuracy"], default=None)


def save_network(net: Network, weights_path: str, x_example: np.ndarray, path: Path) -> None:
    """An MLflow pyfunc model folder at `path` (must not exist) for `net`."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "network.json"
        spec.write_text(
            json.dumps(
                {
                    "model": net.model,
                    "activation": net.activation,
                    "init": net.init,
                    "leaky_slope": net.leaky_slope,
                    "layer_sizes": net.layer_sizes,
                }
            ),
            encoding="utf-8",
        )
        signature = infer_signature(x_example, probabilities(net, x_example))
        with warnings.catch_warnings():  # the type-hint advice again: the signature says it
            warnings.filterwarnings("ignore", message=".*Add type hints", category=UserWarning)
            mlflow.pyfunc.save_model(
                path=str(path),
                python_model=ActivationNetwork(),
                artifacts={"weights": str(weights_path), "spec": str(spec)},
                signature=signature,
                input_example=x_example,  # MLflow checks the saved model predicts on it
                code_paths=[str(Path(__file__).resolve().parent)],  # the `tasks` package
                pip_requirements=[f"{name}=={version(name)}" for name in _REQUIREMENTS],
            )


@task(name="log_best_model", cache_policy=NO_CACHE)
def log_best_model(
    results: list[dict], data_path: str, models: ModelsConfig, run: tracking.RunContext
) -> str | None:
    """Log the best network on its child run as `model/`; tag the parent with its URI."""
    from tasks.evaluate import load_weights

    best = best_result(results)
    if best is None:
        run_logger(__name__).warning("no sound run: no model to log")
        return None
    arrays = load_weights(best["weights_path"])
    net = network_from_weights(best["model"], best["activation"], models, arrays)
    with np.load(data_path, allow_pickle=False) as npz:
        x_example = npz["x_test"][:5]  # (5, inputs) float32, as the network was fed
    client = tracking.client(run)
    with tempfile.TemporaryDirectory() as tmp:
        save_network(net, best["weights_path"], x_example, Path(tmp) / MODEL_PATH)
        client.log_artifacts(best["run_id"], str(Path(tmp) / MODEL_PATH), MODEL_PATH)
    uri = f"runs:/{best['run_id']}/{MODEL_PATH}"
    client.set_tag(run.parent_run_id, "best_model_uri", uri)
    client.set_tag(best["run_id"], "best_model", "true")
    return uri
