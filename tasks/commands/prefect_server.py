"""The process of Prefect's temporary server (`tasks.commands.temporary_server` starts it):
`python -m tasks.commands.prefect_server prefect.server.api.server:create_app FD`.

It serves what Prefect's own temporary server serves (the app factory, with uvicorn, lifespan on,
errors only in the log) on the listening socket FD that the command bound and handed over.

Prefect's server modules (some 300,000 objects: FastAPI, SQLAlchemy, the ORM, pydantic models)
are imported with the garbage collector off, then frozen (`tasks.core.imports`): 0.5-0.8 s of
the server's 3.7-3.9 s boot on this project's 2-core machine.
"""

import importlib
import socket
import sys

from tasks.core.imports import frozen_imports


def serve(app: str, fd: int) -> None:
    """Serve `app` ("module:factory") on the listening socket `fd` until SIGTERM or SIGINT."""
    with frozen_imports():
        import uvicorn

        importlib.import_module(app.partition(":")[0])
    listener = socket.socket(fileno=fd)  # family and type read from the socket itself
    config = uvicorn.Config(app, factory=True, log_level="error", lifespan="on")
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        sys.exit(f"usage: python -m {__spec__.name} MODULE:FACTORY FD")
    serve(sys.argv[1], int(sys.argv[2]))
