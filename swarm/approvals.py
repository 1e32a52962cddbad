"""Approvals: a tool call that a permission rule marks ``ask`` waits for a person.

Everything lives in Redis under the run's prefix, so every agent, dashboard, server and
CLI on the same Redis sees the same questions and answers:

- ``approvals``: hash id -> the pending :class:`Approval` (JSON);
- ``approval_answers``: hash id -> the answer (JSON: decision, remember, message, by);
- ``approval:<id>``: a list pushed once when the question is answered (wakes the waiter);
- ``approval_rules``: set of ``tool\\0pattern`` allowed for the rest of the run
  (``remember: always``);
- ``attended``: zset who -> lease deadline (ms); the run is attended while one is live.

Answering is one Lua script (check pending, store the answer, add the rule, emit the
event), so two people answering at once get one ``True`` and one ``False``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel

from swarm.blackboard.board import Blackboard, now_ms
from swarm.blackboard.lua import COMMON

Decision = Literal["allow", "deny"]
Remember = Literal["once", "always"]

TIMED_OUT = "No one answered the approval request in time (timed out after {:g}s)."
DETACHED = "Everyone who could answer the approval request detached before answering."
UNATTENDED = (
    "No one is attached to approve it (a dashboard or `swarm serve`) and no "
    "`approvals.timeout_s` is configured, so it was denied."
)
SUMMARY_CHARS = 500
_BLOCK_S = 5.0  # one blocking read; below the connection's socket timeout (20 s)
_ANSWER_TTL_S = 24 * 3600  # a wake-up list nobody read is dropped after a day


class Approval(BaseModel):
    id: str
    run_id: str
    agent: str
    task: str
    tool: str
    summary: str
    rule: str | None
    created_ms: int


class Answer(BaseModel):
    decision: Decision
    remember: Remember = "once"
    message: str = ""
    by: str = "person"  # or "timeout"


# ARGV: prefix, id, answer JSON, remember, rule member ('' for none), ttl_s
_ANSWER = (
    COMMON
    + r"""
local id = ARGV[2]
local raw = redis.call('HGET', p .. ':approvals', id)
if not raw then return 0 end
if redis.call('HEXISTS', p .. ':approval_answers', id) == 1 then return 0 end
local ap = cjson.decode(raw)
local ans = cjson.decode(ARGV[3])
redis.call('HSET', p .. ':approval_answers', id, ARGV[3])
redis.call('HDEL', p .. ':approvals', id)
redis.call('RPUSH', p .. ':approval:' .. id, '1')
redis.call('EXPIRE', p .. ':approval:' .. id, tonumber(ARGV[6]))
if ARGV[5] ~= '' then redis.call('SADD', p .. ':approval_rules', ARGV[5]) end
emit('approval_answered', ap.task, ap.agent, cjson.encode({id = id, tool = ap.tool,
  decision = ans.decision, remember = ans.remember, message = ans.message, by = ans.by}))
return 1
"""
)

# ARGV: prefix, approval JSON, agent, task, tool, summary -> drops stale copies of the
# same question (a crashed agent's), stores it and emits the event.
_REQUEST = (
    COMMON
    + r"""
local ap = cjson.decode(ARGV[2])
for _, raw in ipairs(redis.call('HVALS', p .. ':approvals')) do
  local old = cjson.decode(raw)
  if old.agent == ap.agent and old.task == ap.task and old.tool == ap.tool
      and old.summary == ap.summary then
    redis.call('HDEL', p .. ':approvals', old.id)
    emit('approval_withdrawn', old.task, old.agent, cjson.encode({id = old.id}))
  end
end
redis.call('HSET', p .. ':approvals', ap.id, ARGV[2])
emit('approval_requested', ap.task, ap.agent, cjson.encode({id = ap.id, tool = ap.tool,
  summary = ap.summary, rule = ap.rule, created_ms = ap.created_ms}))
return 1
"""
)

# ARGV: prefix, id -> 1 withdrawn, 0 not pending
_WITHDRAW = (
    COMMON
    + r"""
local raw = redis.call('HGET', p .. ':approvals', ARGV[2])
if not raw then return 0 end
local ap = cjson.decode(raw)
redis.call('HDEL', p .. ':approvals', ARGV[2])
emit('approval_withdrawn', ap.task, ap.agent, cjson.encode({id = ap.id}))
return 1
"""
)


def rule_member(tool: str, pattern: str) -> str:
    return f"{tool}\0{pattern}"


async def request(
    board: Blackboard, *, agent: str, task: str, tool: str, summary: str, rule: str | None
) -> Approval:
    """Store a pending question and emit ``approval_requested``. The summary must already
    be redacted (it is shown to people and stored)."""
    approval = Approval(
        id=f"ap-{secrets.token_hex(6)}",
        run_id=board.run_id,
        agent=agent,
        task=task,
        tool=tool,
        summary=summary,
        rule=rule,
        created_ms=now_ms(),
    )
    script = board.r.register_script(_REQUEST)
    await script(args=[board.k.prefix, approval.model_dump_json()])
    return approval


async def pending(board: Blackboard) -> list[Approval]:
    """The questions waiting for an answer, oldest first."""
    raw = await board.r.hvals(board.k.approvals)
    found = [Approval.model_validate_json(v) for v in raw]
    return sorted(found, key=lambda a: (a.created_ms, a.id))


async def get(board: Blackboard, approval_id: str) -> Approval | None:
    raw = await board.r.hget(board.k.approvals, approval_id)
    return Approval.model_validate_json(raw) if raw else None


async def answer(
    board: Blackboard,
    approval_id: str,
    decision: Decision,
    remember: Remember = "once",
    message: str = "",
    *,
    by: str = "person",
) -> bool:
    """Answer a pending question; emits ``approval_answered``. False if it is unknown or
    already answered. ``allow`` + ``always`` allows the matched rule's pattern (or this
    call's summary when no rule matched) for this tool, for every agent, for the rest of
    the run."""
    ap = await get(board, approval_id)
    if ap is None:
        return False
    member = ""
    if decision == "allow" and remember == "always":
        member = rule_member(ap.tool, ap.rule if ap.rule is not None else ap.summary)
    ans = Answer(decision=decision, remember=remember, message=message, by=by)
    script = board.r.register_script(_ANSWER)
    args = [board.k.prefix, approval_id, ans.model_dump_json(), remember, member, _ANSWER_TTL_S]
    return bool(await script(args=args))


async def answer_of(board: Blackboard, approval_id: str) -> Answer | None:
    raw = await board.r.hget(board.k.approval_answers, approval_id)
    return Answer.model_validate_json(raw) if raw else None


async def withdraw(board: Blackboard, approval_id: str) -> bool:
    """Take back an unanswered question (its agent stopped waiting: a stop, a lost
    lease). The call it was about never ran; whoever works the task next asks again."""
    script = board.r.register_script(_WITHDRAW)
    return bool(await script(args=[board.k.prefix, approval_id]))


async def wait(
    board: Blackboard, approval_id: str, timeout_s: float, *, while_attended: bool = False
) -> tuple[str, str]:
    """Wait for the answer: (decision, message). A timeout denies (stored as the answer,
    so a late answer is refused) with a message saying so; so does, with
    ``while_attended``, the moment no one is attached any more."""
    deadline = time.monotonic() + timeout_s
    wake = f"{board.k.prefix}:approval:{approval_id}"
    message = TIMED_OUT.format(timeout_s)
    while True:
        ans = await answer_of(board, approval_id)
        if ans is not None:
            return ans.decision, ans.message
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if while_attended and not await attended(board):
            message = DETACHED
            break
        # BLPOP's timeout is in seconds (fractions allowed since Redis 6)
        await board.blocking.blpop([wake], timeout=max(0.01, min(left, _BLOCK_S)))
    if await answer(board, approval_id, "deny", "once", message, by="timeout"):
        return "deny", message
    ans = await answer_of(board, approval_id)  # answered meanwhile, or withdrawn
    if ans is not None:
        return ans.decision, ans.message
    return "deny", message


async def always_allowed(board: Blackboard, tool: str, patterns: list[str]) -> bool:
    """Whether a ``remember: always`` answer allowed one of these patterns for ``tool``."""
    if not patterns:
        return False
    pipe = board.r.pipeline(transaction=False)
    for p in patterns:
        pipe.sismember(board.k.approval_rules, rule_member(tool, p))
    return any(await pipe.execute())


async def rules(board: Blackboard) -> list[tuple[str, str]]:
    """The allow rules added by ``remember: always`` answers: (tool, pattern)."""
    members = await board.r.smembers(board.k.approval_rules)
    out = [tuple(m.split("\0", 1)) for m in members if "\0" in m]
    return sorted((t, p) for t, p in out)


async def attach(board: Blackboard, who: str, ttl_s: float) -> None:
    """Mark the run attended by ``who`` (a dashboard, a server) for ``ttl_s`` seconds;
    call again before it lapses to stay attached."""
    until = await board.now_ms() + int(ttl_s * 1000)
    await board.r.zadd(board.k.attended, {who: until})


async def detach(board: Blackboard, who: str) -> None:
    await board.r.zrem(board.k.attended, who)


async def attended(board: Blackboard) -> bool:
    """Whether someone who can answer is attached now."""
    now = await board.now_ms()
    return bool(await board.r.zcount(board.k.attended, now, "+inf"))


async def keep_attached(board: Blackboard, who: str, ttl_s: float = 30.0) -> None:
    """Renew ``attach`` every third of the TTL until cancelled, then detach."""
    try:
        while True:
            await attach(board, who, ttl_s)
            await asyncio.sleep(ttl_s / 3)
    finally:
        try:
            await asyncio.shield(detach(board, who))
        except Exception:  # best effort: the entry lapses on its own
            pass


def denial_note(ans: Answer | None, message: str) -> str:
    """What the model is told about a refused ``ask``."""
    if ans is not None and ans.by == "person":
        said = ans.message.strip()
        return (
            f'the person reviewing it denied it, saying: "{said}".'
            if said
            else ("the person reviewing it denied it.")
        )
    return message


def summarise(tool: str, subject: str, args: dict[str, Any], redact_values: list[str]) -> str:
    """The call as a person sees it: the command, the path and what changes, or the
    arguments; secrets redacted, at most SUMMARY_CHARS characters."""
    from swarm.secrets import redact

    def cut(text: str, n: int) -> str:
        return text if len(text) <= n else text[:n] + "..."

    if tool == "bash":
        text = subject
    elif tool in ("write", "edit", "multiedit") and isinstance(args.get("file_path"), str):
        if tool == "write":
            detail = f"{len(str(args.get('content', '')))} characters"
        elif tool == "edit":
            old, new = str(args.get("old_string", "")), str(args.get("new_string", ""))
            detail = f"replace {cut(old, 120)!r} with {cut(new, 120)!r}"
        else:
            detail = f"{len(args.get('edits') or [])} edits"
        text = f"{subject}: {detail}"
    elif args:
        text = json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)
    else:
        text = subject
    return cut(redact(text, redact_values), SUMMARY_CHARS)
