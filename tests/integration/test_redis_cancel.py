"""A cancelled Redis call is cancelled: Python 3.11's asyncio.wait_for (which redis-py
sends through) can lose a cancellation that lands as the write completes, and the
blackboard's retry layer raises it instead (a stop must always land)."""

from __future__ import annotations

import asyncio

import pytest

from swarm.blackboard.board import Blackboard

pytestmark = pytest.mark.integration


async def test_cancellation_is_never_lost(board: Blackboard) -> None:
    lost = 0
    for i in range(400):

        async def busy() -> None:
            while True:
                await board.r.zadd(f"{board.k.prefix}:probe", {"a": 1})
                await board.now_ms()

        task = asyncio.create_task(busy())
        await asyncio.sleep(0.0005 * (i % 7))  # land the cancel at every point of a call
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        if not done:  # lost: stop it for good, then fail
            lost += 1
            for _ in range(100):
                task.cancel()
                if (await asyncio.wait([task], timeout=0.1))[0]:
                    break
            break
        with pytest.raises(asyncio.CancelledError):
            await task
    assert lost == 0
    assert await board.r.zcard(f"{board.k.prefix}:probe") == 1  # and Redis still answers
