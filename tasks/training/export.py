"""The best network of a comparison as an MLflow model (`tracking.log_models: true`).

The networks are plain `tf.Variable`s with a forward function (tasks.training.models), not Keras
models, so the sound way to serve one is a pyfunc model: the saved weights and a small JSON spec
(model, activation, slope) as artifacts, and `ActivationNetwork` rebuilding the forward pass from
them. `mlflow.pyfunc.load_model("runs:/<child run id>/model").predict(x)` takes preprocessed
images (n, 784) float32, as in the run's processed .npz, and returns (n, classes) class
probabilities. The signature records exactly that.
"""

import json
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import tensorflow as tf
from mlflow.models import infer_signature

from tasks.training.models import Network, load_weights

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
            weights = [tf.Variable(a) for a in load_weights(context.artifacts["weights"])]
            self._net = Network(
                spec["model"], spec["activation"], spec["init"], weights, spec["leaky_slope"]
            )

        def predict(self, context, model_input, params=None) -> np.ndarray:
            return probabilities(self._net, np.asarray(model_input, dtype=np.float32))


def probabilities(net: Network, x: np.ndarray) -> np.ndarray:
    """(n, inputs) -> (n, classes): softmax of the mlp's logits, the tutorial's pred as is."""
    out = net.output(tf.constant(x, tf.float32))
    return (tf.nn.softmax(out) if net.model == "mlp" else out).numpy()


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
                code_paths=[str(Path(__file__).resolve().parents[1])],  # the `tasks` package
                pip_requirements=[f"{name}=={version(name)}" for name in _REQUIREMENTS],
            )
