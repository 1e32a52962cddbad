"""Provider-neutral conversation types.

Every transcript is stored in Redis in this shape; each provider converts to and
from its own wire format at the edge.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolCall(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResult(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    content: str
    is_error: bool = False


class ThinkingBlock(BaseModel):
    """Anthropic extended thinking, kept byte for byte: the API requires the block (with
    its signature) back unchanged in the tool loop. Other providers never see it."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(BaseModel):
    """Thinking the provider encrypted; sent back as it came."""

    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


Block = Annotated[
    TextBlock | ToolCall | ToolResult | ThinkingBlock | RedactedThinkingBlock,
    Field(discriminator="type"),
]
THINKING_TYPES = (ThinkingBlock, RedactedThinkingBlock)


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: list[Block]

    @classmethod
    def user_text(cls, text: str) -> Message:
        return cls(role="user", content=[TextBlock(text=text)])

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [b for b in self.content if isinstance(b, ToolCall)]

    @property
    def tool_results(self) -> list[ToolResult]:
        return [b for b in self.content if isinstance(b, ToolResult)]

    @property
    def thinking(self) -> list[ThinkingBlock | RedactedThinkingBlock]:
        return [b for b in self.content if isinstance(b, THINKING_TYPES)]

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_creation_tokens=self.cache_creation_tokens + other.cache_creation_tokens,
        )


class ToolSpec(BaseModel):
    """A tool as offered to the model: name, description, JSON schema of its input."""

    name: str
    description: str
    input_schema: dict[str, Any]


# Why a reply ended, the same words for every provider:
# end_turn     the model finished (its text is the answer, or it called tools)
# tool_use     it stopped to have its tool calls run
# max_tokens   cut off at the output limit (its text or calls may be incomplete)
# refusal      declined, or a content filter stopped it: never a result
# context_exceeded  the prompt and the reply no longer fit the context window
# pause        the provider paused a long turn; send it back to continue
StopReason = Literal["end_turn", "tool_use", "max_tokens", "refusal", "context_exceeded", "pause"]
STOP_REASONS: frozenset[str] = frozenset(
    ("end_turn", "tool_use", "max_tokens", "refusal", "context_exceeded", "pause")
)


class RequestOptions(BaseModel):
    """Per-model request settings (config `models:` and agents' `model_settings`), as the
    provider adapters apply them; None leaves the provider's default."""

    model_config = ConfigDict(frozen=True)

    temperature: float | None = None
    thinking_budget: int | None = None  # Anthropic extended thinking, tokens
    reasoning_effort: str | None = None  # OpenAI reasoning models: minimal..high
    parallel_tool_calls: bool | None = None


class ModelResponse(BaseModel):
    message: Message
    usage: Usage
    stop_reason: StopReason | None = None
    model: str = ""
    raw_stop_reason: str | None = None  # the provider's own word, for events and errors
