"""Evaluating one trained network on the test split, and closing its child MLflow run."""

import functools

import numpy as np
import tensorflow as tf
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking
from tasks.config import Cell, ModelsConfig
from tasks.models import network_from_weights
from tasks.train import as_pixels, score_network


def load_weights(path: str) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]  # savez order: arr_0, arr_1, ...


@functools.lru_cache(maxsize=1)
def _test_data(data_path: str) -> tuple[tf.Tensor, np.ndarray]:
    """x_test (as training holds images: see as_pixels) and y_test, read once per process."""
    with np.load(data_path, allow_pickle=False) as npz:
        return as_pixels(npz["x_test"]), npz["y_test"]


@task(name="evaluate_network", cache_policy=NO_CACHE)
def evaluate_network(
    trained: dict, data_path: str, cell: Cell, models: ModelsConfig, run: tracking.RunContext
) -> dict:
    """Test loss and accuracy for a trained network, logged on its child run; returns its row."""
    client = tracking.client(run)
    run_id = trained["run_id"]
    try:
        net = network_from_weights(
            cell.model, cell.activation, models, load_weights(trained["weights_path"])
        )
        test = score_network(net, *_test_data(data_path))
        tracking.log_test_metrics(client, run_id, test)
    except BaseException:
        tracking.end_run(client, run_id, "FAILED")
        raise
    tracking.end_run(client, run_id, "FINISHED")
    return {**trained, "test_loss": test["loss"], "test_accuracy": test["accuracy"]}
