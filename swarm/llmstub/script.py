"""The stub's script: pydantic models, loading, and conversation/turn matching.

A script lists conversations (optionally keyed by agent and task) and, for each,
the assistant turns to serve in order. See the package docstring for the YAML format.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from swarm.errors import BadInput

DEFAULT_AGENT_PATTERN = r"Agent: (?P<agent>[A-Za-z0-9_.-]+)"
DEFAULT_TASK_PATTERN = r"Task (?P<task>[A-Za-z0-9_.-]+):"
# swarm's context compaction (swarm.context): the request asking for a summary, and the
# header of the message a compacted conversation goes on from
DEFAULT_COMPACT_PATTERN = r"\[swarm: context compaction\]"
DEFAULT_COMPACTED_PATTERN = r"\[Conversation compacted after (?P<turns>[0-9]+) turns"


class ScriptError(BadInput, ValueError):
    """A script file that cannot be read or does not validate; the message names file and field.

    A `BadInput` (CLI exit code 2) so `swarm stub serve` reports it like a config error.
    """


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchSpec(_Strict):
    """Regexes that extract the agent (from the system prompt) and task (from the first user message)."""

    agent: str = DEFAULT_AGENT_PATTERN
    task: str = DEFAULT_TASK_PATTERN
    compact: str = DEFAULT_COMPACT_PATTERN  # in the last user text: a summary request
    compacted: str = DEFAULT_COMPACTED_PATTERN  # in the first user text: turns before

    @field_validator("compact")
    @classmethod
    def _compact_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("compacted")
    @classmethod
    def _compacted_compiles(cls, value: str) -> str:
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        if "turns" not in pattern.groupindex:
            raise ValueError("the pattern needs a named group (?P<turns>...)")
        return value

    def is_summary_request(self, last_user_text: str | None) -> bool:
        return bool(last_user_text) and re.search(self.compact, last_user_text or "") is not None

    def turns_before(self, first_user_text: str | None) -> int:
        """Turns a compacted conversation had before its first message (0 if none)."""
        found = re.search(self.compacted, first_user_text or "")
        return int(found.group("turns")) if found else 0

    @field_validator("agent", "task")
    @classmethod
    def _compiles(cls, value: str, info: ValidationInfo) -> str:
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        if info.field_name not in pattern.groupindex:
            raise ValueError(f"the pattern needs a named group (?P<{info.field_name}>...)")
        return value

    def extract(self, field: Literal["agent", "task"], text: str | None) -> str | None:
        if not text:
            return None
        found = re.search(getattr(self, field), text)
        return found.group(field) if found else None


class ToolCallSpec(_Strict):
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


class UsageSpec(_Strict):
    """Scripted usage; a missing input/output count is estimated (chars / 4)."""

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_creation_tokens: int = Field(default=0, ge=0)


class Expect(_Strict):
    """Assertions on the incoming request; a failed one is answered with HTTP 400."""

    last_tool_result_contains: str | None = None
    last_user_text_contains: str | None = None
    system_contains: str | None = None
    tools_include: list[str] = Field(default_factory=list)
    model: str | None = None


class Fault(_Strict):
    """One injected failure, served instead of the answer on one attempt of a turn."""

    # overflow: HTTP 400 in the provider's "prompt is too long" shape
    kind: Literal["http", "drop", "stream_error", "overflow"] = "http"
    status: int | None = Field(default=None, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    retry_after_ms: int | None = Field(default=None, ge=0)
    message: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Fault:
        if self.kind == "http" and self.status is None:
            raise ValueError("an http fault needs a status (e.g. 429, 500, 529)")
        if self.kind == "overflow":
            return self
        if self.kind != "http" and self.status is not None:
            raise ValueError(f"a {self.kind!r} fault takes no status")
        return self


class Turn(_Strict):
    text: str | None = None
    tool_calls: list[ToolCallSpec] = Field(default_factory=list)
    # Anthropic extended thinking before the answer (a signature is made up if omitted);
    # the Chat formats leave it out
    thinking: str | None = None
    signature: str | None = None
    redacted_thinking: str | None = None
    refusal: str | None = None  # the model declines with this text
    stop_reason: Literal["max_tokens", "pause"] | None = None  # a cut-off or paused reply
    usage: UsageSpec | None = None
    delay_s: float = Field(default=0.0, ge=0)
    chunk_delay_s: float = Field(default=0.0, ge=0)
    expect: Expect | None = None
    faults: list[Fault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _says_something(self) -> Turn:
        if self.text is None and not self.tool_calls and self.refusal is None:
            raise ValueError("a turn needs text and/or tool_calls (or a refusal)")
        return self


class Conversation(_Strict):
    agent: str | None = None
    task: str | None = None
    turns: list[Turn] = Field(min_length=1)
    summary: str | None = None  # the answer to a compaction's summary request

    @property
    def label(self) -> str:
        return f"{self.agent or '*'}/{self.task or '*'}"

    def specificity(self) -> int:
        # agent-specific beats task-specific; both beats either.
        return (2 if self.agent is not None else 0) + (1 if self.task is not None else 0)

    def matches(self, agent: str | None, task: str | None) -> bool:
        return (self.agent is None or self.agent == agent) and (
            self.task is None or self.task == task
        )


class StubScript(_Strict):
    match: MatchSpec = Field(default_factory=MatchSpec)
    # A model's context window in tokens: a request whose size (JSON characters / 4) plus
    # its max_tokens is larger gets the provider's "prompt is too long" error
    context_window: int | None = Field(default=None, ge=256)
    # Model the providers' prompt caches (swarm.llmstub.cache): unscripted usage is split
    # into cache reads, cache writes and uncached input
    prompt_cache: bool = False
    conversations: list[Conversation] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_keys(self) -> StubScript:
        seen: dict[tuple[str | None, str | None], int] = {}
        for index, conv in enumerate(self.conversations):
            key = (conv.agent, conv.task)
            if key in seen:
                raise ValueError(
                    f"conversations[{index}] ({conv.label}) duplicates conversations[{seen[key]}]"
                )
            seen[key] = index
        return self

    def find(self, agent: str | None, task: str | None) -> tuple[int, Conversation] | None:
        """The most specific conversation for (agent, task); file order breaks ties."""
        best: tuple[int, Conversation] | None = None
        for index, conv in enumerate(self.conversations):
            if conv.matches(agent, task) and (
                best is None or conv.specificity() > best[1].specificity()
            ):
                best = (index, conv)
        return best

    def describe(self) -> str:
        return ", ".join(conv.label for conv in self.conversations)


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = [f"{source}: invalid stub script ({exc.error_count()} error(s))"]
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "\n".join(lines)


def parse_script(data: Any, source: str = "<script>") -> StubScript:
    """Validate already-parsed YAML/JSON data; raises ScriptError naming source and field."""
    try:
        return StubScript.model_validate(data)
    except ValidationError as exc:
        raise ScriptError(format_validation_error(source, exc)) from exc


def load_script(path: Path | str) -> StubScript:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptError(f"{path}: cannot read stub script: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScriptError(f"{path}: not valid YAML: {exc}") from exc
    return parse_script(data, str(path))
