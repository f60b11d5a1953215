"""The networks and their training, evaluation and export, in TensorFlow (no MLflow logging and no
Prefect: `tasks.steps` wires them to runs)."""
