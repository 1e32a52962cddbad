"""Budget reservations and shared rate limits on a real Redis."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.limits import Budget, BudgetExhausted, RateLimiter, credential_id


def test_credential_id_hides_the_key() -> None:
    cid = credential_id("anthropic", "sk-secret-123", None)
    assert "sk-secret" not in cid and cid.startswith("anthropic:")
    assert cid == credential_id("anthropic", "sk-secret-123", None)
    assert cid != credential_id("anthropic", "sk-other", None)


async def test_rate_limit_is_shared_and_never_exceeded(board: Blackboard) -> None:
    cred = f"test:{secrets.token_hex(4)}"
    window, limit = 0.5, 3
    limiters = [
        RateLimiter(Blackboard(board.url, board.run_id).r, cred, limit, None, window)
        for _ in range(10)
    ]
    stamps: list[float] = []

    async def agent(lim: RateLimiter) -> None:
        for _ in range(2):
            async with lim.slot(10):
                stamps.append(time.monotonic())
                await asyncio.sleep(0.05)  # the request takes a while

    start = time.monotonic()
    await asyncio.gather(*(agent(lim) for lim in limiters))
    elapsed = time.monotonic() - start
    assert len(stamps) == 20
    stamps.sort()
    for i, t in enumerate(stamps):  # any window-long interval holds at most `limit`
        assert sum(1 for u in stamps[i:] if u - t < window - 0.02) <= limit
    assert elapsed >= (20 / limit - 1) * window * 0.9  # it really waited
    for lim in limiters:
        await lim.r.aclose()


async def test_token_limit(board: Blackboard) -> None:
    lim = RateLimiter(board.r, f"test:{secrets.token_hex(4)}", None, 100, 0.3)
    async with lim.slot(60) as slot:
        assert slot.waited == 0
    async with lim.slot(60) as slot:  # 120 > 100 in one window: waits for the first
        assert slot.waited > 0.1


async def test_token_sum_follows_entries_leaving_the_window(board: Blackboard) -> None:
    """The window's tokens are kept summed beside its zset: entries that leave the
    window free their tokens, and a window without the sum (written by an older
    version) is counted from its entries."""
    lim = RateLimiter(board.r, f"test:{secrets.token_hex(4)}", None, 100, 0.3)
    async with lim.slot(60):
        pass
    assert int(await board.r.get(lim.window_key + ":tokens")) == 60
    await asyncio.sleep(0.35)  # the first entry leaves the window
    async with lim.slot(70) as slot:
        assert slot.waited == 0
    assert int(await board.r.get(lim.window_key + ":tokens")) == 70
    await board.r.delete(lim.window_key + ":tokens")  # as an older version left it
    async with lim.slot(40) as slot:  # 70 + 40 > 100: the 70 is still counted
        assert slot.waited > 0.1
    assert int(await board.r.get(lim.window_key + ":tokens")) == 40
    assert (
        0
        < await board.r.pttl(lim.window_key + ":tokens")
        <= await board.r.pttl(lim.window_key) + 50
    )


async def test_a_place_asked_for_with_the_reservation_is_held_once(board: Blackboard) -> None:
    """The budget reservation asks for the request's rate-limit place in the same round
    trip; the request then uses it (no second acquire), and the turn's store ends it."""
    await board.init_run({"name": "t"}, [])
    lim = RateLimiter(board.r, f"test:{secrets.token_hex(4)}", 2, None, 60)
    budget = Budget(board.r, board.run_id, max_usd=None, max_tokens=None)
    ahead = lim.new_slot(10)
    reservation = await budget.reserve("a", 0.0, 10, slot=ahead)
    assert ahead.admitted
    async with lim.slot(10, ahead=ahead) as held:
        assert held is ahead
        done = held.done_in_store()
    entries = await board.r.zrange(lim.window_key, 0, -1, withscores=True)
    assert [m for m, _ in entries] == [ahead.member]  # one place: not asked for twice
    in_flight = entries[0][1]
    await board.record_turn("a", "t1", [], settle=reservation, rate_done=done)
    ((member, ended),) = await board.r.zrange(lim.window_key, 0, -1, withscores=True)
    assert member == ahead.member and ended < in_flight  # counts from its end now
    # the limit of 2 holds across both routes: one more fits, the third waits
    second = lim.new_slot(10)
    await budget.reserve("b", 0.0, 10, slot=second)
    assert second.admitted
    third = lim.new_slot(10)
    await budget.reserve("c", 0.0, 10, slot=third)
    assert not third.admitted  # reserved, but its request must wait for a place


async def test_without_limits_no_place_is_held_but_a_429_block_is(board: Blackboard) -> None:
    await board.init_run({"name": "t"}, [])
    cred = f"test:{secrets.token_hex(4)}"
    lim = RateLimiter(board.r, cred, None, None, 60)
    budget = Budget(board.r, board.run_id, max_usd=None, max_tokens=None)
    ahead = lim.new_slot(10)
    await budget.reserve("a", 0.0, 10, slot=ahead)
    assert ahead.admitted and ahead.done_in_store() is None
    assert await board.r.exists(lim.window_key) == 0
    await lim.block_for(0.3)
    blocked = lim.new_slot(10)
    await budget.reserve("b", 0.0, 10, slot=blocked)
    assert not blocked.admitted
    start = time.monotonic()
    async with lim.slot(10, ahead=blocked) as held:
        assert held.waited > 0.1
    assert time.monotonic() - start >= 0.25


async def test_a_429_blocks_every_agent_on_the_credential(board: Blackboard) -> None:
    cred = f"test:{secrets.token_hex(4)}"
    a = RateLimiter(board.r, cred, 1000, None, 60)
    b = RateLimiter(board.r, cred, 1000, None, 60)
    await a.block_for(0.3)
    start = time.monotonic()
    async with b.slot(1):
        pass
    assert time.monotonic() - start >= 0.25


async def test_budget_reserve_settle_and_exhaust(board: Blackboard) -> None:
    await board.init_run({"name": "t"}, [])
    budget = Budget(board.r, board.run_id, max_usd=1.0, max_tokens=None)
    r1 = await budget.reserve("a", 0.4, 100)
    r2 = await budget.reserve("b", 0.4, 100)
    # a third does not fit while two are in flight: it waits for them
    third = asyncio.create_task(budget.reserve("c", 0.4, 100, wait_s=0.01))
    await asyncio.sleep(0.1)
    assert not third.done()
    await board.record_turn("a", "t1", [], usage={"usd": 0.1}, settle=r1)
    r3 = await asyncio.wait_for(third, 2)  # 0.1 spent + 0.4 reserved + 0.4 fits
    await board.record_turn("b", "t1", [], usage={"usd": 0.35}, settle=r2)
    await board.record_turn("c", "t1", [], usage={"usd": 0.3}, settle=r3)
    with pytest.raises(BudgetExhausted) as info:
        await budget.reserve("a", 0.4, 100)
    assert info.value.state == "budget"
    assert "max_usd 1.0 reached" in info.value.reason
    meta = await board.meta()
    assert meta["state"] == "budget"
    assert await board.r.hgetall(board.k.budget) == {}  # nothing left reserved
    # a stopped run refuses new requests too
    with pytest.raises(BudgetExhausted):
        await Budget(board.r, board.run_id, None, None).reserve("a", 0.0, 1)


async def test_release_gives_the_reservation_back(board: Blackboard) -> None:
    await board.init_run({"name": "t"}, [])
    budget = Budget(board.r, board.run_id, max_usd=None, max_tokens=1000)
    await budget.reserve("a", 0.0, 900)
    await budget.release("a")
    await budget.reserve("b", 0.0, 900)  # fits again


async def test_a_dead_holder_does_not_block_the_budget(board: Blackboard) -> None:
    """An agent killed with a request in flight never settles; its restart (or the
    coordinator, when it is gone for good) clears the reservation, and reserving again
    under the same name replaces it."""
    await board.init_run({"name": "t"}, [])
    budget = Budget(board.r, board.run_id, max_usd=1.0, max_tokens=None)
    await budget.reserve("a", 0.9, 10)  # then the process dies
    await budget.reserve("a", 0.9, 10)  # the restarted agent: its old entry is replaced
    await budget.release("a")  # the coordinator, on the agent's death
    await board.record_turn("b", "t", [], usage={"usd": 0.95})
    with pytest.raises(BudgetExhausted):  # decided at once: nothing is in flight
        await asyncio.wait_for(budget.reserve("b", 0.1, 10), 2)


async def test_a_leaked_reservation_expires(board: Blackboard) -> None:
    """A reservation nobody settles or clears (its holder gone without a trace) stops
    counting once it expires: it never blocks the other agents for good."""
    await board.init_run({"name": "t"}, [])
    budget = Budget(board.r, board.run_id, max_usd=1.0, max_tokens=None)
    await budget.reserve("ghost", 0.9, 10)
    with pytest.raises(asyncio.TimeoutError):  # live: the others wait for it to settle
        await asyncio.wait_for(budget.reserve("b", 0.5, 10), 0.5)
    usd, tokens, _ = (await board.r.hget(board.k.budget, "ghost")).split()
    await board.r.hset(board.k.budget, "ghost", f"{usd} {tokens} 1")  # its deadline passed
    await asyncio.wait_for(budget.reserve("b", 0.5, 10), 2)
    assert "ghost" not in await board.r.hgetall(board.k.budget)


async def test_max_tokens_counts_cache_reads_and_writes(board: Blackboard) -> None:
    """max_tokens is what the providers processed: input (uncached, cache reads, cache
    writes, which the usage counters keep apart) plus output."""
    await board.init_run({"name": "t"}, [])
    budget = Budget(board.r, board.run_id, max_usd=None, max_tokens=1000)
    r = await budget.reserve("a", 0.0, 100)
    usage = {
        "input_tokens": 100,
        "cache_read_tokens": 500,
        "cache_creation_tokens": 200,
        "output_tokens": 100,
    }
    await board.record_turn("a", "t", [], usage=usage, settle=r)  # 900 spent
    await budget.reserve("a", 0.0, 100)  # 1000 fits
    await budget.release("a")
    with pytest.raises(BudgetExhausted) as info:  # 1001 does not
        await asyncio.wait_for(budget.reserve("a", 0.0, 101), 2)
    assert info.value.reason == "max_tokens 1000 reached (900 spent)"


async def test_usage_recorded_outside_a_turn_counts_in_the_budget(board: Blackboard) -> None:
    """record_usage (an attempt that broke after the provider did the work) adds to the
    run's, the agent's and the task's counters, which the budget reads."""
    await board.init_run({"name": "t"}, [])
    budget = Budget(board.r, board.run_id, max_usd=1.0, max_tokens=10_000)
    r = await budget.reserve("a", 0.5, 1000)
    await board.record_usage(
        "a", "t", {"input_tokens": 4000, "cache_read_tokens": 1000, "usd": 0.3}
    )
    await board.record_usage("a", "t", {"output_tokens": 50, "usd": 0.1})
    assert await board.r.hget(board.k.budget, "a")  # the reservation is still held
    for kind, name in ((None, ""), ("agent", "a"), ("task", "t")):
        assert await board.usage(kind, name) == {
            "input_tokens": 4000.0,
            "cache_read_tokens": 1000.0,
            "output_tokens": 50.0,
            "usd": pytest.approx(0.4),
        }
    await board.record_turn("a", "t", [], usage={"usd": 0.05}, settle=r)
    with pytest.raises(BudgetExhausted) as info:  # 0.45 + 0.6 > 1.0
        await asyncio.wait_for(budget.reserve("a", 0.6, 10), 2)
    assert "max_usd 1.0 reached ($0.4500 spent)" == info.value.reason
    assert (await board.meta()).get("last_turn_ms") is None  # no turn was recorded
