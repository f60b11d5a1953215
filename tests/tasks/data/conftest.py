"""Fixtures of the data tests: a loopback HTTP mirror, a URL where nothing listens."""

import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Truncated:
    """Announce the full length, send only the first half, hang up."""

    def __init__(self, body: bytes):
        self.body = body


class Slow:
    """Answer only after `seconds`."""

    def __init__(self, body: bytes, seconds: float):
        self.body, self.seconds = body, seconds


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits[self.path] += 1
        answer = self.server.routes.get(self.path, 404)
        if isinstance(answer, int):
            self.send_error(answer)
            return
        if isinstance(answer, Slow):
            time.sleep(answer.seconds)
            answer = answer.body
        body = answer.body if isinstance(answer, Truncated) else answer
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if isinstance(answer, Truncated):
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (the Slow case)

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass


class Mirror:
    """A loopback HTTP server: `serve(path, answer)`, then fetch `url(prefix)` + file names."""

    def __init__(self, server: ThreadingHTTPServer):
        self._server = server
        self.root = f"http://127.0.0.1:{server.server_address[1]}/"

    def url(self, prefix: str = "a") -> str:
        return f"{self.root}{prefix}/"

    def serve(self, path: str, answer) -> None:
        """answer: bytes (200), an HTTP status code, Truncated(bytes) or Slow(bytes, seconds)."""
        self._server.routes["/" + path] = answer

    def hits(self, path: str) -> int:
        return self._server.hits["/" + path]

    @property
    def total_hits(self) -> int:
        return sum(self._server.hits.values())


@pytest.fixture
def mirror():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes, server.hits = {}, Counter()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Mirror(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
