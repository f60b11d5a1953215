"""Prefect's temporary server: started in the background as soon as a command knows it will run
a flow, and stopped when that command dies.

Without `PREFECT_API_URL`, a flow run talks to Prefect's temporary local server: a uvicorn child
process that takes seconds to answer. `start_temporary_server` starts it as soon as the command
has checked what it will run, in a background thread, so that the server boots (in its own
process, on another core) while TensorFlow and the flow's modules import;
`wait_for_temporary_server`, just before the flow, waits until it answers. The flow's client
then uses that very server: Prefect keeps one `SubprocessASGIServer` per process (`get_client`
and the event and log clients all call `SubprocessASGIServer().start()`, which does nothing once
it is running).

Prefect stops the server when the command exits, and the CLI when it is interrupted; but
`kill -9`, the out-of-memory killer or a CI hard time limit give the command no way out, and the
server would go on as an orphan for good. So a watchdog is started first, before the server: a
small process that checks every half second whether the command still runs and, once it is gone,
stops every Prefect server process that carries the command's mark (an environment variable
naming the command's pid and start time, which the server inherits). A mark rather than a pid:
it also finds a server started an instant before the command died, or restarted by Prefect on
another port. (If the watchdog is killed too, the next command finds the server from the parent
run's `process.prefect_server_pid` tag: `tasks.tracking.reconcile`.)

The watchdog is run as `python -m tasks.commands.temporary_server OWNER_PID OWNER_START` by
`start_temporary_server`, never by hand.
"""

import contextvars
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from tasks.tracking.reconcile import SERVER_COMMAND, alive, stop_prefect_server

POLL_SECONDS = 0.5  # how soon after the command dies its server is stopped
OWNER_ENV = "ACTLAB_PREFECT_SERVER_OWNER"  # the mark: "<pid>:<start time>" of the command
SPAWN_SECONDS = 10.0  # the most the command waits for the server's process to exist (not answer)
_SERVER_MODULE = "prefect.server.api.server"


class _Start:
    """One start of the temporary server, running in a thread: its error, if it failed."""

    def __init__(self, server):
        self.server = server  # prefect's SubprocessASGIServer: one per process
        self.error: BaseException | None = None
        run = contextvars.copy_context().run  # the caller's Prefect settings, in the thread
        self.thread = threading.Thread(
            target=run, args=(self._run,), name="prefect-temporary-server", daemon=True
        )

    def _run(self) -> None:
        try:
            self.server.start()  # returns once the server answers /api/health
        except BaseException as exc:  # handed to the command by wait_for_temporary_server
            self.error = exc

    def spawned(self) -> bool:
        return self.server.server_process is not None or not self.thread.is_alive()

    def current(self) -> bool:
        """Starting, running, or failed and not yet told: what the next wait is about."""
        return self.thread.is_alive() or self.server.running or self.error is not None


_LOCK = threading.Lock()
_START: _Start | None = None
_WATCHED = False  # this process's watchdog runs


def owner_mark(pid: int, start_time: float) -> str:
    """The mark of the command `pid` (started at `start_time`) that its servers inherit."""
    return f"{pid}:{start_time!r}"


def start_temporary_server() -> bool:
    """With no Prefect server configured, start the watchdog, then Prefect's temporary server in
    a background thread, and return at once: whether a temporary server is starting (or runs).
    Calling it again while that server runs does nothing."""
    global _START
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return False  # a server someone runs: not ours to start or stop
    with _LOCK:
        if _START is not None and _START.current():
            return True
        # Imported here, in the calling thread: an import racing TensorFlow's in another thread
        # could see half-initialised modules of the libraries both use.
        from prefect.server.api.server import SubprocessASGIServer

        _watch_this_process()
        _START = _Start(SubprocessASGIServer())
        _START.thread.start()
        # Until its process exists (milliseconds): it then inherits this process's stderr, and
        # not the /dev/null the CLI points it to while TensorFlow loads.
        deadline = time.monotonic() + SPAWN_SECONDS
        while not _START.spawned() and time.monotonic() < deadline:
            time.sleep(0.005)
    return True


def wait_for_temporary_server() -> int | None:
    """The temporary server's pid once it answers (started now if nothing started it), or None
    when a server is configured. Raises what starting it raised."""
    if not start_temporary_server():
        return None
    start = _START
    # Prefect's start() marks the server running before it answers, and a client made meanwhile
    # would not wait for it: the flow starts only once this returns.
    start.thread.join()  # bounded by PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
    error, start.error = start.error, None  # told once: a later start in this process tries anew
    if error is not None:
        raise error
    return start.server.server_process.pid


def stop_temporary_server() -> None:
    """Stop the temporary server this process started, if any (an interrupted command's way
    out). Imports nothing: a process that never loaded Prefect's server module started none."""
    module = sys.modules.get(_SERVER_MODULE)
    if module is not None:
        module.SubprocessASGIServer().stop()


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
