"""tasks/commands/temporary_server.py: Prefect's temporary server starts in the background, the
flow waits for that very server, and it does not outlive the command that started it. (The real
`kill -9` of `actlab run` mid-training: tests/flows/test_interrupt.py.)"""

import contextvars
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from tasks.commands import temporary_server
from tasks.tracking.reconcile import SERVER_COMMAND, alive

ROOT = Path(__file__).resolve().parents[3]
FAKE_SERVER = [sys.executable, "-c", "import time; time.sleep(120)", SERVER_COMMAND]


def _sleeper(command: list[str] = FAKE_SERVER[:3], mark: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != temporary_server.OWNER_ENV}
    if mark is not None:
        env[temporary_server.OWNER_ENV] = mark
    return subprocess.Popen(command, env=env)


def _end(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_the_watchdog_stops_the_servers_carrying_its_owners_mark_once_the_owner_is_gone():
    owner = _sleeper()
    start = psutil.Process(owner.pid).create_time()
    mark = temporary_server.owner_mark(owner.pid, start)
    server = _sleeper(FAKE_SERVER, mark)  # what Prefect starts: it inherits the owner's mark
    other = _sleeper(FAKE_SERVER, temporary_server.owner_mark(os.getpid(), 0.0))  # another's
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "tasks.commands.temporary_server", str(owner.pid), repr(start)],
        cwd=ROOT,
    )
    try:
        time.sleep(1.5)  # three rounds of the watchdog with its owner alive
        assert server.poll() is None and watchdog.poll() is None
        owner.kill()  # what kill -9 does: no way out for the owner
        owner.wait(timeout=10)
        assert server.wait(timeout=20) is not None  # stopped, not left running
        assert watchdog.wait(timeout=20) == 0  # and the watchdog leaves
        assert other.poll() is None  # another command's server is not its business
    finally:
        _end(owner, server, other, watchdog)


FAKE_APP = "tests.tasks.commands.fake_prefect_app:create_app"


@pytest.fixture
def fake_prefect(monkeypatch, tmp_path):
    """No Prefect server configured, a stand-in app served by the real server process, no
    watchdog, Prefect's process-wide settings left alone (the session's test server stays
    configured for other tests): what is left is the module's own logic (the real Prefect server
    and watchdog: the slow tests below). Yields the file that lets the stand-in answer."""
    from tests.tasks.commands import fake_prefect_app

    monkeypatch.setattr(temporary_server, "_SERVER", None)
    monkeypatch.setattr(temporary_server, "APP", FAKE_APP)
    monkeypatch.setattr(temporary_server, "_watch_this_process", lambda: None)
    monkeypatch.setattr(temporary_server, "_refresh_prefect_settings", lambda: None)
    monkeypatch.delenv(temporary_server.API_URL_ENV, raising=False)
    gate = tmp_path / "boot"
    monkeypatch.setenv(fake_prefect_app.GATE_ENV, str(gate))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    with temporary_settings(updates={PREFECT_API_URL: None}):
        yield gate
    gate.touch()
    temporary_server.stop_temporary_server()


def test_the_server_starts_at_once_and_the_flow_waits_until_it_answers(fake_prefect):
    import httpx

    assert temporary_server.start_temporary_server() is True  # returns while it boots
    url = temporary_server.temporary_server_url()
    assert url is not None and url.startswith("http://127.0.0.1:")
    assert os.environ[temporary_server.API_URL_ENV] == url  # every client of this process uses it
    process = temporary_server._SERVER.process
    assert temporary_server.start_temporary_server() is True  # a second call starts nothing
    assert temporary_server._SERVER.process is process
    waited = []
    # in this test's Prefect settings (none configured), not the session's test server's
    waiter = threading.Thread(
        target=contextvars.copy_context().run,
        args=(lambda: waited.append(temporary_server.wait_for_temporary_server()),),
    )
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and not waited  # the flow does not start before the server answers
    fake_prefect.touch()  # the server finishes booting
    waiter.join(timeout=60)
    assert waited == [process.pid]
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # the port it was given

    temporary_server.stop_temporary_server()
    assert process.poll() is not None  # stopped
    assert temporary_server.API_URL_ENV not in os.environ  # and this process names none again
    assert temporary_server.temporary_server_url() is None


def test_a_server_that_exits_fails_the_wait_and_a_later_start_begins_afresh(
    fake_prefect, monkeypatch
):
    from tests.tasks.commands import fake_prefect_app

    monkeypatch.setenv(fake_prefect_app.FAIL_ENV, "1")
    temporary_server.start_temporary_server()
    with pytest.raises(temporary_server.ServerError, match="exited with code 1 before it answered"):
        temporary_server.wait_for_temporary_server(timeout=60)
    assert temporary_server._SERVER is None
    assert temporary_server.API_URL_ENV not in os.environ

    monkeypatch.delenv(fake_prefect_app.FAIL_ENV)
    fake_prefect.touch()
    pid = temporary_server.wait_for_temporary_server(timeout=60)  # a new server, answering
    assert pid == temporary_server._SERVER.process.pid


def test_a_server_that_does_not_answer_in_time_is_stopped_with_the_setting_to_raise(
    fake_prefect,
):
    temporary_server.start_temporary_server()
    process = temporary_server._SERVER.process
    with pytest.raises(temporary_server.ServerError, match="within 1 s.*STARTUP_TIMEOUT"):
        temporary_server.wait_for_temporary_server(timeout=1)
    assert process.wait(timeout=30) is not None  # not left behind
    assert temporary_server._SERVER is None


def test_a_configured_prefect_server_means_no_temporary_server(monkeypatch):
    monkeypatch.setattr(temporary_server, "_SERVER", None)
    monkeypatch.setattr(temporary_server, "_watch_this_process", _no_call("a watchdog"))
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        assert temporary_server.start_temporary_server() is False
        assert temporary_server.wait_for_temporary_server() is None
    assert temporary_server._SERVER is None


def _no_call(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} was started")

    return fail


def _env_without_prefect_server(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.pop(temporary_server.OWNER_ENV, None)
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # its own server and database
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"  # a busy machine
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PYTHONPATH"] = str(ROOT)
    return env


_SAME_SERVER = """
import json, psutil
from prefect import flow
from prefect.client.orchestration import get_client
from tasks.commands.temporary_server import (
    start_temporary_server, temporary_server_url, wait_for_temporary_server,
)

start_temporary_server()
pid = wait_for_temporary_server()

@flow
def tiny():
    return 1

tiny()
with get_client(sync_client=True) as client:
    url = str(client.api_url)
servers = [p.pid for p in psutil.Process().children() if "{command}" in " ".join(p.cmdline())]
print(json.dumps({{"pid": pid, "url": url, "ours": temporary_server_url() + "/",
                  "servers": servers}}))
"""


@pytest.mark.slow  # a real Prefect server
@pytest.mark.timeout(300)
def test_the_flow_uses_the_server_started_in_the_background_and_no_other(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _SAME_SERVER.format(command=SERVER_COMMAND)],
        cwd=tmp_path, env=_env_without_prefect_server(tmp_path),
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    assert found["servers"] == [found["pid"]]  # one server: the one started in the background
    assert found["url"] == found["ours"]  # and the flow's client talks to it


_KILLED_WHILE_STARTING = """
import time
from tasks.commands import temporary_server

temporary_server.start_temporary_server()  # returns while the server boots
print(temporary_server._SERVER.process.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.slow  # a real Prefect server
@pytest.mark.timeout(300)
def test_kill_9_while_the_server_is_still_starting_leaves_no_server_behind(tmp_path):
    """The server now starts early, while TensorFlow loads: a command killed then must not leave
    it behind either."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WHILE_STARTING],
        cwd=tmp_path, env=_env_without_prefect_server(tmp_path),
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        server = psutil.Process(int(proc.stdout.readline()))
        assert SERVER_COMMAND in " ".join(server.cmdline())
        started = server.create_time()
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive(server.pid, started):
            assert time.monotonic() < deadline, "the Prefect server outlived the command"
            time.sleep(0.2)
    finally:
        try:
            os.killpg(proc.pid, 9)  # anything of its group still there
        except ProcessLookupError:
            pass
        _end(proc)
