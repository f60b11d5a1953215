"""tasks/report/figures.py: figures a reader cannot misread."""

import math

import numpy as np
import pytest

from tasks.core.names import FASHION_MNIST_CLASSES, class_names
from tasks.report.figures import (
    plot_confusion_matrix,
    plot_curve_band,
    plot_test_accuracy,
    plot_training_loss,
)
from tasks.report.ranking import summarize_activations
from tasks.report.table import results_table
from tests.tasks.report.test_publish import result


def _strip(fig):
    """The diverged strip: the axes above the curves, sharing their epoch axis."""
    curves, strip = fig.axes
    assert strip.get_shared_x_axes().joined(curves, strip)
    return strip


def _markers(ax):
    """{marker: [(x, y), ...]} of the lines drawn on `ax`."""
    out: dict = {}
    for line in ax.get_lines():
        xy = list(zip(line.get_xdata(), line.get_ydata(), strict=True))
        out.setdefault(line.get_marker(), []).extend(xy)
    return out


def test_a_diverged_run_is_marked_at_its_epoch_in_a_strip_never_at_a_loss_value():
    rows = [
        result("tutorial", "softmax", 0.8, epochs=5),
        result("tutorial", "relu", None, diverged_epoch=0),
        result("tutorial", "elu", None, diverged_epoch=3),  # costs 1.5, 0.75, 0.5, then NaN
    ]
    fig = plot_training_loss(rows, "tutorial")
    curves = fig.axes[0]
    strip = _strip(fig)
    # in the strip: one row per diverged run, its "x" at the epoch it diverged on
    assert [t.get_text() for t in strip.get_yticklabels()] == ["relu", "elu"]
    assert sorted(_markers(strip)["x"]) == [(0, 0), (3, 1)]
    assert "epoch where the cost stopped being finite" in strip.get_title(loc="left")
    # on the curves: no "x" anywhere, and elu's line ends before its divergence epoch
    assert "x" not in _markers(curves)
    longest_elu = max(len(line.get_xdata()) for line in curves.get_lines())
    assert longest_elu == 5  # softmax's five epochs; elu drew epochs 0-2 only
    assert [list(line.get_xdata()) for line in curves.get_lines()][-1] == [0, 1, 2]
    assert curves.get_xlim()[1] >= 3  # the axis reaches the divergence epoch


def test_no_strip_when_nothing_diverged():
    fig = plot_training_loss([result("mlp", "relu", 0.9), result("mlp", "gelu", 0.9)], "mlp")
    assert len(fig.axes) == 1


def test_validation_accuracy_of_a_diverged_run_stops_where_it_diverged():
    rows = [result("mlp", "relu", 0.9), result("mlp", "selu", None, diverged_epoch=2)]
    rows[0]["val_accuracies"] = [0.5, 0.6, 0.7]
    rows[1]["val_accuracies"] = [0.55, 0.65, 0.09]  # epoch 2: NaN weights, 0.09 "accuracy"
    fig = plot_curve_band(
        rows, "mlp", "val_accuracies", "Validation accuracy", "Validation accuracy"
    )
    curves = fig.axes[0]
    drawn = [v for line in curves.get_lines() for v in line.get_ydata()]
    assert 0.09 not in drawn and 0.65 in drawn
    labels = [t.get_text() for t in curves.get_legend().get_texts()]
    assert labels == ["relu", "selu (diverged at epoch 2)"]
    assert _markers(_strip(fig))["x"] == [(2, 0)]
    assert "band" not in fig.get_suptitle()  # one seed: there is no band


def test_a_band_is_named_only_when_there_are_several_seeds():
    rows = [result("mlp", "relu", 0.9, seed=s) for s in (0, 1)]
    rows[0]["val_accuracies"], rows[1]["val_accuracies"] = [0.5, 0.6, 0.7], [0.4, 0.7, 0.8]
    fig = plot_curve_band(
        rows, "mlp", "val_accuracies", "Validation accuracy", "Validation accuracy"
    )
    assert fig.get_suptitle() == "Validation accuracy — mlp (band: lowest to highest seed)"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "relu (mean of 2 seeds)"
    ]


def _summary(rows):
    return summarize_activations(results_table(rows), "relu")


def test_test_accuracy_is_points_with_whiskers_on_an_axis_that_shows_the_differences():
    rows = []
    for seed, (a, b) in enumerate([(0.84, 0.866), (0.845, 0.868), (0.835, 0.87)]):
        rows += [result("mlp", "relu", a, seed=seed), result("mlp", "gelu", b, seed=seed)]
    rows.append(result("mlp", "selu", None, diverged_epoch=1))
    fig = plot_test_accuracy(_summary(rows))
    (ax,) = fig.axes
    assert not ax.patches  # no bars from 0
    low, high = ax.get_xlim()
    assert 0.8 < low < 0.835 and 0.87 < high < 0.9  # 0.84 and 0.868 far apart on this axis
    assert ax.get_xlabel() == f"Test accuracy (axis {low:.3f}–{high:.3f}, not from 0)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gelu", "relu", "selu"]  # best on top
    whiskers = [c for c in ax.collections if len(c.get_segments())]
    assert len(whiskers) == 2  # a 95 % interval for each sound activation, none for selu
    texts = [t.get_text() for t in ax.texts]
    assert any("diverged: no sound run" in t for t in texts)
    assert "95% CI" in fig.get_suptitle()


def test_one_seed_says_there_is_no_interval_and_each_model_gets_its_own_axis():
    rows = [
        result("tutorial", "softmax", 0.82),
        result("mlp", "relu", 0.868),
        result("mlp", "tanh", 0.861),
    ]
    fig = plot_test_accuracy(_summary(rows))
    tutorial, mlp = fig.axes
    assert (tutorial.get_title(loc="left"), mlp.get_title(loc="left")) == ("tutorial", "mlp")
    assert mlp.get_xlim()[0] > 0.85 and tutorial.get_xlim()[1] < 0.83
    assert "no interval" in fig.get_suptitle() and "CI" not in fig.get_suptitle()


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("mnist", [str(d) for d in range(10)]),
        ("fashion-mnist", list(FASHION_MNIST_CLASSES)),  # Debian's folder name
        ("fashion_mnist", list(FASHION_MNIST_CLASSES)),
        ("xor", ["0", "1"]),
        ("my-own-images", [str(d) for d in range(10)]),
    ],
)
def test_confusion_matrices_name_the_classes_of_the_dataset(dataset, expected):
    n = len(expected)
    names = class_names(dataset, n)
    assert names == expected
    matrix = np.eye(n, dtype=int) * 7
    fig = plot_confusion_matrix(matrix, "t", names)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == expected
    assert [t.get_text() for t in ax.get_yticklabels()] == expected


def test_figures_draw_nothing_non_finite():
    rows = [result("mlp", "relu", 0.9)]
    rows[0]["costs"] = [1.0, math.inf, 0.5]
    fig = plot_training_loss(rows, "mlp")
    drawn = [v for line in fig.axes[0].get_lines() for v in line.get_ydata()]
    assert all(math.isfinite(v) for v in drawn)
