"""Prefect's temporary server dies with the command that started it.

Without `PREFECT_API_URL`, a flow run starts Prefect's temporary local server: a uvicorn child
process. Prefect stops it when the command exits, and the CLI when it is interrupted; but
`kill -9`, the out-of-memory killer or a CI hard time limit give the command no way out, and the
server would go on as an orphan for good. So `actlab run` starts that server itself, then a
watchdog beside it: a small process that checks every half second whether the command still runs,
and stops the server once it is gone. (If the watchdog is killed too, the next command finds the
server from the parent run's `process.prefect_server_pid` tag: `tasks.tracking.reconcile`.)

Run as `python -m tasks.commands.temporary_server OWNER_PID OWNER_START SERVER_PID SERVER_START`
by `guard_temporary_server`, never by hand.
"""

import signal
import subprocess
import sys
import time

import psutil

from tasks.tracking.reconcile import alive, stop_prefect_server

POLL_SECONDS = 0.5  # how soon after the command dies its server is stopped


def guard_temporary_server() -> int | None:
    """With no Prefect server configured, start the temporary one now and a watchdog that stops
    it when this process dies; the server's pid, or None when a server is configured."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return None  # a server someone runs: not ours to stop
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one Prefect's client uses: started once per process
    server.start()
    pid = server.server_process.pid
    owner = psutil.Process()
    args = [str(owner.pid), repr(owner.create_time()), str(pid)]
    args.append(repr(psutil.Process(pid).create_time()))
    subprocess.Popen(  # our own interpreter and module, no shell
        [sys.executable, "-m", __name__, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    return pid


def watch(owner_pid: int, owner_start: float, server_pid: int, server_start: float) -> None:
    """Until the server stops: once the owner is gone, stop the server."""
    while alive(server_pid, server_start):
        if not alive(owner_pid, owner_start):
            stop_prefect_server(server_pid, server_start)
            return
        time.sleep(POLL_SECONDS)


if __name__ == "__main__":
    # A terminal's Ctrl-C reaches the whole process group: the command handles it and stops its
    # server; the watchdog stays to see the command go.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    owner, owner_t, srv, srv_t = sys.argv[1:5]
    watch(int(owner), float(owner_t), int(srv), float(srv_t))
