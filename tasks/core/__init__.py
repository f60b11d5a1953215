"""The core: config, names, paths, URIs, files and typed results. Imports nothing heavy (no
TensorFlow, MLflow or Prefect) and nothing else of the project, so every command can validate its
input in a fraction of a second."""
