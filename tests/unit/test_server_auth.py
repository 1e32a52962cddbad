"""The server's token (0600, printed once), the bearer check, and the bind guard."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from swarm.cli_serve import is_loopback
from swarm.secrets import redact, secret_values
from swarm.server.auth import TOKEN_ENV, BearerAuth, server_token


def test_generated_token_is_stored_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token, generated = server_token(tmp_path / "server")
    path = tmp_path / "server" / "token"
    assert generated and len(token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == token
    again, _ = server_token(tmp_path / "server")
    assert again != token and path.read_text().strip() == again  # a new one each start
    assert redact(f"x {again} y", secret_values()) == "x [redacted] y"


def test_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-env-token-123456")
    assert server_token(tmp_path / "server") == ("from-env-token-123456", False)
    assert not (tmp_path / "server" / "token").exists()


async def test_bearer_check() -> None:
    async def ok(_: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/health", ok), Route("/runs", ok)])
    app = BearerAuth(inner, "s3cret-token")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/runs")).status_code == 401
        assert (await c.post("/health")).status_code == 401  # only GET /health is open
        wrong = await c.get("/runs", headers={"Authorization": "Bearer s3cret-tokeN"})
        assert wrong.status_code == 401 and "s3cret" not in wrong.text
        good = await c.get("/runs", headers={"Authorization": "Bearer s3cret-token"})
        assert good.status_code == 200 and good.text == "ok"


def test_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.com")


def test_remote_bind_needs_the_flag(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swarm.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=tmp_path,
        env={**os.environ, TOKEN_ENV: "t" * 20},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--allow-remote" in proc.stderr and "0.0.0.0" in proc.stderr
    assert not (tmp_path / ".swarm").exists()  # refused before anything started
