"""Schedules and optimiser updates against hand-computed numbers."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tasks.training.optim import apply_update, learning_rate, make_state


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # lr 0.5, decay 0.2, 4 steps per epoch; steps 0, 2, 4, 6, 8
        ("epoch_decay", [0.5, 0.5, 0.4, 0.4, 0.32]),
        ("exponential", [0.5 * 0.8 ** (t / 4) for t in (0, 2, 4, 6, 8)]),
        ("inverse_time", [0.5 / (1 + 0.2 * t / 4) for t in (0, 2, 4, 6, 8)]),
        ("constant", [0.5] * 5),
    ],
)
def test_schedules(schedule, expected):
    rates = [float(learning_rate(schedule, 0.5, 0.2, t, 4)) for t in (0, 2, 4, 6, 8)]
    assert rates == pytest.approx(expected, rel=1e-6)


def _steps(optimizer, grads, lr=0.1, momentum=0.9):
    w = tf.Variable([1.0, -2.0])
    state = make_state(optimizer, [w])
    for step, g in enumerate(grads):
        apply_update(optimizer, [w], [tf.constant(g, tf.float32)], state, lr, step, momentum)
    return w.numpy()


def test_sgd_step():
    np.testing.assert_allclose(_steps("sgd", [[1.0, -4.0]]), [0.9, -1.6], rtol=1e-6)


def test_momentum_accumulates_velocity():
    # v1 = -0.1 g1; w1 = w0 + v1.  v2 = 0.9 v1 - 0.1 g2; w2 = w1 + v2
    g1, g2 = np.array([1.0, -4.0]), np.array([2.0, 0.0])
    v1 = -0.1 * g1
    v2 = 0.9 * v1 - 0.1 * g2
    expected = np.array([1.0, -2.0]) + v1 + v2
    np.testing.assert_allclose(_steps("momentum", [g1, g2]), expected, rtol=1e-6)


def test_adam_first_step_moves_each_weight_by_the_rate():
    # bias-corrected m/sqrt(v) is g/|g| at t = 1: every weight moves by lr against its gradient
    np.testing.assert_allclose(_steps("adam", [[3.0, -0.02]]), [0.9, -1.9], rtol=1e-4)


def test_adam_second_step_matches_the_paper():
    g1, g2 = np.array([1.0, -4.0]), np.array([2.0, 0.0])
    b1, b2, eps, lr = 0.9, 0.999, 1e-7, 0.1
    w = np.array([1.0, -2.0])
    m = v = np.zeros(2)
    for t, g in enumerate([g1, g2], start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    np.testing.assert_allclose(_steps("adam", [g1, g2]), w, rtol=1e-5)
    assert not math.isclose(w[1], -2.0)
