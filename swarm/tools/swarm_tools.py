"""Tools that act on the blackboard: tasks, messages along topology edges, shared notes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from swarm.blackboard.board import Blackboard
from swarm.tools.base import Tool, ToolContext, ToolOutput

# What the blackboard holds for agents is bounded, and the model is told the bounds.
MAX_NOTE_CHARS = 16_000
MAX_NOTES = 500
MAX_MESSAGE_CHARS = 8_000
MAX_INBOX = 200


@dataclass
class SwarmHandle:
    """What swarm tools need: the board, who is calling, and whom they may talk to."""

    board: Blackboard
    agent: str
    role: str
    task_id: str = ""
    neighbours: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    failed_reason: str | None = None


def _handle(ctx: ToolContext) -> SwarmHandle | None:
    return ctx.swarm if isinstance(ctx.swarm, SwarmHandle) else None


NO_SWARM = ToolOutput.error("This tool only works inside a running swarm.")


class TaskList(Tool):
    name = "task_list"
    read_only = True
    description = "List the swarm's tasks with status, assignee and dependencies."

    class Params(BaseModel):
        status: Literal["pending", "ready", "claimed", "completed", "failed"] | None = None
        role: str | None = None

    async def run(self, params: TaskList.Params, ctx: ToolContext) -> ToolOutput:
        h = _handle(ctx)
        if h is None:
            return NO_SWARM
        rows = []
        for t in await h.board.tasks():
            if params.status and t.status != params.status:
                continue
            if params.role and t.role != params.role:
                continue
            who = t.agent or f"role:{t.role}"
            line = f"{t.id} [{t.status}] {t.title} ({who}"
            line += f", by {t.assignee})" if t.assignee else ")"
            if t.needs:
                line += f" needs: {', '.join(t.needs)}"
            rows.append(line)
        return ToolOutput("\n".join(rows) if rows else "No tasks match.")


class TaskCreate(Tool):
    name = "task_create"
    description = (
        "Add a task to the swarm for exactly one of role or agent, after the tasks in needs."
    )

    class Params(BaseModel):
        title: str
        description: str
        role: str | None = None
        agent: str | None = None
        needs: list[str] = Field(default_factory=list)

    async def run(self, params: TaskCreate.Params, ctx: ToolContext) -> ToolOutput:
        h = _handle(ctx)
        if h is None:
            return NO_SWARM
        if (params.role is None) == (params.agent is None):
            return ToolOutput.error("Give exactly one of role or agent.")
        if params.role is not None and params.role not in h.roles:
            return ToolOutput.error(f"Unknown role {params.role!r}. Roles: {', '.join(h.roles)}")
        if params.agent is not None and params.agent not in h.agents:
            return ToolOutput.error(
                f"Unknown agent {params.agent!r}. Agents: {', '.join(h.agents)}"
            )
        known = set(await h.board.task_ids())
        unknown = [n for n in params.needs if n not in known]
        if unknown:
            return ToolOutput.error(f"Unknown task ids in needs: {', '.join(unknown)}")
        base = re.sub(r"[^a-z0-9]+", "-", params.title.lower()).strip("-")[:40] or "task"
        task_id, n = base, 1
        while task_id in known:
            n += 1
            task_id = f"{base}-{n}"
        current = await h.board.task(h.task_id) if h.task_id else None
        created = await h.board.create_task(
            {
                "id": task_id,
                "title": params.title,
                "description": params.description,
                "role": params.role or "",
                "agent": params.agent or "",
                "phase": current.phase if current else "",
                "created_by": h.agent,
                "max_attempts": 3,
            },
            needs=params.needs,
        )
        if not created:
            return ToolOutput.error(f"Task id {task_id} was taken concurrently; try again.")
        return ToolOutput(f"Created task {task_id}.", meta={"task": task_id})


class TaskFail(Tool):
    name = "task_fail"
    description = "Give up on your current task: it ends as failed, with the reason."

    class Params(BaseModel):
        reason: str

    async def run(self, params: TaskFail.Params, ctx: ToolContext) -> ToolOutput:
        h = _handle(ctx)
        if h is None:
            return NO_SWARM
        h.failed_reason = params.reason
        return ToolOutput(f"Task {h.task_id} will be marked failed: {params.reason}")


class SendMessage(Tool):
    name = "send_message"
    description = (
        "Send a message to one of the agents you can message "
        f"(an inbox holds {MAX_INBOX} unread messages)."
    )

    class Params(BaseModel):
        to: str
        body: str = Field(max_length=MAX_MESSAGE_CHARS)

    async def run(self, params: SendMessage.Params, ctx: ToolContext) -> ToolOutput:
        h = _handle(ctx)
        if h is None:
            return NO_SWARM
        if params.to not in h.neighbours:
            allowed = ", ".join(h.neighbours) or "none"
            return ToolOutput.error(
                f"{params.to!r} is not your neighbour in the topology. You can message: {allowed}"
            )
        if await h.board.inbox_size(params.to) >= MAX_INBOX:
            return ToolOutput.error(
                f"{params.to}'s inbox is full ({MAX_INBOX} unread messages); write a note "
                "instead, or try again later"
            )
        await h.board.send(h.agent, params.to, params.body)
        return ToolOutput(f"Sent to {params.to}.")


class ReadInbox(Tool):
    name = "read_inbox"
    description = "Read (and clear) the messages other agents sent you."

    class Params(BaseModel):
        pass

    async def run(self, params: ReadInbox.Params, ctx: ToolContext) -> ToolOutput:
        h = _handle(ctx)
        if h is None:
            return NO_SWARM
        msgs = await h.board.drain_inbox(h.agent)
        if not msgs:
            return ToolOutput("Inbox is empty.")
        return ToolOutput("\n".join(f"from {m['from']}: {m['body']}" for m in msgs))


class NoteWrite(Tool):
    name = "note_write"
    description = (
        "Write a shared note (key/value) that every agent in the swarm can read "
        f"(at most {MAX_NOTES} notes)."
    )

    class Params(BaseModel):
        key: str = Field(min_length=1, max_length=200)
        value: str = Field(max_length=MAX_NOTE_CHARS)

    async def run(self, params: NoteWrite.Params, ctx: ToolContext) -> ToolOutput:
        h = _handle(ctx)
        if h is None:
            return NO_SWARM
        notes = await h.board.notes()
        if params.key not in notes and len(notes) >= MAX_NOTES:
            return ToolOutput.error(
                f"the swarm already has {MAX_NOTES} notes; overwrite one of them "
                "(note_read lists the keys)"
            )
        await h.board.note_write(params.key, params.value, h.agent)
        return ToolOutput(f"Note {params.key!r} saved.")


class NoteRead(Tool):
    name = "note_read"
    read_only = True
    description = "Read one shared note by key, or all notes when key is omitted."

    class Params(BaseModel):
        key: str | None = None

    async def run(self, params: NoteRead.Params, ctx: ToolContext) -> ToolOutput:
        h = _handle(ctx)
        if h is None:
            return NO_SWARM
        notes = await h.board.notes()
        if params.key is not None:
            if params.key not in notes:
                keys = ", ".join(sorted(notes)) or "none"
                return ToolOutput.error(f"No note {params.key!r}. Keys: {keys}")
            return ToolOutput(notes[params.key])
        if not notes:
            return ToolOutput("No notes yet.")
        return ToolOutput(json.dumps(notes, indent=1, ensure_ascii=False))


SWARM_TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        TaskList(),
        TaskCreate(),
        TaskFail(),
        SendMessage(),
        ReadInbox(),
        NoteWrite(),
        NoteRead(),
    )
}
