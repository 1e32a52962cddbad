"""Sessions: the stored conversation of one task of one run, named ``RUN/TASK`` (a
``swarm run`` session, a run with one task, may be named by its run id alone).

Listing reads the sessions index (``swarm:v1:sessions``, a sorted set by last update
that lua.STORE_TURN maintains with every stored message), never a scan of the keys."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from swarm.blackboard.keys import RUNS, SCHEMA, SESSIONS, Keys
from swarm.errors import BadInput

#: the task id of a ``swarm run`` session (its run has this one task)
RUN_TASK = "run"
#: repo path -> the latest ``swarm run`` session on it (``swarm run --continue``)
LAST_RUN = f"{SCHEMA}:last-run"
KIND_RUN, KIND_SWARM = "run", "swarm"
_FOLD = 200  # characters of a tool call's input or result shown when folded


class SessionRow(BaseModel):
    id: str
    run: str
    task: str
    kind: str  # "run" (swarm run) or "swarm" (a task of a swarm launch)
    title: str = ""
    status: str = ""
    agent: str = ""
    model: str = ""
    messages: int = 0
    updated_ms: int = 0
    repo: str = ""


class SessionView(BaseModel):
    row: SessionRow
    result: str = ""
    error: str = ""
    messages: list[dict[str, Any]]
    usage: dict[str, float] = {}


def session_id(run: str, task: str) -> str:
    return f"{run}/{task}"


def parse_id(value: str) -> tuple[str, str | None]:
    """``RUN/TASK`` -> (RUN, TASK); ``RUN`` -> (RUN, None): its only task."""
    value = value.strip()
    if not value or value.count("/") > 1 or value.startswith("/") or value.endswith("/"):
        raise BadInput(f"SESSION: {value!r} is not a session id (RUN/TASK, or RUN for `swarm run`)")
    run, _, task = value.partition("/")
    return run, task or None


async def resolve(r: Any, value: str) -> tuple[str, str]:
    """The (run, task) a session id names; a clear error when there is no such session."""
    run, task = parse_id(value)
    k = Keys(run)
    if not await r.exists(k.meta):
        raise BadInput(f"SESSION: no run {run!r} in this directory's .swarm/ (or REDIS_URL)")
    if task is None:
        tasks = await r.lrange(k.tasks, 0, -1)
        if len(tasks) != 1:
            raise BadInput(
                f"SESSION: run {run!r} has {len(tasks)} tasks; name one as {run}/TASK "
                f"({', '.join(tasks[:10])})"
            )
        task = tasks[0]
    if not await r.exists(k.task(task)):
        raise BadInput(f"SESSION: run {run!r} has no task {task!r}")
    return run, task


async def _rows(r: Any, pairs: list[tuple[str, str, int]]) -> list[SessionRow]:
    """Rows for (run, task, updated_ms), read in one pipeline."""
    pipe = r.pipeline(transaction=False)
    for run, task, _ in pairs:
        k = Keys(run)
        pipe.hmget(k.task(task), "title", "status", "assignee", "agent")
        pipe.llen(k.session(task))
        pipe.hmget(k.meta, "kind", "repo")
    res = await pipe.execute()
    rows: list[SessionRow] = []
    agents: dict[str, str] = {}
    for i, (run, task, updated) in enumerate(pairs):
        (title, status, assignee, agent), n, (kind, repo) = res[3 * i : 3 * i + 3]
        who = assignee or agent or ""
        rows.append(
            SessionRow(
                id=session_id(run, task),
                run=run,
                task=task,
                kind=kind or KIND_SWARM,
                title=title or "",
                status=status or "",
                agent=who,
                messages=int(n),
                updated_ms=updated,
                repo=repo or "",
            )
        )
        if who:
            agents[f"{run}\0{who}"] = ""
    if agents:  # the model each session's agent uses
        pipe = r.pipeline(transaction=False)
        keys = list(agents)
        for key in keys:
            run, who = key.split("\0")
            pipe.hget(Keys(run).agent(who), "model")
        for key, model in zip(keys, await pipe.execute(), strict=True):
            agents[key] = model or ""
        for row in rows:
            row.model = agents.get(f"{row.run}\0{row.agent}", "")
    return rows


async def list_sessions(r: Any, run: str | None = None, limit: int = 50) -> list[SessionRow]:
    """The most recently updated sessions first (``limit`` <= 0: all). With ``run``: that
    run's sessions, in task order."""
    if run is not None:
        k = Keys(run)
        if not await r.exists(k.meta):
            raise BadInput(f"--run: no run {run!r} in this directory's .swarm/ (or REDIS_URL)")
        tasks = await r.lrange(k.tasks, 0, -1)
        ids = [session_id(run, t) for t in tasks]
        scores = await r.zmscore(SESSIONS, ids) if ids else []
        pairs = [(run, t, int(s)) for t, s in zip(tasks, scores, strict=True) if s is not None]
        rows = await _rows(r, pairs)
        return rows[:limit] if limit > 0 else rows
    entries = await r.zrevrange(SESSIONS, 0, (limit - 1) if limit > 0 else -1, withscores=True)
    pairs = []
    for member, score in entries:
        run_id, _, task = member.partition("/")
        pairs.append((run_id, task, int(score)))
    return await _rows(r, pairs)


async def load_session(r: Any, value: str) -> SessionView:
    run, task = await resolve(r, value)
    k = Keys(run)
    score = await r.zscore(SESSIONS, session_id(run, task))
    (row,) = await _rows(r, [(run, task, int(score or 0))])
    h = await r.hmget(k.task(task), "result", "error")
    raw = await r.lrange(k.session(task), 0, -1)
    usage = {f: float(v) for f, v in (await r.hgetall(k.usage_of("task", task))).items()}
    return SessionView(
        row=row,
        result=h[0] or "",
        error=h[1] or "",
        messages=[json.loads(m) for m in raw],
        usage=usage,
    )


async def delete_session(r: Any, value: str) -> str:
    """Delete a session. A ``swarm run`` session is its run: the whole run goes. A task of
    a swarm keeps its task (and the run's report); only its conversation goes."""
    run, task = await resolve(r, value)
    k = Keys(run)
    meta = await r.hmget(k.meta, "kind", "state", "repo")
    kind, state, repo = meta
    if state == "running":
        holder = await r.exists(k.coordinator)
        if holder:
            raise BadInput(f"SESSION: run {run!r} is running; stop it first (swarm stop {run})")
    sid = session_id(run, task)
    if kind == KIND_RUN:
        keys: list[str] = []
        async for key in r.scan_iter(match=f"{k.prefix}:*", count=1000):  # one run's keys
            keys.append(key)
        pipe = r.pipeline(transaction=True)
        if keys:
            pipe.delete(*keys)
        pipe.zrem(RUNS, run)
        pipe.zrem(SESSIONS, sid)
        if repo and await r.hget(LAST_RUN, repo_key(repo)) == sid:
            pipe.hdel(LAST_RUN, repo_key(repo))
        await pipe.execute()
        return f"deleted session {sid} (the swarm run and its {len(keys)} keys)"
    pipe = r.pipeline(transaction=True)
    pipe.delete(k.session(task))
    pipe.zrem(SESSIONS, sid)
    await pipe.execute()
    return f"deleted session {sid} (the conversation; task {task} of run {run} stays)"


def repo_key(repo: str) -> str:
    return hashlib.sha256(repo.encode()).hexdigest()[:32]


async def remember_last(r: Any, repo: str, sid: str) -> None:
    await r.hset(LAST_RUN, repo_key(repo), sid)


async def last_for_repo(r: Any, repo: str) -> str | None:
    sid = await r.hget(LAST_RUN, repo_key(repo))
    if sid and await r.exists(Keys(parse_id(sid)[0]).meta):
        return str(sid)
    return None


# -- rendering ---------------------------------------------------------------------------


def _fold(text: str, width: int = _FOLD) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


def _call_line(block: dict[str, Any]) -> str:
    args = json.dumps(block.get("input", {}), ensure_ascii=False)
    return f"→ {block.get('name', '?')} {_fold(args)}"


def _result_line(block: dict[str, Any]) -> str:
    content = str(block.get("content", ""))
    lines = content.count("\n") + 1 if content else 0
    mark = "✗" if block.get("is_error") else "←"
    return f"  {mark} {_fold(content)}" + (f"  [{lines} lines]" if lines > 1 else "")


def render_text(view: SessionView) -> str:
    """The conversation, readable: text in full, tool calls and results folded to a line."""
    row = view.row
    out = [
        f"session {row.id} ({row.kind}) · {row.status} · agent {row.agent} {row.model}".rstrip(),
        f"task: {row.title}" + (f" · repo {row.repo}" if row.repo else ""),
        "",
    ]
    for msg in view.messages:
        role = msg.get("role", "")
        texts, calls, results = _blocks(msg)
        if role == "user" and texts and not results:
            out.append("> " + "\n> ".join("\n".join(texts).splitlines() or [""]))
        else:
            out += texts
        out += [_call_line(c) for c in calls]
        out += [_result_line(b) for b in results]
        out.append("")
    if view.error:
        out.append(f"failed: {view.error}")
    u = view.usage
    if u:
        out.append(
            f"usage: {int(u.get('input_tokens', 0)):,} input + {int(u.get('output_tokens', 0)):,} "
            f"output tokens, {int(u.get('turns', 0))} turns, ${u.get('usd', 0.0):.4f}"
        )
    return "\n".join(out).rstrip() + "\n"


def _blocks(msg: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    texts, calls, results = [], [], []
    for b in msg.get("content", []):
        kind = b.get("type")
        if kind == "text" and b.get("text", "").strip():
            texts.append(b["text"].strip())
        elif kind == "tool_call":
            calls.append(b)
        elif kind == "tool_result":
            results.append(b)
    return texts, calls, results


def render_md(view: SessionView) -> str:
    """Markdown: each message under its role; tool calls and results in <details>."""
    row = view.row
    out = [
        f"# Session {row.id}",
        "",
        f"- kind: {row.kind}",
        f"- task: {row.title}",
        f"- status: {row.status}",
        f"- agent: {row.agent} ({row.model})",
    ]
    if row.repo:
        out.append(f"- repository: `{row.repo}`")
    out.append("")
    for msg in view.messages:
        texts, calls, results = _blocks(msg)
        out.append(f"## {msg.get('role', '')}")
        out.append("")
        out += [t + "\n" for t in texts]
        for c in calls:
            args = json.dumps(c.get("input", {}), indent=1, ensure_ascii=False)
            out += [
                f"<details><summary>tool call: {c.get('name')}</summary>",
                "",
                "```json",
                args,
                "```",
                "</details>",
                "",
            ]
        for b in results:
            label = "tool error" if b.get("is_error") else "tool result"
            content = str(b.get("content", "")).replace("```", "ʼʼʼ")
            out += [
                f"<details><summary>{label}</summary>",
                "",
                "```",
                content,
                "```",
                "</details>",
                "",
            ]
    if view.error:
        out += [f"**Failed:** {view.error}", ""]
    return "\n".join(out).rstrip() + "\n"


def render_json(view: SessionView) -> str:
    return json.dumps(
        {
            **view.row.model_dump(),
            "result": view.result,
            "error": view.error,
            "usage": view.usage,
            "messages": view.messages,
        },
        indent=1,
        ensure_ascii=False,
    )
