"""`actlab`: the command line. Validates the config before anything runs, then hands over to a flow.

actlab run [-p params.yaml] [--set train.epochs=3 --set sweep.activations=[relu,tanh]] [-v]
actlab ui  [-p params.yaml] [--port 5000]
actlab report RUN_ID [-p params.yaml] [--baseline gelu] [-v]
actlab runs [-p params.yaml] [-n 10]
actlab serve --cron "0 3 * * *" [-p params.yaml] [--set ...] [-v]
actlab reproduce RUN_ID [--cells CELL ...] [--tolerance 1e-3] [--tracking-uri URI] [-v]

What a run prints: its own lines only (one per network as it finishes, then the answer and the
report's path); TensorFlow's, absl's, MLflow's and other libraries' notices and warnings, and
Prefect's log lines, only with -v. Prefect's UI keeps its logs either way.
"""

import gc
import logging
import os
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import typer

# The project's runs stay on this machine: no usage reports from Prefect's local server, nor from
# the client (whose first-run notice would open the terminal output).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a traceback never prints the config's values
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
CELLS = typer.Option(
    None,
    "--cells",
    metavar="CELL",
    help="With a parent run id: re-run only these of its networks, each a child run id, run name "
    "or label (mlp/relu/seed=0). Repeatable, or comma-separated.",
)
VERBOSE = typer.Option(
    False,
    "-v",
    "--verbose",
    help="Also show Prefect's log lines, TensorFlow's and other libraries' notices and warnings, "
    "and error messages in full.",
)

# An error message longer than this is cut to its first and last lines (the last says what to
# do) unless -v: a download that failed on every mirror lists each attempt.
ERROR_LINES = 3


def _quiet(verbose: bool, prefect_console: bool = False) -> None:
    """Unless `verbose`, silence what libraries print on their own: TensorFlow's C++ log (the
    CUDA probe's error on a machine without a GPU, oneDNN notices), MLflow's info lines and
    download bars, warnings raised outside this project, and (unless `prefect_console`)
    Prefect's console log. Mostly environment variables, so they hold before each library is
    imported, and in the processes it starts."""
    if verbose:
        return
    # Errors too (the project's default, 2, shows them): TensorFlow logs two bogus ones for each
    # program it loads from the XLA cache (docs/caching.md). `-v` shows them all.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if not prefect_console:  # the console only: run logs still reach Prefect's UI
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    warnings.simplefilter("ignore")
    warnings.filterwarnings("default", module=r"(flows|tasks)(\.|$)")
    # Some libraries force their warnings through the filters (MLflow shows its UserWarnings
    # "once" whatever the filters say): only warnings raised in this project's files are shown.
    warnings.showwarning = _own_warnings_only(warnings.showwarning)


_PROJECT_DIRS = tuple(
    str(Path(__file__).resolve().parents[1] / name) for name in ("flows", "tasks")
)


def _own_warnings_only(show):
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if str(Path(filename).resolve()).startswith(_PROJECT_DIRS):
            show(message, category, filename, lineno, file, line)

    return showwarning


@contextmanager
def _silenced_fd2(verbose: bool):
    """Unless `verbose`, send file descriptor 2 to /dev/null for the block: TensorFlow's C++
    libraries write their load-time lines ("All log messages before absl::InitializeLog() ...",
    oneDNN, cudart) straight to it, before any setting can stop them."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _error(exc: BaseException, verbose: bool) -> None:
    """`error: <message>` once, no traceback; a long message cut to its first and last lines."""
    lines = str(exc).splitlines() or [type(exc).__name__]
    if not verbose and len(lines) > ERROR_LINES:
        hidden = len(lines) - 2
        lines = [lines[0], f"  ({hidden} more lines: add -v to see them)", lines[-1]]
    typer.echo("error: " + "\n".join(lines), err=True)


_DISPLAY = None  # the terminal display of the flow running now, stopped before any exit


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
    from tasks.commands.temporary_server import stop_temporary_server

    if _DISPLAY is not None:
        _DISPLAY.stop()  # the live line goes and the cursor comes back

    stop_temporary_server()  # the temporary server, if this process started one
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _reconcile(uri: str, command: str) -> None:
    """Runs left RUNNING by a process killed without warning are marked FAILED first."""
    from tasks.tracking.reconcile import reconcile_killed_runs

    for note in reconcile_killed_runs(uri, command):
        typer.echo(f"note: {note}", err=True)


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


def _display(verbose: bool):
    """The terminal's view of a run: none with -v (Prefect's log lines say it all), else live on
    a TTY, plain lines in a log. On a TTY it writes to its own copy of the terminal's descriptor,
    so it keeps showing while _silenced_fd2 mutes descriptor 2."""
    from tasks.commands.progress import TerminalDisplay

    if verbose:
        return None
    live = sys.stderr.isatty()
    stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1) if live else sys.stderr
    return TerminalDisplay(stream, live=live).start()


def _run_flow(cfg, verbose: bool, cells: list[str] | None = None, data_error_exit: int = 1):
    """Run the comparison (on `cells` only, if given) with the terminal display; a data error or
    a full disk is printed once, and the command exits with `data_error_exit`.

    Prefect's temporary server (none when PREFECT_API_URL names a server) starts first, in the
    background: it boots in its own process while TensorFlow and the flow's modules import, and
    is waited for just before the flow (tasks.commands.temporary_server)."""
    global _DISPLAY
    from tasks.commands.progress import listening
    from tasks.commands.temporary_server import start_temporary_server, wait_for_temporary_server
    from tasks.core.files import NoSpaceError
    from tasks.core.imports import frozen_imports
    from tasks.core.uris import resolve_tracking_uri

    _DISPLAY = _display(verbose)
    try:
        with frozen_imports():  # tasks.core.imports: no collection walks them
            if _DISPLAY is not None:
                _DISPLAY.stage("starting Prefect")
            start_temporary_server()
            with _silenced_fd2(verbose):
                if _DISPLAY is not None:
                    _DISPLAY.stage("loading TensorFlow (Prefect starting alongside)")
                from flows.compare import run_comparison
                from tasks.data import DataError
                from tasks.tracking.runs import open_store_early
        with listening(_DISPLAY) if _DISPLAY is not None else nullcontext():
            try:
                open_store_early(resolve_tracking_uri(cfg.tracking.uri))  # while Prefect sets up
                wait_for_temporary_server()  # answering, and watched
                if _DISPLAY is not None:
                    _DISPLAY.stage("preparing the data")
                return run_comparison(cfg, cells)
            except (DataError, NoSpaceError) as exc:
                if _DISPLAY is not None:
                    _DISPLAY.stop()
                _error(exc, verbose)
                raise typer.Exit(data_error_exit) from None
    finally:
        if _DISPLAY is not None:
            _DISPLAY.stop()
        _DISPLAY = None


def _print_answer(report) -> None:
    """The report's answer, one sentence per model, and where the page to open is."""
    from tasks.commands.progress import write_answer

    write_answer(sys.stdout, report.answer, live=sys.stdout.isatty())
    typer.echo(f"report: {report.folder / 'report.html'}")


@app.command()
def run(params: Path = PARAMS, overrides: list[str] | None = SET, verbose: bool = VERBOSE) -> None:
    """Run the comparison: download, preprocess, train every grid cell, evaluate, report."""
    cfg = _config(params, overrides)
    _quiet(verbose)
    from tasks.commands.runner import describe_runner, runner_warnings
    from tasks.core.uris import resolve_tracking_uri

    typer.echo(f"grid: {_grid(cfg)}; data: {cfg.data.source}", err=True)
    typer.echo(f"runner: {describe_runner(cfg.runner)}", err=True)
    for warning in runner_warnings(cfg.runner, resolve_tracking_uri(cfg.tracking.uri)):
        typer.echo(f"warning: {warning}", err=True)
    _reconcile(resolve_tracking_uri(cfg.tracking.uri), "run")
    previous = {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}
    try:
        report = _run_flow(cfg, verbose)
    except typer.Exit:
        raise
    except BaseException:
        if not _SIGNALS:
            raise
        # Whatever surfaced (the interrupt, or Prefect failing to report it to a server that got
        # the same Ctrl-C), the cause is the signal.
        _report_interrupt_and_exit()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _print_answer(report)


@app.command()
def report(
    run_id: str = typer.Argument(..., help="The parent MLflow run of a past `actlab run`."),
    params: Path = PARAMS,
    overrides: list[str] | None = SET,
    baseline: str | None = typer.Option(
        None, help="Compare with this activation instead of the recorded sweep.baseline."
    ),
    verbose: bool = VERBOSE,
) -> None:
    """Rebuild the report of a past run from MLflow alone (no training): the same files."""
    cfg = _config(params, overrides)
    _quiet(verbose)
    from tasks.core.files import NoSpaceError
    from tasks.core.uris import redact_uri, resolve_tracking_uri
    from tasks.report.publish import rebuild_report
    from tasks.tracking.records import RecordError

    uri = resolve_tracking_uri(cfg.tracking.uri)
    _reconcile(uri, "report")
    typer.echo(f"reading run {run_id} from {redact_uri(uri)}", err=True)
    try:
        report = rebuild_report(uri, run_id, cfg.report.dir, baseline)
    except (RecordError, ValueError, NoSpaceError) as exc:
        _error(exc, verbose)
        raise typer.Exit(1) from None
    _print_answer(report)


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
    _reconcile(uri, "ui")
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
    _reconcile(uri, "runs")
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
    verbose: bool = VERBOSE,
) -> None:
    """Serve the flow on a schedule (Prefect), one run at a time; Ctrl-C stops serving."""
    cfg = _config(params, overrides)
    _quiet(verbose, prefect_console=True)  # serving: Prefect's lines are what it has to say
    from tasks.commands.schedule import check_cron, deployment_parameters
    from tasks.core.config import ConfigError

    try:
        schedule = check_cron(cron, timezone)
        parameters = deployment_parameters(cfg)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    with _silenced_fd2(verbose):
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
    run_id: str = typer.Argument(
        ..., help="A child MLflow run id (that network alone) or a parent's (its whole grid)."
    ),
    params: Path = PARAMS,
    tracking_uri: str = typer.Option(
        None, help="Where the run is; default: tracking.uri of the params file, else MLflow's."
    ),
    cells: list[str] | None = CELLS,
    tolerance: float = typer.Option(
        None,
        min=0.0,
        help="Relative difference per epoch cost still called equivalent (default 0.001).",
    ),
    verbose: bool = VERBOSE,
) -> None:
    """Re-run a recorded network or experiment and compare it with the original.

    Exit code: 0 identical (bit for bit), 3 equivalent (within --tolerance), 1 different,
    2 not reproducible (unknown run, bad --cells, data not available).
    """
    _quiet(verbose)
    from tasks.commands.reproduce import (
        TOLERANCE,
        ReproduceError,
        check_reproduction,
        plan_reproduction,
    )
    from tasks.core.config import ConfigError, TrackingConfig, load_config
    from tasks.core.uris import resolve_tracking_uri

    tracking = TrackingConfig()  # only the store comes from params: the run brings its config
    if tracking_uri is None and params.is_file():
        try:
            tracking = load_config(params).tracking
        except ConfigError as exc:
            typer.echo(f"warning: {params} unusable ({exc}); using the default store", err=True)
    uri = tracking_uri or resolve_tracking_uri(tracking.uri)
    wanted = [c.strip() for item in cells or [] for c in item.split(",") if c.strip()] or None
    try:
        plan = plan_reproduction(run_id, uri, wanted)
    except ReproduceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"reproducing {plan.scope} (config from {plan.config_source})", err=True)
    if plan.environment:
        typer.echo("environment differs from the recorded run:", err=True)
        for line in plan.environment:
            typer.echo(f"  {line}", err=True)
    else:
        typer.echo("environment: as recorded (versions, CPU, BLAS, oneDNN/XLA settings)", err=True)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    started = time.monotonic()
    report = _run_flow(plan.config, verbose, plan.cells, data_error_exit=2)
    seconds = time.monotonic() - started
    new_id = Path(report).name  # reports/<parent run id>
    verdict = check_reproduction(plan, new_id, TOLERANCE if tolerance is None else tolerance)
    for warning in verdict.warnings:
        typer.echo(f"warning: {warning}", err=True)
    trained = len(plan.originals)
    typer.echo(f"new run: {new_id} ({trained} network{'s' * (trained != 1)} in {seconds:.1f} s)")
    typer.echo(verdict.message)
    for line in verdict.details:
        typer.echo(f"  {line}")
    raise typer.Exit(verdict.exit_code)


def main() -> None:
    """The `actlab` command (pyproject's entry point): `app`, then a quick way out.

    Once a command has returned, everything is written; yet Python's last garbage collection at
    exit walks every object the command made and imported (TensorFlow, MLflow, Prefect: some
    700,000), ~2.5 s on 2 cores between the report's line and the prompt. Frozen (gc.freeze),
    they are left to the operating system: exit handlers and module teardown run as at any exit
    (logging flushed, Prefect's temporary server stopped), only that last walk is skipped."""
    try:
        app()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
