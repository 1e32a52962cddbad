"""Keeping a conversation inside the model's context window: the view the model is sent,
pruning old tool output, and compaction into a summary (see docs/context.md).

The session in Redis is the whole transcript, append-only. What the model sees is a view
of it, fixed by three numbers stored in the task's hash in the same transaction as the
turn that changed them (so a resumed or taken-over task sees the same view):
``ctx_start`` (the session index of the latest compaction message, where the view
begins), ``ctx_pruned`` (tool results answering turns up to this number are
placeholders) and ``ctx_turns`` (turns before the view's start).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from swarm.providers.types import Block, Message, TextBlock, ToolCall, ToolResult

# Said in the request that asks for a summary, so the scripted server (and a reader of
# the request log) can tell it apart from a turn of the task.
COMPACT_MARKER = "[swarm: context compaction]"
COMPACT_PROMPT = (
    f"{COMPACT_MARKER} This conversation is about to be shortened to fit the context "
    "window. Write the summary you will continue from: the task, what you have done so far "
    "(with file paths), what you found out, what is left to do, and anything you must not "
    "forget. Reply with the summary only; do not call any tools."
)
# How the view after a compaction begins; the number lets a reader (and the scripted
# server) count the turns before it.
COMPACTED_HEADER = "[Conversation compacted after {turns} turns to fit the context window.]"
PRUNED_NOTE = (
    "[output pruned to keep the conversation in the context window: {what} returned "
    "{size} characters here; call the tool again if you need them]"
)
PRUNED_PREFIX = PRUNED_NOTE.split(":", 1)[0]
SMALL_RESULT_CHARS = 300  # results this short are kept: a placeholder would not be shorter
WRITE_TOOLS = ("write", "edit", "multiedit")


@dataclass(frozen=True)
class ContextPolicy:
    """Token limits for one agent's model (all in tokens)."""

    window: int
    max_output: int
    prune_at: float = 0.5
    compact_at: float = 0.85
    keep_turns: int = 3
    max_turn_tool_chars: int = 60_000

    @property
    def usable(self) -> int:
        """What a request may hold: the window less the reply and a safety margin (the
        size of a request is estimated between turns)."""
        return self.window - self.max_output - max(256, self.window // 50)

    @property
    def prune_limit(self) -> int:
        return int(self.usable * self.prune_at)

    @property
    def compact_limit(self) -> int:
        return int(self.usable * self.compact_at)

    @property
    def prune_step(self) -> int:
        """The least a prune must free to be worth the cache it costs."""
        return max((self.compact_limit - self.prune_limit) // 2, 1)


@dataclass
class SizeMeter:
    """Tokens of a request from its size in characters, calibrated on the provider's own
    count of the last prompt (input + cache reads + cache writes)."""

    tokens_per_char: float = 0.3  # before any usage is known: about 3.3 characters a token

    def observe(self, chars: int, prompt_tokens: int) -> None:
        if chars > 0 and prompt_tokens > 0:
            self.tokens_per_char = max(prompt_tokens / chars, 0.05)

    def tokens(self, chars: int) -> int:
        return int(chars * self.tokens_per_char) + 1


def msg_chars(message: Message) -> int:
    return len(message.model_dump_json())


@dataclass
class Conversation:
    """The view the model is sent, and where it sits in the stored session."""

    messages: list[Message]
    turns_before: int = 0  # assistant turns before messages[0] (compacted away)
    pruned: int = 0  # tool results of turns up to this number are placeholders
    chars: int = field(default=0)

    def __post_init__(self) -> None:
        self.chars = sum(msg_chars(m) for m in self.messages)

    def append(self, message: Message) -> None:
        self.messages.append(message)
        self.chars += msg_chars(message)

    @property
    def turns(self) -> int:
        return self.turns_before + sum(1 for m in self.messages if m.role == "assistant")

    def replace(self, messages: list[Message]) -> None:
        self.messages = messages
        self.chars = sum(msg_chars(m) for m in messages)


def build_view(session: list[Message], start: int, pruned: int, turns_before: int) -> list[Message]:
    """The stored view: the session from its latest compaction, old tool output pruned."""
    return apply_prune(session[start:], pruned, turns_before)


def apply_prune(messages: list[Message], pruned: int, turns_before: int) -> list[Message]:
    """Tool results answering turns up to ``pruned`` replaced by placeholders (the same
    text every time, so the prompt cache holds after the first request)."""
    if pruned <= turns_before:
        return messages
    out: list[Message] = []
    turn = turns_before
    calls: dict[str, ToolCall] = {}
    for m in messages:
        if m.role == "assistant":
            turn += 1
            calls = {c.id: c for c in m.tool_calls}
            out.append(m)
            continue
        if turn > pruned or not m.tool_results:
            out.append(m)
            continue
        blocks: list[Block] = []
        changed = False
        for b in m.content:
            if (
                isinstance(b, ToolResult)
                and len(b.content) > SMALL_RESULT_CHARS
                and not b.content.startswith(PRUNED_PREFIX)
            ):
                blocks.append(_placeholder(b, calls.get(b.tool_call_id)))
                changed = True
            else:
                blocks.append(b)
        out.append(Message(role=m.role, content=blocks) if changed else m)
    return out


def _placeholder(result: ToolResult, call: ToolCall | None) -> ToolResult:
    what = "this tool call"
    if call is not None:
        args = json.dumps(call.input, ensure_ascii=False, sort_keys=True)
        what = f"{call.name} {args[:200]}"
    text = PRUNED_NOTE.format(what=what, size=len(result.content))
    return ToolResult(tool_call_id=result.tool_call_id, content=text, is_error=result.is_error)


def prune_point(convo: Conversation, keep_turns: int) -> int:
    """The turn number up to which a prune now would replace tool output."""
    return max(convo.turns - keep_turns, convo.pruned)


def prunable_chars(convo: Conversation, upto: int) -> int:
    """Characters a prune up to turn ``upto`` would remove from the view."""
    before = convo.chars
    after = sum(msg_chars(m) for m in apply_prune(convo.messages, upto, convo.turns_before))
    return before - after


def summary_request(messages: list[Message]) -> list[Message]:
    """The view with the request for a summary added to its last user message (a copy):
    everything before it is the same prefix the last turn sent, so the cache holds."""
    if messages and messages[-1].role == "user":
        last = messages[-1]
        extra: list[Block] = [TextBlock(text=COMPACT_PROMPT)]
        return [*messages[:-1], Message(role="user", content=[*last.content, *extra])]
    return [*messages, Message.user_text(COMPACT_PROMPT)]


def shrink(messages: list[Message], turns_before: int, fits: Any) -> list[Message]:
    """A view small enough for ``fits(messages)`` to hold, for the summary request of a
    conversation that no longer fits: every old tool output pruned, then the oldest
    turns after the first message dropped."""
    turns = turns_before + sum(1 for m in messages if m.role == "assistant")
    out = apply_prune(messages, turns - 1, turns_before)
    while not fits(out) and len(out) > 3:
        # drop the oldest (assistant, user) pair after the opening user message
        cut = 1
        while cut < len(out) and out[cut].role != "assistant":
            cut += 1
        end = cut + 1
        while end < len(out) and out[end].role != "assistant":
            end += 1
        if end >= len(out):
            break
        out = [out[0], *out[end:]] if cut == 1 else [*out[:cut], *out[end:]]
    return out


def files_written(messages: list[Message]) -> list[str]:
    """Paths the conversation's write, edit and multiedit calls named, in order."""
    seen: list[str] = []
    for m in messages:
        for c in m.tool_calls:
            path = c.input.get("file_path")
            if c.name in WRITE_TOOLS and isinstance(path, str) and path not in seen:
                seen.append(path)
    return seen


def fallback_summary(messages: list[Message]) -> str:
    """A summary without the model (it could not write one): the tool calls made."""
    lines = []
    for m in messages:
        for c in m.tool_calls:
            args = json.dumps(c.input, ensure_ascii=False, sort_keys=True)[:150]
            lines.append(f"- {c.name} {args}")
    return "The tool calls made so far (no summary could be written):\n" + "\n".join(lines[-60:])


def compacted_message(task_prompt: str, summary: str, turns: int, files: list[str]) -> Message:
    """Where the conversation goes on from after a compaction: the task, the summary."""
    text = (
        f"{task_prompt.rstrip()}\n\n{COMPACTED_HEADER.format(turns=turns)}\n"
        f"Your summary of the work so far:\n\n{summary.strip()}\n"
    )
    if files:
        text += "\nFiles you changed so far: " + ", ".join(files) + "\n"
    text += "\nContinue the task from here (re-read any file you need)."
    return Message.user_text(text)


def cap_tool_output(texts: list[str], cap: int) -> list[str]:
    """The results of one turn cut to ``cap`` characters in all, shared fairly (a short
    result is kept whole; the long ones share the rest), each cut one saying so."""
    if sum(len(t) for t in texts) <= cap:
        return texts
    share = {i: len(t) for i, t in enumerate(texts)}
    left, open_ = cap, sorted(share, key=lambda i: share[i])
    allowed: dict[int, int] = {}
    while open_:
        fair = left // len(open_)
        i = open_[0]
        if share[i] <= fair:
            allowed[i] = share[i]
            left -= share[i]
            open_.pop(0)
            continue
        for j in open_:
            allowed[j] = fair
        break
    out = []
    for i, t in enumerate(texts):
        n = allowed[i]
        if n >= len(t):
            out.append(t)
            continue
        out.append(
            t[:n] + f"\n[cut: {n} of {len(t)} characters shown; one turn's tool output is limited "
            f"to {cap} characters in all. Get the rest in smaller pieces (read with offset "
            "and limit, a narrower grep, or a command piped to head/tail).]"
        )
    return out


def inbox_block(messages: list[dict[str, Any]], max_chars: int = 16_000) -> tuple[str, int]:
    """Unread inbox messages as text for the model, and how many it holds (the rest wait
    for the next turn)."""
    lines: list[str] = []
    used = 0
    for m in messages:
        line = f"From {m.get('from', '?')}: {m.get('body', '')}"
        if lines and used + len(line) > max_chars:
            break
        lines.append(line[:max_chars])
        used += len(line)
    if not lines:
        return "", 0
    head = f"[{len(lines)} new message(s) from other agents, now marked read]\n"
    return head + "\n".join(lines), len(lines)
