"""Evaluating one trained network on the test split, and closing its child MLflow run.

Beside test loss and accuracy: the confusion matrix (logged as `confusion_matrix.json` and as an
image) and the accuracy on each class, so a report can show where a network errs.
"""

import functools
import math

import numpy as np
import tensorflow as tf
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking
from tasks.config import Cell, ModelsConfig
from tasks.models import network_from_weights
from tasks.train import _features, as_pixels, score_network


def load_weights(path: str) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]  # savez order: arr_0, arr_1, ...


@functools.lru_cache(maxsize=1)
def _test_data(data_path: str) -> tuple[tf.Tensor, np.ndarray]:
    """x_test (as training holds images: see as_pixels) and y_test, read once per process."""
    with np.load(data_path, allow_pickle=False) as npz:
        return as_pixels(npz["x_test"]), npz["y_test"]


def predict_classes(net, x: tf.Tensor, rows: int = 10_000) -> np.ndarray:
    """(n,) predicted class per image: the argmax of the network's output, `rows` at a time."""
    out = [
        tf.argmax(net.output(_features(x[i : i + rows])), axis=1).numpy()
        for i in range(0, int(x.shape[0]), rows)
    ]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> list[float]:
    """Share of each true class predicted right (NaN for a class with no test image)."""
    totals = matrix.sum(axis=1)
    return [
        float(matrix[k, k] / totals[k]) if totals[k] else float("nan") for k in range(len(matrix))
    ]


@task(name="evaluate_network", cache_policy=NO_CACHE)
def evaluate_network(
    trained: dict, data_path: str, cell: Cell, models: ModelsConfig, run: tracking.RunContext
) -> dict:
    """Test loss and accuracy for a trained network, logged on its child run; returns its row.

    A network that diverged is not scored: its cost stopped being finite, and its "accuracy"
    would be that of weights training gave up on (with NaN weights, the argmax of NaN rows: one
    class for every image). Its test metrics are logged as NaN.
    """
    client = tracking.client(run)
    run_id = trained["run_id"]
    try:
        weights = load_weights(trained["weights_path"])
        if trained["status"] == "diverged" or not all(np.isfinite(w).all() for w in weights):
            unscored = {"loss": math.nan, "accuracy": math.nan}
            tracking.log_test_metrics(client, run_id, unscored)
            tracking.end_run(client, run_id, "FINISHED")
            return {**trained, "test_loss": math.nan, "test_accuracy": math.nan}
        net = network_from_weights(cell.model, cell.activation, models, weights)
        x_test, y_test = _test_data(data_path)
        test = score_network(net, x_test, y_test)
        tracking.log_test_metrics(client, run_id, test)
        matrix = confusion_matrix(y_test, predict_classes(net, x_test), net.n_classes)
        tracking.log_confusion(client, run_id, cell.name, matrix, per_class_accuracy(matrix))
    except BaseException:
        tracking.end_run(client, run_id, "FAILED")
        raise
    tracking.end_run(client, run_id, "FINISHED")
    return {**trained, "test_loss": test["loss"], "test_accuracy": test["accuracy"]}
