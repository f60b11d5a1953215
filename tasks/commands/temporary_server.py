"""Prefect's temporary server: started as soon as a command knows it will run a flow, and
stopped when that command ends or dies.

Without `PREFECT_API_URL`, a flow run needs a Prefect server all the same, and Prefect would
start a temporary one (its `SubprocessASGIServer`) when the flow's client first needs it: a
uvicorn child process that takes seconds to answer, started from the Prefect server module that
the command would first have to import (about 1.3 s in the main thread). This module starts that
server itself instead, at once, in its own process (`tasks.commands.prefect_server`):

- the socket is bound here, on 127.0.0.1 and a port the system picks, and handed to the server
  process: the URL is known at once, and no other program can take the port meanwhile;
- this process's Prefect settings then name that URL (`PREFECT_API_URL` in its environment, and
  Prefect's process-wide settings refreshed), so that the flow's client, its log and event
  workers, and any worker process started later (a local Dask cluster) use this very server and
  start none of their own;
- the server boots in its own process, on the other core, while TensorFlow and the flow's
  modules import here; `wait_for_temporary_server`, just before the flow, waits until it
  answers `/api/health`.

It is the server Prefect would start, `prefect.server.api.server:create_app` served by uvicorn
with the settings Prefect gives its temporary server (no UI, ephemeral), from the same
environment and folder: Prefect's settings files and variables reach it as they reach this
process.

It is stopped when the command exits (an exit handler, run after Prefect's own have sent the
last log lines) and when it is interrupted (the CLI); but `kill -9`, the out-of-memory killer or
a CI hard time limit give the command no way out, and the server would go on as an orphan for
good. So a watchdog is started first, before the server: a small process that checks every half
second whether the command still runs and, once it is gone, stops every Prefect server process
that carries the command's mark (an environment variable naming the command's pid and start
time, which the server inherits). (If the watchdog is killed too, the next command finds the
server from the parent run's `process.prefect_server_pid` tag: `tasks.tracking.reconcile`.)

The watchdog is run as `python -m tasks.commands.temporary_server OWNER_PID OWNER_START` by
`start_temporary_server`, never by hand.
"""

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil

from tasks.tracking.reconcile import (
    SERVER_COMMAND,
    STOP_GRACE_SECONDS,
    alive,
    register_temporary_server,
    stop_prefect_server,
)

POLL_SECONDS = 0.5  # how soon after the command dies its server is stopped
OWNER_ENV = "ACTLAB_PREFECT_SERVER_OWNER"  # the mark: "<pid>:<start time>" of the command
APP = f"{SERVER_COMMAND}:create_app"  # what uvicorn serves, as Prefect's temporary server does
# The settings Prefect gives its own temporary server (SubprocessASGIServer): no UI, ephemeral.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
}
API_URL_ENV = "PREFECT_API_URL"
HEALTH_POLL_SECONDS = 0.05


class ServerError(RuntimeError):
    """The temporary server exited, or did not answer in time."""


class _Server:
    """The temporary server this process started."""

    def __init__(self, process: subprocess.Popen, url: str, previous_url: str | None):
        self.process = process
        self.url = url  # http://127.0.0.1:PORT/api
        self.previous_url = previous_url  # this process's PREFECT_API_URL before (normally none)
        self.answered = False


_LOCK = threading.Lock()
_SERVER: _Server | None = None
_WATCHED = False  # this process's watchdog runs
_EXIT_HANDLER = False  # stop_temporary_server is registered to run at exit


def owner_mark(pid: int, start_time: float) -> str:
    """The mark of the command `pid` (started at `start_time`) that its servers inherit."""
    return f"{pid}:{start_time!r}"


def _refresh_prefect_settings() -> None:
    """Prefect's process-wide settings read anew from the environment (every thread without
    settings of its own, and every client made from now on, sees the change)."""
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


def start_temporary_server() -> bool:
    """With no Prefect server configured, start the watchdog, then the temporary server, point
    this process's Prefect settings at it, and return at once (it boots meanwhile): whether a
    temporary server is starting (or runs). Calling it again while that server runs does
    nothing."""
    global _SERVER, _EXIT_HANDLER
    with _LOCK:
        if _SERVER is not None and _SERVER.process.poll() is None:
            return True
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():
            return False  # a server someone runs: not ours to start or stop
        _watch_this_process()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(socket.SOMAXCONN)
            port = listener.getsockname()[1]
            process = subprocess.Popen(  # our own interpreter and module, no shell
                [
                    sys.executable,
                    "-m",
                    "tasks.commands.prefect_server",
                    APP,
                    str(listener.fileno()),
                ],
                env={**os.environ, **SERVER_ENV},
                pass_fds=(listener.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            listener.close()  # the server holds its own copy
        url = f"http://127.0.0.1:{port}/api"
        _SERVER = _Server(process, url, os.environ.get(API_URL_ENV))
        os.environ[API_URL_ENV] = url
        _refresh_prefect_settings()
        register_temporary_server(process.pid)
        if not _EXIT_HANDLER:
            atexit.register(stop_temporary_server)  # runs after Prefect's (registered later)
            _EXIT_HANDLER = True
    return True


def wait_for_temporary_server(timeout: float | None = None) -> int | None:
    """The temporary server's pid once it answers (started now if nothing started it), or None
    when a server is configured. Raises ServerError, naming what happened, if the server exits
    or does not answer within `timeout` seconds (default: Prefect's
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); it is then stopped, and a later call
    starts a new one."""
    if not start_temporary_server():
        return None
    server = _SERVER
    if server.answered:
        return server.process.pid
    import httpx
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    limit = (
        timeout if timeout is not None else PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    )
    deadline = time.monotonic() + limit
    with httpx.Client() as client:
        while True:
            code = server.process.poll()
            if code is not None:
                stop_temporary_server()
                raise ServerError(
                    f"Prefect's temporary server (pid {server.process.pid}) exited with code "
                    f"{code} before it answered at {server.url}; its errors are printed above"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                stop_temporary_server()
                raise ServerError(
                    f"Prefect's temporary server did not answer at {server.url} within {limit:g} s "
                    "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); on a slow or busy machine "
                    "raise it, or point PREFECT_API_URL at a server you run"
                )
            try:
                # The socket listens from the start: a request waits until the server serves it.
                response = client.get(f"{server.url}/health", timeout=min(1.0, left))
                if response.status_code == 200:
                    server.answered = True
                    return server.process.pid
            except httpx.TransportError:
                pass
            time.sleep(min(HEALTH_POLL_SECONDS, max(left, 0)))


def temporary_server_url() -> str | None:
    """The URL of the temporary server this process started, while it runs."""
    server = _SERVER
    return server.url if server is not None and server.process.poll() is None else None


def stop_temporary_server() -> None:
    """Stop the temporary server this process started, if any (SIGTERM, then SIGKILL), and give
    this process's Prefect settings back the server they named before (normally none)."""
    global _SERVER
    with _LOCK:
        server, _SERVER = _SERVER, None
        if server is None:
            return
        if server.process.poll() is None:
            server.process.terminate()
            try:
                server.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        register_temporary_server(None)
        if os.environ.get(API_URL_ENV) == server.url:
            if server.previous_url is None:
                os.environ.pop(API_URL_ENV, None)
            else:
                os.environ[API_URL_ENV] = server.previous_url
            if "prefect.context" in sys.modules:
                _refresh_prefect_settings()


def _watch_this_process() -> None:
    """Mark this process's environment (its servers inherit it) and start its watchdog, once."""
    global _WATCHED
    if _WATCHED:
        return
    owner = psutil.Process()
    os.environ[OWNER_ENV] = owner_mark(owner.pid, owner.create_time())
    subprocess.Popen(  # our own interpreter and module, no shell
        [sys.executable, "-m", __name__, str(owner.pid), repr(owner.create_time())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    _WATCHED = True


def marked_servers(mark: str) -> list[psutil.Process]:
    """The Prefect server processes on this machine that carry `mark`."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if SERVER_COMMAND not in " ".join(process.info["cmdline"] or ()):
                continue
            if process.environ().get(OWNER_ENV) == mark:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def watch(owner_pid: int, owner_start: float, poll: float = POLL_SECONDS) -> list[int]:
    """Once the owner is gone, stop the Prefect servers carrying its mark; their pids."""
    while alive(owner_pid, owner_start):
        time.sleep(poll)
    stopped = []
    for server in marked_servers(owner_mark(owner_pid, owner_start)):
        try:
            started = server.create_time()
        except psutil.NoSuchProcess:
            continue
        if stop_prefect_server(server.pid, started):
            stopped.append(server.pid)
    return stopped


if __name__ == "__main__":
    # A terminal's Ctrl-C reaches the whole process group: the command handles it and stops its
    # server; the watchdog stays to see the command go.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    owner, owner_t = sys.argv[1:3]
    watch(int(owner), float(owner_t))
