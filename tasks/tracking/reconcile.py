"""Runs left RUNNING by a process that died without warning, found and closed by the next command.

Ctrl-C and SIGTERM end a flow run's MLflow runs as KILLED on the way out (`tasks.tracking.runs`).
`kill -9`, the out-of-memory killer, a power cut or a CI hard time limit give the process no way
out: its parent run and the child run it was training stay RUNNING for good, and Prefect's
temporary server, a child process of its own, goes on as an orphan.

So each parent run records the process that logs it (`process_tags`): `process.host`,
`process.pid`, `process.start_time` (the pid alone could be reused), `process.cwd`, and, when the
run uses Prefect's temporary server, `process.prefect_server_pid` and its start time. Every
command that opens the store (`actlab run`, `runs`, `report`, `ui`) first calls
`reconcile_killed_runs`: a RUNNING parent run whose process, on this host, is gone is marked
FAILED with a `status_reason` saying so, and so are its children still RUNNING; its temporary
Prefect server, if still alive, is stopped, and its scratch weights folder removed. A run logged
from another host is left alone: whether its process lives cannot be told from here.

Cheap when there is nothing to do: a SQLite store is read directly (no MLflow import); MLflow is
imported only to write the runs it must close.
"""

import os
import shutil
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

from tasks.core.paths import run_weights_dir
from tasks.tracking.listing import PARENT_TAG, reader_for

HOST, PID, START, CWD = "process.host", "process.pid", "process.start_time", "process.cwd"
SERVER_PID, SERVER_START = "process.prefect_server_pid", "process.prefect_server_start_time"
GONE = "process.gone"  # set on a parent run found dead: when it was found
# Tags of parent runs logged before the process record existed: the pid without a start time.
OLD_HOST, OLD_PID = "flow.host", "flow.pid"
START_TOLERANCE_SECONDS = 1.0  # two readings of one process's start time differ by clock ticks
SERVER_COMMAND = "prefect.server.api.server"  # in the command line of Prefect's temporary server
STOP_GRACE_SECONDS = 5.0  # SIGTERM, then SIGKILL after this long


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _parse_iso(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def process_tags() -> dict[str, str]:
    """Who logs this parent run: host, pid, start time and folder of this process, and the Prefect
    temporary server it started, if any."""
    me = psutil.Process()
    tags = {
        HOST: socket.gethostname(),
        PID: str(me.pid),
        START: _iso(me.create_time()),
        CWD: os.getcwd(),
    }
    server = temporary_prefect_server()
    if server is not None:
        tags[SERVER_PID] = str(server.pid)
        tags[SERVER_START] = _iso(server.create_time())
    return tags


_TEMPORARY_SERVER: int | None = None  # pid of the temporary Prefect server this process runs


def register_temporary_server(pid: int | None) -> None:
    """Record (None: forget) the temporary Prefect server this process started
    (tasks.commands.temporary_server), for the parent runs' process tags."""
    global _TEMPORARY_SERVER
    _TEMPORARY_SERVER = pid


def temporary_prefect_server() -> psutil.Process | None:
    """The Prefect temporary server this process started, if one runs."""
    if _TEMPORARY_SERVER is None:
        return None
    try:
        process = psutil.Process(_TEMPORARY_SERVER)
        if process.ppid() != os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None


def alive(pid: int, start_time: float | None) -> bool:
    """Whether process `pid` runs, and is the one that started at `start_time` (None: any)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # dead, not yet reaped by its parent
            return False
        if start_time is None:
            return True
        return abs(process.create_time() - start_time) <= START_TOLERANCE_SECONDS
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process with that pid: it exists
        return True


def process_gone(tags: dict[str, str]) -> bool:
    """The run's process ran on this host and is gone. False when that cannot be told: no process
    record, or another host."""
    host = tags.get(HOST, tags.get(OLD_HOST))
    pid = tags.get(PID, tags.get(OLD_PID))
    if host != socket.gethostname() or not pid or not pid.isdigit():
        return False
    return not alive(int(pid), _parse_iso(tags.get(START)))


def gone_note(tags: dict[str, str]) -> str:
    """A few words for a listing of a parent run found dead, else ""."""
    if GONE not in tags:
        return ""
    return f"killed without warning (pid {tags.get(PID, tags.get(OLD_PID))} gone)"


def _describe(tags: dict[str, str]) -> str:
    pid = tags.get(PID, tags.get(OLD_PID))
    host = tags.get(HOST, tags.get(OLD_HOST))
    started = f", started {tags[START]}" if START in tags else ""
    return f"pid {pid} on {host}{started}"


def reconcile_killed_runs(tracking_uri: str, command: str) -> list[str]:
    """Mark FAILED every RUNNING parent run whose process is gone, and its children still
    RUNNING; stop its orphaned Prefect server; remove its scratch weights. Returns one line per
    parent run closed, for the command to show."""
    running = reader_for(tracking_uri).running_parents()
    dead = [run for run in running if process_gone(run.data.tags)]
    if not dead:
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    when = _iso(time.time())
    notes = []
    for run in dead:
        tags, run_id = run.data.tags, run.info.run_id
        why = (
            f"killed without warning (kill -9, out of memory, a power cut or a time limit); "
            f"marked FAILED by `actlab {command}` at {when}"
        )
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{run_id}' and attributes.status = 'RUNNING'",
        )
        for child in children:
            child_reason = f"the flow run's process ({_describe(tags)}) is gone: {why}"
            client.set_tag(child.info.run_id, "status_reason", child_reason)
            client.set_terminated(child.info.run_id, "FAILED")
        client.set_tag(run_id, "status_reason", f"its process ({_describe(tags)}) is gone: {why}")
        client.set_tag(run_id, GONE, when)
        client.set_terminated(run_id, "FAILED")
        stopped = _stop_orphan_server(tags)
        _remove_scratch_weights(tags, run.data.params, run_id)
        note = f"run {run_id} marked FAILED: its process ({_describe(tags)}) is gone"
        if children:
            note += f"; {len(children)} open child run(s) too"
        if stopped:
            note += f"; stopped its orphaned Prefect server (pid {stopped})"
        notes.append(note)
    return notes


def _stop_orphan_server(tags: dict[str, str]) -> int | None:
    """Stop the dead run's Prefect temporary server if it still runs; its pid, else None."""
    pid = tags.get(SERVER_PID, "")
    start = _parse_iso(tags.get(SERVER_START))
    if not pid.isdigit() or start is None:
        return None
    return int(pid) if stop_prefect_server(int(pid), start) else None


def stop_prefect_server(pid: int, start_time: float) -> bool:
    """Stop process `pid` if it is the Prefect temporary server that started at `start_time`
    (SIGTERM, then SIGKILL); whether it was stopped."""
    if not alive(pid, start_time):
        return False
    try:
        server = psutil.Process(pid)
        if SERVER_COMMAND not in " ".join(server.cmdline()):
            return False  # the pid and start time match, the command does not: leave it be
        server.terminate()
        try:
            server.wait(timeout=STOP_GRACE_SECONDS)
        except psutil.TimeoutExpired:
            server.kill()
            server.wait(timeout=STOP_GRACE_SECONDS)
    except psutil.NoSuchProcess:
        return True  # it went by itself meanwhile
    except (psutil.AccessDenied, psutil.TimeoutExpired):
        return False
    return True


def _remove_scratch_weights(tags: dict[str, str], params: dict[str, str], run_id: str) -> None:
    """The weights folder of the dead flow run (it would have removed it itself on the way out)."""
    data_dir = params.get("data.dir")
    if not data_dir:
        return
    folder = Path(data_dir)
    if not folder.is_absolute():
        if CWD not in tags:
            return
        folder = Path(tags[CWD]) / folder
    shutil.rmtree(run_weights_dir(folder, run_id), ignore_errors=True)
