"""Shared fixtures: a real Redis server (the embedded one unless REDIS_URL is set)."""

from __future__ import annotations

import contextlib
import os
import secrets
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle, open_redis, stop_embedded
from swarm.paths import DATA_DIR


@pytest.fixture(scope="session")
def redis_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHandle]:
    handle = open_redis(tmp_path_factory.mktemp("redis"))
    yield handle
    handle.close()
    if handle.folder is not None:
        stop_embedded(handle.folder)


@pytest.fixture(scope="session", autouse=True)
def _no_embedded_redis_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every embedded server a test started (a CLI's in its .swarm/) is stopped when the
    session ends, not LEASE_S later: the session leaves no process behind."""
    yield
    for root, dirs, files in os.walk(tmp_path_factory.getbasetemp()):
        dirs[:] = [d for d in dirs if d not in (".git", "node_modules")]
        if os.path.basename(root) == "redis" and "server.json" in files:
            with contextlib.suppress(Exception):
                stop_embedded(Path(root).parent)
            if os.path.exists(os.path.join(root, "server.json")):
                warnings.warn(f"an embedded Redis in {root} is still running", stacklevel=1)


@pytest.fixture(autouse=True)
def _private_credential_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test gets its own empty credential store (a file under a fresh
    XDG_CONFIG_HOME), never the user's keyring or ~/.config/swarm/auth.json."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.setenv("SWARM_AUTH_STORE", "file")


@pytest.fixture
async def board(redis_handle: RedisHandle) -> AsyncIterator[Blackboard]:
    b = Blackboard(redis_handle.url, f"test-{secrets.token_hex(4)}")
    yield b
    await b.close()


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir() -> Path:
    """The data shipped inside the package: agents/, topologies/, configs/, examples/."""
    return DATA_DIR


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
