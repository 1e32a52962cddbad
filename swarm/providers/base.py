"""The provider interface every adapter implements, and the one error type they raise."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Protocol

from swarm.providers.types import Message, ModelResponse, RequestOptions, ToolSpec, Usage


class ProviderError(Exception):
    """A provider failure, classified once so the single retry layer can decide.

    ``usage``: what the failed attempt cost, when it failed after the provider did the work
    (a stream broken half way); None when nothing was processed as far as we know. It may
    be an estimate (see docs/architecture.md, "Budget"), and is counted in the budget."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        provider: str = "",
        kind: str = "",
        usage: Usage | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.provider = provider
        # "context_exceeded": the request did not fit the model's context window (never
        # retried as it is: the agent loop compacts the conversation first)
        self.kind = kind or ("context_exceeded" if is_context_overflow(status, message) else "")
        if self.kind == "context_exceeded":
            self.retryable = False
        self.usage = usage  # what a failed attempt is known to have cost (a broken stream)


# How each provider words "the prompt does not fit" (HTTP 400s): Anthropic's "prompt is
# too long" and "input length and `max_tokens` exceed context limit", OpenAI's
# context_length_exceeded / "maximum context length", Mistral's "too large for model".
_OVERFLOW_WORDS = (
    "prompt is too long",
    "exceed context limit",
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "too large for model",
    "reduce the length of the messages",
)


def is_context_overflow(status: int | None, text: str) -> bool:
    if status not in (None, 400, 413):
        return False
    lowered = text.lower()
    return any(word in lowered for word in _OVERFLOW_WORDS)


def estimate_tokens(chars: int) -> int:
    """About 4 characters a token: the estimate the budget and rate limits use before a
    request, and for a broken stream whose usage never arrived."""
    return chars // 4 + 1 if chars > 0 else 0


#: Where the model's text goes as it arrives (`swarm run` prints it); None: nowhere. A
#: context variable, so one process's agents each stream to their own sink, or none.
TEXT_SINK: ContextVar[Callable[[str], None] | None] = ContextVar("swarm_text_sink", default=None)


def stream_text(piece: str | None) -> None:
    """A piece of the model's reply text, as the stream delivers it."""
    sink = TEXT_SINK.get()
    if sink is not None and piece:
        sink(piece)


class Provider(Protocol):
    name: str

    async def complete(
        self,
        *,
        model: str,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
        options: RequestOptions | None = None,
    ) -> ModelResponse:
        """One model turn. Raises ProviderError; never retries by itself."""
        ...

    async def aclose(self) -> None: ...


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures the SDKs let through unwrapped (e.g. a connection dropped in
    the middle of a stream): httpx's, and httpx2's, which the current SDKs use."""
    import httpx

    errors: list[type[BaseException]] = [httpx.TransportError]
    try:
        import httpx2

        errors.append(httpx2.TransportError)
    except ImportError:
        pass
    return tuple(errors)


TRANSPORT_ERRORS = _transport_errors()

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


def retry_after_from_headers(headers: object) -> float | None:
    """retry-after-ms, then retry-after (seconds), as the providers send them."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    ms = get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    s = get("retry-after")
    if s:
        try:
            return float(s)
        except ValueError:
            return None
    return None


def classify_status(status: int, headers: object) -> bool:
    get = getattr(headers, "get", None)
    should = get("x-should-retry") if get else None
    if should == "true":
        return True
    if should == "false":
        return False
    return status in RETRYABLE_STATUS or status >= 500
