"""Swarm-wide limits on Redis: the budget (reserve before a request, settle after) and
shared rate limits per provider credential (sliding window)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from swarm.blackboard import lua
from swarm.blackboard.keys import SCHEMA, Keys

RESERVATION_TTL_MS = 20 * 60 * 1000  # longer than any request with all its retries


@dataclass
class Reservation:
    holder: str  # the agent; it has at most one request in flight
    usd: float
    tokens: int


class BudgetExhausted(Exception):
    """The run's budget is spent (or the run was stopped): stop cleanly, keep state."""

    def __init__(self, state: str, reason: str):
        super().__init__(reason)
        self.state = state
        self.reason = reason


class Budget:
    """max_usd / max_tokens for a whole run, reserved atomically before each request."""

    def __init__(self, r: Any, run_id: str, max_usd: float | None, max_tokens: int | None):
        self.r = r
        self.k = Keys(run_id)
        self.max_usd = max_usd
        self.max_tokens = max_tokens
        self._reserve = r.register_script(lua.RESERVE)

    async def reserve(
        self,
        holder: str,
        est_usd: float,
        est_tokens: int,
        wait_s: float = 0.05,
        slot: RateSlot | None = None,
    ) -> Reservation:
        """Reserve room for one request; waits while requests in flight may free room.
        With ``slot``, the request's rate-limit place is asked for in the same round trip
        (``slot.admitted`` says whether it got one). Raises BudgetExhausted when the
        budget is spent or the run no longer runs."""
        while True:
            res = await self._reserve(
                args=[
                    self.k.prefix,
                    "" if self.max_usd is None else repr(self.max_usd),
                    "" if self.max_tokens is None else str(self.max_tokens),
                    repr(est_usd),
                    str(est_tokens),
                    holder,
                    str(RESERVATION_TTL_MS),
                    "" if slot is None else json.dumps(slot.acquire_request()),
                ]
            )
            kind = res[0]
            if kind == "ok":
                if slot is not None:
                    slot.admitted = len(res) > 1 and int(res[1]) <= 0
                return Reservation(holder, est_usd, est_tokens)
            if kind == "budget":
                raise BudgetExhausted("budget", res[1])
            if kind == "stopped":
                raise BudgetExhausted(res[1], f"run is {res[1]}")
            await asyncio.sleep(wait_s)

    async def release(self, holder: str) -> None:
        """Drop the holder's reservation: its request failed, or it (re)starts or died.
        A success settles it in Blackboard.record_turn, together with the real usage."""
        await self.r.hdel(self.k.budget, holder)


def credential_id(provider: str, api_key: str, base_url: str | None) -> str:
    """A stable, non-secret id for a credential: a short hash, never the key."""
    digest = hashlib.sha256(f"{provider}\0{base_url or ''}\0{api_key}".encode()).hexdigest()
    return f"{provider}:{digest[:16]}"


@dataclass
class RateSlot:
    """One request's place in its credential's rate-limit window."""

    limiter: RateLimiter
    tokens: int
    inflight_s: float = 600.0
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    admitted: bool = False  # it holds its place (asked for with the budget reservation)
    deferred: bool = False  # its end is recorded by the turn's store (done_fields)
    waited: float = 0.0  # seconds waited for the place

    @property
    def member(self) -> str:
        return f"{self.id}:{self.tokens}"

    def acquire_request(self) -> dict[str, list[str | int]]:
        """lua.RATE_ACQUIRE's keys and arguments."""
        lim = self.limiter
        return {
            "keys": [lim.window_key, lim.blocked_key],
            "args": [
                lim.window_ms,
                "" if lim.max_requests is None else lim.max_requests,
                "" if lim.max_tokens is None else lim.max_tokens,
                self.tokens,
                self.id,
                int(self.inflight_s * 1000),
            ],
        }

    def done_in_store(self) -> list[str] | None:
        """Hand the end of the request to the turn's store (lua.STORE_TURN's ``rate``),
        one round trip fewer; None: nothing to record (no limits, no place held)."""
        self.deferred = True
        return [self.limiter.window_key, self.member] if self.limiter.enabled else None


class RateLimiter:
    """Requests and tokens per window for one credential, shared by every agent that
    uses it (across runs too: the key is not run-scoped). A 429 blocks all of them."""

    def __init__(
        self,
        r: Any,
        credential: str,
        requests_per_window: int | None,
        tokens_per_window: int | None,
        window_s: float = 60.0,
    ):
        self.r = r
        self.credential = credential
        self.window_ms = int(window_s * 1000)
        self.max_requests = requests_per_window
        self.max_tokens = tokens_per_window
        base = f"{SCHEMA}:ratelimit:{credential}"
        self.window_key, self.blocked_key = f"{base}:window", f"{base}:blocked"
        self._acquire = r.register_script(lua.RATE_ACQUIRE)
        self._done = r.register_script(lua.RATE_DONE)

    @property
    def enabled(self) -> bool:
        return self.max_requests is not None or self.max_tokens is not None

    def new_slot(self, tokens: int, inflight_s: float = 600.0) -> RateSlot:
        return RateSlot(self, tokens, inflight_s)

    @contextlib.asynccontextmanager
    async def slot(
        self, tokens: int, inflight_s: float = 600.0, ahead: RateSlot | None = None
    ) -> AsyncIterator[RateSlot]:
        """Hold a place for one request of about `tokens` tokens while it runs (``ahead``:
        one asked for already, used if it was admitted). The place counts until one
        window after the request ends. Without limits, only a 429's block is waited out
        (and no place is held, so other runs' limits on the credential do not see it)."""
        slot = ahead if ahead is not None and ahead.admitted else self.new_slot(tokens, inflight_s)
        while not slot.admitted:
            wait_ms = int(await self._acquire(**slot.acquire_request()))
            if wait_ms <= 0:
                slot.admitted = True
                break
            delay = wait_ms / 1000 + 0.001
            slot.waited += delay
            await asyncio.sleep(delay)
        try:
            yield slot
        finally:
            if self.enabled and not slot.deferred:
                await self._done(keys=[self.window_key], args=[slot.member])

    async def block_for(self, seconds: float) -> None:
        """After a 429: nobody on this credential sends before `seconds` from now."""
        ms = max(1, int(seconds * 1000))
        now_s, now_us = await self.r.time()
        until = now_s * 1000 + now_us // 1000 + ms
        # keep the later deadline if another agent already set one
        current = int(await self.r.get(self.blocked_key) or 0)
        if until > current:
            await self.r.set(self.blocked_key, until, px=ms + 1000)
