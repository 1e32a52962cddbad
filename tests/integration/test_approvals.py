"""Approvals on a real Redis: request, pending, answer, wait, timeout, attach."""

from __future__ import annotations

import asyncio
import json

import pytest

from swarm import approvals
from swarm.blackboard.board import Blackboard

pytestmark = pytest.mark.integration


async def _ask(board: Blackboard, summary: str = "git push origin main") -> approvals.Approval:
    return await approvals.request(
        board, agent="a1", task="t1", tool="bash", summary=summary, rule="git push*"
    )


async def test_request_is_pending_and_an_event(board: Blackboard) -> None:
    ap = await _ask(board)
    assert ap.run_id == board.run_id and ap.id.startswith("ap-")
    assert [p.id for p in await approvals.pending(board)] == [ap.id]
    events = [e for e in await board.events() if e.type == "approval_requested"]
    assert len(events) == 1
    assert events[0].agent == "a1" and events[0].task == "t1"
    assert events[0].data == {
        "id": ap.id,
        "tool": "bash",
        "summary": "git push origin main",
        "rule": "git push*",
        "created_ms": ap.created_ms,
    }


async def test_answer_once_then_refused(board: Blackboard) -> None:
    ap = await _ask(board)
    assert await approvals.answer(board, ap.id, "allow", message="go")
    assert not await approvals.answer(board, ap.id, "deny")
    assert not await approvals.answer(board, "ap-unknown", "allow")
    assert await approvals.pending(board) == []
    assert await approvals.wait(board, ap.id, 1.0) == ("allow", "go")
    answered = [e for e in await board.events() if e.type == "approval_answered"]
    assert len(answered) == 1 and answered[0].data["decision"] == "allow"
    assert await approvals.rules(board) == []  # once: no rule


async def test_concurrent_answers_one_wins(board: Blackboard) -> None:
    ap = await _ask(board)
    results = await asyncio.gather(
        *(approvals.answer(board, ap.id, d) for d in ("allow", "deny", "allow", "deny"))
    )
    assert sorted(results) == [False, False, False, True]


async def test_wait_wakes_on_answer(board: Blackboard) -> None:
    ap = await _ask(board)

    async def later() -> None:
        await asyncio.sleep(0.3)
        await approvals.answer(board, ap.id, "deny", message="not now")

    loop = asyncio.get_running_loop()
    start = loop.time()
    answering = asyncio.create_task(later())
    assert await approvals.wait(board, ap.id, 30.0) == ("deny", "not now")
    await answering
    assert loop.time() - start < 5.0  # woken by the answer, not by the timeout


async def test_timeout_denies_and_refuses_a_late_answer(board: Blackboard) -> None:
    ap = await _ask(board)
    decision, message = await approvals.wait(board, ap.id, 0.3)
    assert decision == "deny" and "timed out" in message
    assert not await approvals.answer(board, ap.id, "allow")
    assert await approvals.pending(board) == []
    answered = [e for e in await board.events() if e.type == "approval_answered"]
    assert answered[0].data["by"] == "timeout"


async def test_always_adds_a_rule_for_the_run(board: Blackboard) -> None:
    ap = await _ask(board)
    assert not await approvals.always_allowed(board, "bash", ["git push*"])
    assert await approvals.answer(board, ap.id, "allow", "always")
    assert await approvals.always_allowed(board, "bash", ["git push*"])
    assert not await approvals.always_allowed(board, "write", ["git push*"])
    assert await approvals.rules(board) == [("bash", "git push*")]
    other = Blackboard(board.url, f"{board.run_id}-other")
    try:  # another run does not inherit it
        assert not await approvals.always_allowed(other, "bash", ["git push*"])
    finally:
        await other.close()


async def test_deny_always_adds_no_rule(board: Blackboard) -> None:
    ap = await _ask(board)
    assert await approvals.answer(board, ap.id, "deny", "always")
    assert await approvals.rules(board) == []


async def test_asking_again_replaces_a_stale_copy(board: Blackboard) -> None:
    first = await _ask(board)
    second = await _ask(board)  # the same question after a crash and restart
    other = await _ask(board, summary="git push origin dev")
    assert {p.id for p in await approvals.pending(board)} == {second.id, other.id}
    withdrawn = [e.data["id"] for e in await board.events() if e.type == "approval_withdrawn"]
    assert withdrawn == [first.id]


async def test_withdraw(board: Blackboard) -> None:
    ap = await _ask(board)
    assert await approvals.withdraw(board, ap.id)
    assert not await approvals.withdraw(board, ap.id)
    assert await approvals.pending(board) == []
    assert not await approvals.answer(board, ap.id, "allow")


async def test_attach_lapses(board: Blackboard) -> None:
    assert not await approvals.attended(board)
    await approvals.attach(board, "dash-1", 0.4)
    assert await approvals.attended(board)
    await asyncio.sleep(0.6)
    assert not await approvals.attended(board)
    await approvals.attach(board, "dash-1", 10)
    await approvals.detach(board, "dash-1")
    assert not await approvals.attended(board)


async def test_keep_attached_renews_and_detaches(board: Blackboard) -> None:
    keeper = asyncio.create_task(approvals.keep_attached(board, "srv", ttl_s=0.6))
    await asyncio.sleep(1.0)  # past one TTL: renewed
    assert await approvals.attended(board)
    keeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await keeper
    assert not await approvals.attended(board)


def test_model_round_trip() -> None:
    ap = approvals.Approval(
        id="ap-1",
        run_id="r",
        agent="a",
        task="t",
        tool="bash",
        summary="s",
        rule=None,
        created_ms=1,
    )
    assert approvals.Approval.model_validate(json.loads(ap.model_dump_json())) == ap
