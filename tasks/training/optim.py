"""Optimisers and learning-rate schedules, as graph-friendly TensorFlow functions.

Written out rather than taken from `keras.optimizers` so that the update each step makes is the
formula on the page, runs inside the project's one-graph-per-epoch loop, and takes the rate of
the schedule below at every step.

A schedule gives the rate of global step t (counted from 0 over the whole run), with
s = steps per epoch:
    epoch_decay   lr · (1 - decay)^floor(t / s)   the tutorial's intended per-epoch decay
    exponential   lr · (1 - decay)^(t / s)        the same decay, smoothly per step
    inverse_time  lr / (1 + decay · t / s)
    constant      lr
"""

import tensorflow as tf

OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("epoch_decay", "exponential", "inverse_time", "constant")
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-7  # Keras' defaults


def learning_rate(schedule: str, lr0, decay, step, steps_per_epoch: int) -> tf.Tensor:
    """The rate used at global step `step` (float32 scalar)."""
    lr0, decay = tf.cast(lr0, tf.float32), tf.cast(decay, tf.float32)
    epochs = tf.cast(step, tf.float32) / float(steps_per_epoch)  # fractional epochs done
    if schedule == "epoch_decay":
        return lr0 * tf.pow(1.0 - decay, tf.floor(epochs))
    if schedule == "exponential":
        return lr0 * tf.pow(1.0 - decay, epochs)
    if schedule == "inverse_time":
        return lr0 / (1.0 + decay * epochs)
    if schedule == "constant":
        return lr0
    raise ValueError(f"unknown schedule {schedule!r}; accepted: {', '.join(SCHEDULES)}")


def make_state(optimizer: str, weights: list[tf.Variable]) -> list[tf.Variable]:
    """Zeroed slot variables: none for sgd, a velocity per weight for momentum, m and v for adam."""
    per_weight = {"sgd": 0, "momentum": 1, "adam": 2}[optimizer]
    return [tf.Variable(tf.zeros_like(w)) for _ in range(per_weight) for w in weights]


def reset_state(state: list[tf.Variable]) -> None:
    for s in state:
        s.assign(tf.zeros_like(s))


def apply_update(optimizer, weights, grads, state, lr, step, momentum) -> None:
    """One step of `optimizer` on `weights` in place. `step` counts from 0."""
    if optimizer == "sgd":
        for w, g in zip(weights, grads, strict=True):
            w.assign_sub(lr * g)
    elif optimizer == "momentum":  # classical momentum: v <- mu v - lr g; w <- w + v
        for w, g, v in zip(weights, grads, state, strict=True):
            w.assign_add(v.assign(momentum * v - lr * g))
    elif optimizer == "adam":  # Kingma & Ba 2015, with bias correction
        t = tf.cast(step, tf.float32) + 1.0
        n = len(weights)
        for w, g, m, v in zip(weights, grads, state[:n], state[n:], strict=True):
            m.assign(ADAM_BETA1 * m + (1.0 - ADAM_BETA1) * g)
            v.assign(ADAM_BETA2 * v + (1.0 - ADAM_BETA2) * tf.square(g))
            m_hat = m / (1.0 - tf.pow(ADAM_BETA1, t))
            v_hat = v / (1.0 - tf.pow(ADAM_BETA2, t))
            w.assign_sub(lr * m_hat / (tf.sqrt(v_hat) + ADAM_EPSILON))
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}; accepted: {', '.join(OPTIMIZERS)}")
