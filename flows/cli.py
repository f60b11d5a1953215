"""`actlab`: the command line. Validates the config before anything runs, then hands over to a flow.

actlab run [-p params.yaml] [--set train.epochs=3 --set sweep.activations=[relu,tanh]]
actlab ui  [-p params.yaml] [--port 5000]
actlab report RUN_ID [-p params.yaml] [--baseline gelu]
actlab runs [-p params.yaml] [-n 10]
actlab serve --cron "0 3 * * *" [-p params.yaml] [--set ...]
actlab reproduce RUN_ID [--tracking-uri URI]
"""

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import typer

# The project's runs stay on this machine: no usage reports from Prefect's local server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="activation-lab: which activation function should this network use?",
)

PARAMS = typer.Option(
    Path("params.yaml"), "-p", "--params", help="The experiment's params file.", show_default=True
)
SET = typer.Option(
    None,
    "--set",
    metavar="KEY=VALUE",
    help="Override one key: dotted key, YAML value, e.g. --set train.epochs=3. Repeatable.",
)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SIGNALS: list[int] = []  # the signals this process got while a flow ran


def _interrupt(signum: int, frame) -> None:
    """Ctrl-C and SIGTERM (kill, a CI timeout, systemd) both unwind the flow as KeyboardInterrupt:
    runs are ended, temporary files removed, instead of the process vanishing mid-write."""
    _SIGNALS.append(signum)
    if len(_SIGNALS) == 1:
        threading.Thread(target=_leave_once_runs_closed, daemon=True).start()
    raise KeyboardInterrupt(signal.Signals(signum).name)


# After an interrupted flow's MLflow runs are ended, how long the unwinding may still take before
# the CLI leaves anyway (Prefect can spend a minute retrying to report to a server the same
# Ctrl-C stopped).
UNWIND_GRACE_SECONDS = 5.0


def _leave_once_runs_closed() -> None:
    from tasks.tracking.runs import RUNS_CLOSED

    if RUNS_CLOSED.wait(timeout=600):
        time.sleep(UNWIND_GRACE_SECONDS)
        _report_interrupt_and_exit()


def _report_interrupt_and_exit() -> None:
    with _EXITING:  # once, whichever of the main thread and the watchdog gets here first
        typer.echo(
            f"interrupted ({signal.Signals(_SIGNALS[0]).name}): this flow run's MLflow runs "
            "that were still open are marked KILLED, and a report is only ever written whole; "
            "run again to start afresh",
            err=True,
        )
        _exit_now(128 + _SIGNALS[0])  # the shell's convention: 128 + the signal's number


_EXITING = threading.Lock()


def _exit_now(code: int) -> None:
    """Leave as soon as the runs are ended. Ctrl-C in a terminal reaches Prefect's temporary local
    server too (same process group); Prefect's exit hooks would then retry sending the last log
    lines to the stopped server for minutes. Stop that server if it still runs, then exit."""
    from prefect.server.api.server import SubprocessASGIServer

    SubprocessASGIServer().stop()  # the temporary server, if this process started one
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _config(params: Path, overrides: list[str] | None):
    from tasks.core.config import ConfigError, load_config

    try:
        return load_config(params, overrides or [])
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _grid(cfg) -> str:
    """'19 networks', and whether seeds may be added (sweep.seeds: {until_separated: true})."""
    text = f"{len(cfg.grid)} networks"
    if cfg.sweep.until_separated:
        text += (
            f", then one more seed at a time where the best and the runner-up tie "
            f"(up to {cfg.sweep.max_seeds} seeds)"
        )
    return text


@app.command()
def run(params: Path = PARAMS, overrides: list[str] | None = SET) -> None:
    """Run the comparison: download, preprocess, train every grid cell, evaluate, report."""
    cfg = _config(params, overrides)
    from flows.compare import run_comparison
    from tasks.commands.runner import describe_runner, runner_warnings
    from tasks.core.uris import resolve_tracking_uri
    from tasks.data import DataError

    typer.echo(f"grid: {_grid(cfg)}; data: {cfg.data.source}", err=True)
    typer.echo(f"runner: {describe_runner(cfg.runner)}", err=True)
    for warning in runner_warnings(cfg.runner, resolve_tracking_uri(cfg.tracking.uri)):
        typer.echo(f"warning: {warning}", err=True)
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    try:
        report = run_comparison(cfg)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except BaseException:
        if not _SIGNALS:
            raise
        # Whatever surfaced (the interrupt, or Prefect failing to report it to a server that got
        # the same Ctrl-C), the cause is the signal.
        _report_interrupt_and_exit()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    typer.echo(f"report: {Path(report) / 'report.md'}")


@app.command()
def report(
    run_id: str = typer.Argument(..., help="The parent MLflow run of a past `actlab run`."),
    params: Path = PARAMS,
    overrides: list[str] | None = SET,
    baseline: str | None = typer.Option(
        None, help="Compare with this activation instead of the recorded sweep.baseline."
    ),
) -> None:
    """Rebuild the report of a past run from MLflow alone (no training): the same files."""
    cfg = _config(params, overrides)
    from tasks.core.uris import redact_uri, resolve_tracking_uri
    from tasks.report.publish import rebuild_report
    from tasks.tracking.records import RecordError

    uri = resolve_tracking_uri(cfg.tracking.uri)
    typer.echo(f"reading run {run_id} from {redact_uri(uri)}", err=True)
    try:
        folder = rebuild_report(uri, run_id, cfg.report.dir, baseline)
    except (RecordError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"report: {folder / 'report.md'}")


@app.command()
def ui(
    params: Path = PARAMS,
    overrides: list[str] | None = SET,
    host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps it local."),
    port: int = typer.Option(5000, help="Port of the MLflow UI."),
) -> None:
    """Browse the runs in the MLflow UI (this project's store, bound to 127.0.0.1)."""
    cfg = _config(params, overrides)
    from tasks.core.uris import artifact_location, redact_uri, resolve_tracking_uri

    uri = resolve_tracking_uri(cfg.tracking.uri)
    if not uri.startswith("sqlite:"):
        typer.echo(f"runs are on a tracking server: open {redact_uri(uri)} in a browser", err=True)
        raise typer.Exit(0)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", host, "--port", str(port)]
    location = artifact_location(uri)
    if location:
        cmd += ["--default-artifact-root", location]
    typer.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    _echo_latest_run(uri, cfg.tracking.experiment, f"http://{host}:{port}")
    os.execv(sys.executable, cmd)


def _echo_latest_run(uri: str, experiment: str, base_url: str) -> None:
    from tasks.commands.browse import latest_parent_url
    from tasks.tracking.listing import reader_for

    url = latest_parent_url(reader_for(uri), experiment, base_url)
    typer.echo(f"latest run: {url}" if url else f"no runs yet in experiment {experiment!r}")


@app.command()
def runs(
    params: Path = PARAMS,
    overrides: list[str] | None = SET,
    limit: int = typer.Option(10, "-n", "--limit", help="How many recent runs to list."),
) -> None:
    """List the recent experiments (parent runs): id, start, grid size, best activation, status."""
    cfg = _config(params, overrides)
    from tasks.commands.browse import runs_table
    from tasks.core.uris import resolve_tracking_uri
    from tasks.tracking.listing import reader_for

    uri = resolve_tracking_uri(cfg.tracking.uri)
    table = runs_table(reader_for(uri), cfg.tracking.experiment, limit)
    if table.empty:
        typer.echo(f"no runs yet in experiment {cfg.tracking.experiment!r}", err=True)
        return
    typer.echo(table.to_markdown(index=False))


@app.command()
def serve(
    cron: str = typer.Option(..., help="When to run, as a cron line, e.g. '0 3 * * *'."),
    params: Path = PARAMS,
    overrides: list[str] | None = SET,
    name: str = typer.Option(  # "scheduled": the name prefect.yaml gives the same deployment
        "scheduled", help="Deployment name: compare-activations/NAME."
    ),
    timezone: str = typer.Option(None, help="Time zone of the cron line, e.g. Europe/Madrid."),
) -> None:
    """Serve the flow on a schedule (Prefect), one run at a time; Ctrl-C stops serving."""
    cfg = _config(params, overrides)
    from tasks.commands.schedule import check_cron, deployment_parameters
    from tasks.core.config import ConfigError

    try:
        schedule = check_cron(cron, timezone)
        parameters = deployment_parameters(cfg)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    from flows.compare import compare_activations

    typer.echo(f"grid: {_grid(cfg)}; data: {cfg.data.source}", err=True)
    if cfg.runner.kind != "threads":
        typer.echo(
            f"warning: runner.kind = {cfg.runner.kind!r} applies to actlab run and reproduce; "
            "served runs train one network at a time in a thread",
            err=True,
        )
    compare_activations.serve(name=name, schedule=schedule, parameters=parameters, limit=1)


@app.command()
def reproduce(
    run_id: str = typer.Argument(..., help="A parent or child MLflow run id."),
    params: Path = PARAMS,
    tracking_uri: str = typer.Option(
        None, help="Where the run is; default: tracking.uri of the params file, else MLflow's."
    ),
) -> None:
    """Re-run a recorded experiment as a new parent run and check it gives the same costs."""
    from flows.compare import run_comparison
    from tasks.commands.reproduce import ReproduceError, check_reproduction, plan_reproduction
    from tasks.core.config import ConfigError, TrackingConfig, load_config
    from tasks.core.uris import resolve_tracking_uri
    from tasks.data import DataError

    tracking = TrackingConfig()  # only the store comes from params: the run brings its config
    if tracking_uri is None and params.is_file():
        try:
            tracking = load_config(params).tracking
        except ConfigError as exc:
            typer.echo(f"warning: {params} unusable ({exc}); using the default store", err=True)
    uri = tracking_uri or resolve_tracking_uri(tracking.uri)
    try:
        plan = plan_reproduction(run_id, uri)
    except ReproduceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    original = plan.parent.info.run_id
    typer.echo(f"reproducing parent run {original} (config from {plan.config_source})", err=True)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    try:
        report = run_comparison(plan.config)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    verdict = check_reproduction(plan, Path(report).name)  # reports/<parent run id>
    for warning in verdict.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"new run: {Path(report).name}")
    typer.echo(verdict.message)
    raise typer.Exit(0 if verdict.reproduced else 1)


if __name__ == "__main__":
    app()
