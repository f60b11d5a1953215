"""Scoring a trained network on the test split: loss, accuracy, predictions, the confusion matrix
and the accuracy on each class, so a report can show where a network errs."""

import numpy as np
import tensorflow as tf

from tasks.training.loop import predict_and_score
from tasks.training.models import Network
from tasks.training.stack import score_stacked


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


def evaluate_on_test(
    net: Network, x_test: tf.Tensor, y_test: np.ndarray
) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """({"loss", "accuracy"} on the test split, its confusion matrix, (n,) predicted classes)."""
    test, predicted = predict_and_score(net, x_test, y_test)
    matrix = confusion_matrix(y_test, predicted, net.n_classes)
    return test, matrix, predicted


def evaluate_stacked(
    nets: list[Network], x_test: tf.Tensor, y_test: np.ndarray
) -> list[tuple[dict[str, float], np.ndarray, np.ndarray]]:
    """`evaluate_on_test` for networks of one shape, scored in one call (stack.score_stacked):
    the same numbers, each network's in order."""
    return [
        (test, confusion_matrix(y_test, predicted, net.n_classes), predicted)
        for net, (test, predicted) in zip(nets, score_stacked(nets, x_test, y_test), strict=True)
    ]
