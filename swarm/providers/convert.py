"""Neutral transcript <-> Chat Completions wire shapes, shared by the OpenAI-style providers.

Also the one place where tool-call ids are made acceptable to the provider a transcript is
sent to, so a conversation started on one provider continues on another.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from swarm.providers.base import estimate_tokens, stream_text
from swarm.providers.types import (
    Block,
    Message,
    ModelResponse,
    StopReason,
    TextBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)

_ALNUM = string.ascii_letters + string.digits


@dataclass(frozen=True)
class IdRule:
    """What a provider accepts as a tool-call id, and how a foreign id is rewritten."""

    pattern: re.Pattern[str]
    prefix: str
    length: int  # characters after the prefix


_ANTHROPIC_RULE = IdRule(re.compile(r"[a-zA-Z0-9_-]{1,64}"), "toolu_", 24)
_OPENAI_RULE = IdRule(re.compile(r"[a-zA-Z0-9_-]{1,40}"), "call_", 24)
ID_RULES: dict[str, IdRule] = {
    "anthropic": _ANTHROPIC_RULE,
    "openai": _OPENAI_RULE,
    "copilot": _OPENAI_RULE,
    "mistral": IdRule(re.compile(r"[a-zA-Z0-9]{9}"), "", 9),
}


def _hashed_id(original: str, rule: IdRule, salt: int) -> str:
    seed = original if salt == 0 else f"{original}#{salt}"
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(rule.length):
        number, rest = divmod(number, len(_ALNUM))
        chars.append(_ALNUM[rest])
    return rule.prefix + "".join(chars)


def tool_id_map(messages: list[Message], provider: str) -> dict[str, str]:
    """original id -> id valid for `provider`, for every id the transcript mentions.

    Valid ids map to themselves; others to a hash of the original (deterministic, so the
    same transcript always gets the same ids), avoiding ids already in use.
    """
    rule = ID_RULES.get(provider)
    if rule is None:
        return {}
    ids: list[str] = []
    for m in messages:
        for b in m.content:
            if isinstance(b, ToolCall):
                ids.append(b.id)
            elif isinstance(b, ToolResult):
                ids.append(b.tool_call_id)
    mapping = {i: i for i in ids if rule.pattern.fullmatch(i)}
    used = set(mapping)
    for original in ids:
        if original in mapping:
            continue
        salt = 0
        new = _hashed_id(original, rule, salt)
        while new in used:
            salt += 1
            new = _hashed_id(original, rule, salt)
        mapping[original] = new
        used.add(new)
    return mapping


def normalize_tool_ids(messages: list[Message], provider: str) -> list[Message]:
    """The transcript with every tool-call id (calls and results alike) valid for `provider`.

    Messages whose ids are already valid are returned as they are (same objects).
    """
    mapping = tool_id_map(messages, provider)
    if all(k == v for k, v in mapping.items()):
        return messages
    out: list[Message] = []
    for m in messages:
        if not any(_renamed(b, mapping) for b in m.content):
            out.append(m)
            continue
        blocks: list[Block] = []
        for b in m.content:
            if isinstance(b, ToolCall):
                blocks.append(b.model_copy(update={"id": mapping[b.id]}))
            elif isinstance(b, ToolResult):
                blocks.append(b.model_copy(update={"tool_call_id": mapping[b.tool_call_id]}))
            else:
                blocks.append(b)
        out.append(Message(role=m.role, content=blocks))
    return out


def _renamed(block: Block, mapping: dict[str, str]) -> bool:
    if isinstance(block, ToolCall):
        return mapping[block.id] != block.id
    if isinstance(block, ToolResult):
        return mapping[block.tool_call_id] != block.tool_call_id
    return False


# --- neutral -> Chat Completions -------------------------------------------------------


def chat_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": t.input_schema,
            },
        }
        for t in tools
    ]


def to_chat_messages(
    system: str, messages: list[Message], *, tool_names: bool = False
) -> list[dict[str, Any]]:
    """System first; assistant tool_calls; each ToolResult a `tool` message (before any user
    text of the same neutral message). `tool_names` adds the tool's name to tool messages
    (Mistral's shape)."""
    out: list[dict[str, Any]] = []
    if system:
        out.append(chat_system(system))
    names: dict[str, str] | None = {} if tool_names else None
    for m in messages:
        out.extend(chat_message(m, names=names))
        if names is not None and m.role == "assistant":
            names.update((c.id, c.name) for c in m.tool_calls)
    return out


def chat_system(system: str) -> dict[str, Any]:
    return {"role": "system", "content": system}


def chat_message(
    m: Message,
    ids: Mapping[str, str] | None = None,
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The Chat Completions messages of one neutral message. `ids` renames tool-call ids
    (as `normalize_tool_ids` would); `names` (id -> tool name of the calls before) adds the
    tool's name to tool messages."""
    if m.role == "assistant":
        return [_assistant(m, ids)]
    out: list[dict[str, Any]] = []
    for r in m.tool_results:
        call_id = ids.get(r.tool_call_id, r.tool_call_id) if ids else r.tool_call_id
        tool: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": _result_text(r)}
        if names is not None and call_id in names:
            tool["name"] = names[call_id]
        out.append(tool)
    texts = [b.text for b in m.content if isinstance(b, TextBlock) and b.text]
    if texts:
        content: Any = texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts]
        out.append({"role": "user", "content": content})
    elif not out:
        out.append({"role": "user", "content": "(empty)"})
    return out


def _assistant(m: Message, ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": m.text or None}
    if m.tool_calls:
        msg["tool_calls"] = [
            {
                "id": ids.get(c.id, c.id) if ids else c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.input, ensure_ascii=False)},
            }
            for c in m.tool_calls
        ]
    elif not m.text:
        msg["content"] = "(empty)"
    return msg


def _result_text(r: ToolResult) -> str:
    text = r.content or "(no output)"
    return f"Error: {text}" if r.is_error else text


# --- request bodies built once per message ----------------------------------------------

# The request JSON exactly as the openai SDK serializes a body (`openapi_dumps`).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def wire_json(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def _message_ids(m: Message) -> list[str]:
    return [
        b.id if isinstance(b, ToolCall) else b.tool_call_id
        for b in m.content
        if isinstance(b, ToolCall | ToolResult)
    ]


class _IdMap:
    """`tool_id_map` built message by message: appending messages gives the same mapping
    as computing it over the whole transcript, unless an appended valid id equals an id
    already invented for an earlier one (then `extend` says so and the caller starts over)."""

    def __init__(self, rule: IdRule) -> None:
        self.rule = rule
        self.mapping: dict[str, str] = {}
        self.used: set[str] = set()
        self.invented: set[str] = set()

    def extend(self, messages: Sequence[Message]) -> bool:
        ids = [i for m in messages for i in _message_ids(m) if i not in self.mapping]
        valid = [i for i in ids if self.rule.pattern.fullmatch(i)]
        if not self.invented.isdisjoint(valid):
            return False
        for i in valid:
            self.mapping[i] = i
        self.used.update(valid)
        for original in ids:
            if original in self.mapping:
                continue
            salt = 0
            new = _hashed_id(original, self.rule, salt)
            while new in self.used:
                salt += 1
                new = _hashed_id(original, self.rule, salt)
            self.mapping[original] = new
            self.used.add(new)
            self.invented.add(new)
        return True


WireConvert = Callable[[Message, Mapping[str, str] | None], list[dict[str, Any]]]


@dataclass
class WireEntry:
    message: Message
    dicts: list[dict[str, Any]]  # its wire messages (never modified once built)
    json: bytes  # the same, serialized and comma-separated
    renamed: tuple[tuple[str, str], ...]  # (original, sent) for each rewritten tool-call id


class TranscriptCache:
    """The wire form of one growing transcript, each neutral message converted (by
    `convert`, given the tool-call id renames) and serialized once.

    The agent loop sends the same list every turn with messages appended. Messages are
    matched by identity (`is`) from the start; from the first mismatch on (a message
    replaced, removed, or another transcript) they are converted again. Tool-call ids are
    normalized for `provider` exactly as `normalize_tool_ids` does over the whole
    transcript. Messages are treated as immutable once sent (nothing in swarm edits one
    in place).
    """

    def __init__(self, provider: str, convert: WireConvert) -> None:
        self.rule = ID_RULES.get(provider)
        self.convert = convert
        self._entries: list[WireEntry] = []
        self._ids: _IdMap | None = _IdMap(self.rule) if self.rule else None

    def first(self) -> Message | None:
        return self._entries[0].message if self._entries else None

    def update(self, messages: Sequence[Message]) -> list[WireEntry]:
        """One entry per message of `messages`, in order (the returned list is the cache's
        own: read it, don't keep it)."""
        entries = self._entries
        same = 0
        limit = min(len(entries), len(messages))
        while same < limit and entries[same].message is messages[same]:
            same += 1
        if same < len(entries):
            del entries[same:]
            self._restart_ids(messages)
        elif self._ids is not None and not self._ids.extend(messages[same:]):
            self._restart_ids(messages)
        ids = self._ids.mapping if self._ids is not None else None
        for m in messages[len(entries) :]:
            renamed = tuple((i, ids[i]) for i in _message_ids(m) if ids[i] != i) if ids else ()
            dicts = self.convert(m, ids if renamed else None)
            entries.append(WireEntry(m, dicts, b",".join(wire_json(d) for d in dicts), renamed))
        return entries

    def _restart_ids(self, messages: Sequence[Message]) -> None:
        """Map the whole transcript's ids afresh; keep the entries whose ids still map
        as they did."""
        if self.rule is None:
            return
        self._ids = _IdMap(self.rule)
        self._ids.extend(messages)
        mapping = self._ids.mapping
        keep = 0
        for e in self._entries:
            if any(mapping[o] != sent for o, sent in e.renamed):
                break
            keep += 1
        del self._entries[keep:]


class ChatTranscriptCache(TranscriptCache):
    """The serialized Chat Completions `messages` of one growing transcript: equal to
    `wire_json(to_chat_messages(system, normalize_tool_ids(messages, provider)))`."""

    def __init__(self, provider: str) -> None:
        super().__init__(provider, chat_message)
        self._system: tuple[str, bytes] = ("", b"")

    def messages_json(self, system: str, messages: Sequence[Message]) -> bytes:
        """The JSON array of the request's messages, system prompt first."""
        if system != self._system[0]:
            self._system = (system, wire_json(chat_system(system)) if system else b"")
        parts = [e.json for e in self.update(messages)]
        if self._system[1]:
            parts.insert(0, self._system[1])
        return b"[" + b",".join(parts) + b"]"


_CacheT = TypeVar("_CacheT", bound=TranscriptCache)


class TranscriptCaches(Generic[_CacheT]):
    """A provider's transcript caches: the one holding a conversation (known by the
    identity of its first message), else the least recently used one, started over. An
    agent has one conversation at a time (one provider each); the second slot keeps a
    provider shared by two from converting everything on every call."""

    def __init__(self, make: Callable[[], _CacheT], size: int = 2) -> None:
        self.make = make
        self.size = size
        self.caches: list[_CacheT] = []

    def get(self, messages: Sequence[Message]) -> _CacheT:
        first = messages[0] if messages else None
        found = next((c for c in self.caches if c.first() is first), None)
        if found is not None:
            self.caches.remove(found)
        elif len(self.caches) >= self.size:
            found = self.caches.pop(0)
        else:
            found = self.make()
        self.caches.append(found)
        return found


class ToolsCache:
    """The serialized tool definitions, rebuilt only when the list holds other ToolSpecs
    (`convert` turns the list into its wire form)."""

    def __init__(self, convert: Callable[[list[ToolSpec]], Any]) -> None:
        self.convert = convert
        self._tools: tuple[ToolSpec, ...] = ()
        self._json = wire_json(convert([]))

    def tools_json(self, tools: Sequence[ToolSpec]) -> bytes:
        if len(tools) != len(self._tools) or any(
            a is not b for a, b in zip(tools, self._tools, strict=True)
        ):
            self._json = wire_json(self.convert(list(tools)))
            self._tools = tuple(tools)
        return self._json


# --- Chat Completions stream -> neutral ------------------------------------------------

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "model_length": "context_exceeded",  # Mistral: the context window is full
    "content_filter": "refusal",
}


def parse_arguments(raw: str | dict[str, Any] | None) -> dict[str, Any]:
    """Tool-call arguments as a dict; unparseable JSON is kept so the tool layer can say so."""
    if isinstance(raw, dict):
        return raw
    if not raw or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_unparsed_arguments": raw}
    return value if isinstance(value, dict) else {"_unparsed_arguments": raw}


def chat_usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
) -> Usage:
    """Chat usage counts cached and cache-written tokens inside prompt_tokens; the neutral
    Usage (like Anthropic's) counts them apart."""
    return Usage(
        input_tokens=max(0, prompt_tokens - cached_tokens - cache_write_tokens),
        output_tokens=completion_tokens,
        cache_read_tokens=cached_tokens,
        cache_creation_tokens=cache_write_tokens,
    )


@dataclass
class _Slot:
    id: str = ""
    name: str = ""
    arguments: str = ""
    parsed: dict[str, Any] | None = None


@dataclass
class ChatAccumulator:
    """Collects a streamed assistant turn: text deltas, tool-call deltas by index, usage."""

    text: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    slots: dict[int, _Slot] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""
    began: bool = False  # the response began: the provider is doing the work

    def add_text(self, piece: str | None) -> None:
        if piece:
            self.text.append(piece)
            stream_text(piece)

    def add_refusal(self, piece: str | None) -> None:
        if piece:
            self.refusal.append(piece)

    def add_tool_delta(
        self,
        index: int,
        call_id: str | None,
        name: str | None,
        arguments: str | dict[str, Any] | None,
    ) -> None:
        slot = self.slots.setdefault(index, _Slot())
        if call_id and not slot.id:
            slot.id = call_id
        if name:
            slot.name += name
        if isinstance(arguments, dict):  # sent whole, already parsed (Mistral)
            slot.parsed = arguments
        elif arguments:
            slot.arguments += arguments

    def finish(self, reason: str | None) -> None:
        if reason:
            self.finish_reason = reason

    @property
    def complete(self) -> bool:
        return self.finish_reason is not None

    def partial_usage(self, request_chars: int) -> Usage:
        """What a stream that broke after it opened cost. Chat streams report usage only
        at the end, so unless it arrived this is an estimate (4 characters a token): the
        request's size as uncached input (the provider read all of it; cached input would
        cost less) and what arrived as output."""
        if self.usage is not None:
            return self.usage
        chars = sum(len(t) for t in self.text)
        for s in self.slots.values():
            chars += len(s.name) + len(s.arguments)
            if s.parsed is not None:
                chars += len(json.dumps(s.parsed))
        return Usage(
            input_tokens=estimate_tokens(request_chars), output_tokens=estimate_tokens(chars)
        )

    def response(self, model: str) -> ModelResponse:
        blocks: list[Block] = []
        text = "".join(self.text)
        refusal = "".join(self.refusal)
        if text or refusal:
            blocks.append(TextBlock(text=text or refusal))
        for index in sorted(self.slots):
            s = self.slots[index]
            args = s.parsed if s.parsed is not None else parse_arguments(s.arguments)
            call_id = s.id or _hashed_id(f"{model}|{text}|{index}|{s.name}", _OPENAI_RULE, 0)
            blocks.append(ToolCall(id=call_id, name=s.name, input=args))
        reason = self.finish_reason
        stop = FINISH_REASONS.get(reason) if reason else None
        if stop == "end_turn" and self.slots:  # some servers say "stop" after tool calls
            stop = "tool_use"
        if refusal:  # OpenAI's `refusal` field: the model declined
            stop = "refusal"
        return ModelResponse(
            message=Message(role="assistant", content=blocks),
            usage=self.usage or Usage(),
            stop_reason=stop,
            raw_stop_reason=reason,
            model=self.model or model,
        )
