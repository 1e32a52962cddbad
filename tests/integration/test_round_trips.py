"""Redis round trips on the agent's hot path, counted on a real Redis (every request
redis-py sends: a script or a pipeline is one)."""

from __future__ import annotations

from benchmarks.redis_trips import measure


async def test_a_tool_turn_costs_three_round_trips() -> None:
    """Each further read turn adds three: the budget reservation (with the rate-limit
    place), the model turn's store (ending that place, reading the inbox) and the tool
    results' store (with the tool's state). Ten more turns: thirty more, give or take a
    heartbeat."""
    short, long = await measure(5), await measure(15)
    assert long.turns - short.turns == 10
    extra = long.total - short.total
    assert 30 <= extra <= 31, (short.by_site, long.by_site)
    # what used to be a round trip of its own is not one any more
    for site in ("_request", "_with_inbox", "set"):
        assert long.by_site[site] - short.by_site[site] == 0, (site, long.by_site)
