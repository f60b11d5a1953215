"""One way to get a logger: Prefect's run logger inside a flow or task run, `logging` elsewhere."""

import logging

from prefect import get_run_logger
from prefect.exceptions import MissingContextError


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a run (its lines reach the Prefect UI), else `name`'s."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(name)
