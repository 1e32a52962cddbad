"""The one retry layer: exponential backoff with jitter, honouring the server's hints."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel

from swarm.providers.base import ProviderError

T = TypeVar("T")


class RetryPolicy(BaseModel):
    max_attempts: int = 6
    max_total_s: float = 300.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[int, ProviderError, float], Awaitable[None]] | None = None,
) -> tuple[T, int]:
    """Run `call` until it succeeds or is not worth retrying. Returns (result, attempts)."""
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call(), attempt
        except ProviderError as exc:
            if not exc.retryable or attempt >= policy.max_attempts:
                raise
            backoff = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempt - 1))
            delay = backoff * (0.5 + random.random() / 2)
            if exc.retry_after_s is not None:
                delay = max(delay, min(exc.retry_after_s, policy.max_delay_s * 2))
            if time.monotonic() - start + delay > policy.max_total_s:
                raise
            if on_retry is not None:
                await on_retry(attempt, exc, delay)
            await asyncio.sleep(delay)
