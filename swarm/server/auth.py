"""The server's bearer token: from SWARM_SERVER_TOKEN or generated, stored 0600, checked
in constant time on every request but ``GET /health``."""

from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from swarm.secrets import register_secret_values

TOKEN_ENV = "SWARM_SERVER_TOKEN"
OPEN_PATHS = frozenset({("GET", "/health"), ("HEAD", "/health")})
UNAUTHORIZED = json.dumps(
    {"error": {"code": "unauthorized", "message": "authentication required"}}
).encode()


def server_token(folder: Path) -> tuple[str, bool]:
    """The token and whether it was generated now (then it is printed once). A generated
    token is written to ``folder/token`` with mode 0600 from creation."""
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        register_secret_values([token])
        return token, False
    token = secrets.token_urlsafe(32)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "token"
    path.unlink(missing_ok=True)  # a new file, so the mode below applies
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    register_secret_values([token])
    return token, True


class BearerAuth:
    """Pure ASGI middleware (streams pass through untouched): 401 without detail unless
    the ``Authorization: Bearer`` header carries the token."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                given = value
                break
        if hmac.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                    (b"content-length", str(len(UNAUTHORIZED)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": UNAUTHORIZED})
