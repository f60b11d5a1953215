"""The logic behind the CLI commands that are not the flow itself: browse, reproduce, serve, and
the choice of task runner."""
