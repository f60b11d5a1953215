"""A stand-in for Prefect's server app, served by tasks.commands.prefect_server in the temporary
server's tests: `create_app` waits until the file named by FAKE_PREFECT_GATE exists (the test
lets it "boot"), or fails at once when FAKE_PREFECT_FAIL is set; then /api/health answers."""

import os
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

GATE_ENV, FAIL_ENV = "FAKE_PREFECT_GATE", "FAKE_PREFECT_FAIL"
GATE_SECONDS = 60.0  # the most it waits for its gate


async def _health(request):
    return JSONResponse(True)


def create_app() -> Starlette:
    if os.environ.get(FAIL_ENV):
        raise RuntimeError("the fake server's app failed to build")
    gate = os.environ.get(GATE_ENV)
    deadline = time.monotonic() + GATE_SECONDS
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return Starlette(routes=[Route("/api/health", _health)])
