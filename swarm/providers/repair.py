"""Transcript repair: every request and every resume sends a well-formed conversation."""

from __future__ import annotations

from swarm.providers.types import Message, ToolResult

INTERRUPTED = "interrupted: the agent stopped before this tool call finished; its effect is unknown"


def repair(messages: list[Message]) -> list[Message]:
    """Answer tool calls left without a result (synthetic error) and drop orphan results."""
    out: list[Message] = []
    for i, msg in enumerate(messages):
        if msg.role == "user":
            prev_ids = (
                {c.id for c in out[-1].tool_calls} if out and out[-1].role == "assistant" else set()
            )
            blocks = [
                b
                for b in msg.content
                if not isinstance(b, ToolResult) or b.tool_call_id in prev_ids
            ]
            answered = {b.tool_call_id for b in blocks if isinstance(b, ToolResult)}
            missing = [
                ToolResult(tool_call_id=c, content=INTERRUPTED, is_error=True)
                for c in sorted(prev_ids - answered)
            ]
            answers = [b for b in blocks if isinstance(b, ToolResult)]
            blocks = answers + missing + [b for b in blocks if not isinstance(b, ToolResult)]
            if blocks and out and out[-1].role == "user":  # two user turns in a row (a
                # message added after stored tool results, e.g. `swarm run --session`)
                out[-1] = Message(role="user", content=[*out[-1].content, *blocks])
            elif blocks:
                out.append(Message(role="user", content=blocks))
            continue
        if out and out[-1].role == "assistant":  # two assistant turns in a row
            out.append(_interrupted_results(out[-1]) or Message.user_text("(continue)"))
        out.append(msg)
        if i == len(messages) - 1 and msg.tool_calls:
            results = _interrupted_results(msg)
            if results:
                out.append(results)
    return out


def _interrupted_results(msg: Message) -> Message | None:
    calls = msg.tool_calls
    if not calls:
        return None
    return Message(
        role="user",
        content=[ToolResult(tool_call_id=c.id, content=INTERRUPTED, is_error=True) for c in calls],
    )
