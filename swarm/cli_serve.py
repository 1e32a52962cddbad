"""`swarm serve`: the HTTP API (swarm/server/, docs/serve.md)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Annotated

import typer

from swarm.errors import BadInput

DEFAULT_PORT = 8420


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: Annotated[str, typer.Option("--host", help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0 = a free port")] = (
        DEFAULT_PORT
    ),
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="allow binding to an address other hosts can reach"),
    ] = False,
) -> None:
    """Serve the HTTP API: runs, resumable event streams (SSE), reports and approvals;
    a bearer token (SWARM_SERVER_TOKEN, or generated and printed once) guards it."""
    from swarm.cli import _fail

    try:
        run_server(host, port, allow_remote, Path.cwd())
    except BadInput as exc:
        _fail(exc)


def run_server(host: str, port: int, allow_remote: bool, workdir: Path) -> None:
    import uvicorn

    from swarm.blackboard.connection import open_redis, state_dir
    from swarm.server import create_app
    from swarm.server.auth import TOKEN_ENV, server_token
    from swarm.server.logsink import LogSink

    if not is_loopback(host):
        if not allow_remote:
            raise BadInput(
                f"--host: {host} is reachable from other machines; pass --allow-remote to "
                "bind to it (anyone who can reach it and holds the token controls your runs)"
            )
        print(
            f"warning: swarm serve listens on {host}, reachable from other machines; the "
            "traffic is plain HTTP (put a TLS proxy in front of it)",
            file=sys.stderr,
        )
    folder = state_dir(workdir) / "server"
    handle = open_redis(state_dir(workdir))
    try:
        token, generated = server_token(folder)
        if generated:
            print(f"swarm serve: token {token}", flush=True)
            print(
                f"swarm serve: (printed once; kept in {folder / 'token'}, mode 0600; set "
                f"{TOKEN_ENV} to choose it)",
                flush=True,
            )
        app = create_app(handle.url, workdir, token)
        config = uvicorn.Config(
            app, host=host, port=port, log_level="info", lifespan="on", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        print(f"swarm serve: http://{host}:{port} (OpenAPI at /openapi.json)", flush=True)
        sink = LogSink()  # after uvicorn.Config: it installs the handlers this wraps
        sink.start()
        try:
            server.run()
        finally:
            sink.stop()
    finally:
        handle.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
