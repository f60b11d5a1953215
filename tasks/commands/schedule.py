"""Scheduled runs: what `actlab serve` hands Prefect, checked before anything is served.

A deployment's parameters are stored on the Prefect server as JSON and shown in its UI, so the flow
receives the resolved config as a plain dict (Prefect validates it into `Config` when a run starts)
and a tracking URI carrying a password is refused: credentials belong in the environment
(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) of the process that runs the flow.
"""

from urllib.parse import urlsplit

from prefect.client.schemas.schedules import CronSchedule
from pydantic import ValidationError

from tasks.core.config import Config, ConfigError


def check_cron(cron: str, timezone: str | None = None) -> CronSchedule:
    """The schedule for `cron`, or a ConfigError naming the value and what a cron line is."""
    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        problem = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ConfigError(
            f"--cron {cron!r} (timezone {timezone or 'UTC'}): {problem}; expected five fields "
            "'minute hour day-of-month month day-of-week', e.g. '0 3 * * *' (03:00 every day)"
        ) from None


def deployment_parameters(cfg: Config) -> dict:
    """{"config": the resolved config as JSON-able dict}, the flow's parameters for a deployment."""
    record = cfg.model_dump(mode="json")
    uri = record["tracking"]["uri"]
    if uri and urlsplit(uri).password is not None:
        raise ConfigError(
            "tracking.uri holds a password: deployment parameters are stored on the Prefect "
            "server and shown in its UI; put the credentials in MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD where the flow runs, and the URI without them in tracking.uri"
        )
    return {"config": record}
