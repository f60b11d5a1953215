"""The networks and their training, evaluation and export, in TensorFlow (no MLflow logging and no
Prefect: `tasks.steps` wires them to runs)."""

from tasks.training import xla_cache

# Before any module of this package imports TensorFlow: XLA reads its flags once.
xla_cache.enable()
