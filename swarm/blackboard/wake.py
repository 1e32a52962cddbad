"""One blocking read of a run's wake stream per process, shared by all its waiters.

Every idle agent waits on the wake stream. A blocking XREAD holds its connection (and a
client on the server) for as long as it waits, so agents packed into one actor each
reading for themselves held one connection each: 1,000 idle agents, 1,000 clients. Here
one reader follows the stream and wakes every waiter of its board with each batch."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

from swarm.errors import SwarmError

Row = tuple[str, dict[str, str]]  # a stream entry: its id and fields

BLOCK_MS = 5000  # the reader's blocking read, at most (shorter than the socket timeout)
KEEP = 100  # recent entries kept for waiters that arrive behind the reader


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair ("0" and "0-0" are the stream's start)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms or 0), int(seq or 0)


class WakeListener:
    """Waiters ask for entries newer than an id; the reader starts at the first waiter's
    id and never goes back, so a waiter behind it gets what it kept (or a range read)."""

    def __init__(self, r: Any, key: str) -> None:
        self._r = r
        self._key = key
        self._recent: deque[tuple[tuple[int, int], Row]] = deque(maxlen=KEEP)
        self._read_to = (0, 0)  # the reader has seen every entry up to this id
        self._start = (0, 0)  # ... and kept every entry after this one (until it drops some)
        self._batch: asyncio.Future[None] | None = None  # done when the next batch lands
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def wait(self, after: str, block_ms: int) -> list[Row]:
        if self._closed:
            raise SwarmError("the blackboard is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        since = id_key(after)
        if self._reader is None or self._reader.done():
            if self._reader is not None and not self._reader.cancelled():
                self._reader.exception()  # seen by its waiters (and so retrieved)
            self._read_to = self._start = since
            self._recent.clear()
            self._reader = asyncio.create_task(self._read(after), name="wake-reader")
        while True:
            # the next batch's future is taken before looking: a batch landing between
            # the look and the wait still wakes this waiter
            batch = self._next_batch()
            if self._read_to > since:
                return await self._newer(after, since)
            left = deadline - loop.time()
            if left <= 0:
                return []
            await asyncio.wait({batch}, timeout=left)  # never cancels the shared future
            if batch.cancelled():
                raise SwarmError("the blackboard is closed")
            if batch.done() and (error := batch.exception()) is not None:
                raise error

    def _next_batch(self) -> asyncio.Future[None]:
        if self._batch is None or self._batch.done():
            self._batch = asyncio.get_running_loop().create_future()
        return self._batch

    async def _newer(self, after: str, since: tuple[int, int]) -> list[Row]:
        kept = [row for key, row in self._recent if key > since]
        covered = self._start if len(self._recent) < KEEP else self._recent[0][0]
        if since >= covered:
            return kept
        # the waiter is behind what is kept: read its entries itself (rare)
        rows = await self._r.xrange(self._key, min=f"({after}", count=KEEP)
        return [(i, f) for i, f in rows]

    async def _read(self, cursor: str) -> None:
        try:
            while True:
                res = await self._r.xread({self._key: cursor}, block=BLOCK_MS, count=KEEP)
                rows = [(i, f) for _, entries in res for i, f in entries]
                if not rows:
                    continue
                for i, f in rows:
                    self._recent.append((id_key(i), (i, f)))
                cursor = rows[-1][0]
                self._read_to = id_key(cursor)
                if self._batch is not None and not self._batch.done():
                    self._batch.set_result(None)
        except asyncio.CancelledError:
            if self._batch is not None and not self._batch.done():
                self._batch.cancel()
            raise
        except Exception as exc:  # Redis gone past the outage: every waiter sees it
            if self._batch is not None and not self._batch.done():
                self._batch.set_exception(exc)
                self._batch.add_done_callback(_retrieved)
            # the reader ends; the next waiter starts another

    async def close(self) -> None:
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        if self._batch is not None and not self._batch.done():
            self._batch.cancel()


def _retrieved(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # no "never retrieved" warning when no waiter was left to see it
