"""MLflow at the edges: writing parent and child runs, and reading them back."""
