"""Every provider adapter through its real SDK against the local stub: turns, tools, usage,
cost, every retryable fault recovered by the one retry layer, non-retryable errors at once."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import pytest

from swarm.errors import BadInput
from swarm.llmstub import RecordedRequest, StubScript, StubServer
from swarm.providers.anthropic_provider import AnthropicProvider
from swarm.providers.base import Provider, ProviderError
from swarm.providers.copilot_provider import COPILOT_BASE_URL, CopilotProvider
from swarm.providers.mistral_provider import MistralProvider
from swarm.providers.openai_provider import OpenAIProvider
from swarm.providers.pricing import cost_usd
from swarm.providers.registry import (
    DEFAULT_BASE_URL_ENV,
    DEFAULT_KEY_ENV,
    describe_models,
    make_provider,
    settings_for,
)
from swarm.providers.retry import RetryPolicy, with_retries
from swarm.providers.types import Message, ModelResponse, ToolResult, ToolSpec, Usage

SECRET = "sk-provider-test-secret-4242"
PROVIDERS = ["anthropic", "openai", "mistral", "copilot"]
MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "openai": "gpt-5",
    "mistral": "mistral-large-latest",
    "copilot": "gpt-5",
}
ID_PATTERNS = {
    "anthropic": r"toolu_[A-Za-z0-9]{24}",
    "openai": r"call_[A-Za-z0-9]{24}",
    "mistral": r"[A-Za-z0-9]{9}",
    "copilot": r"call_[A-Za-z0-9]{24}",
}
FAST = RetryPolicy(max_attempts=8, base_delay_s=0.001, max_delay_s=0.5, max_total_s=30)

PLAIN_USAGE = {
    "input_tokens": 11,
    "output_tokens": 5,
    "cache_read_tokens": 3,
    "cache_creation_tokens": 2,
}
# Mistral reports no cache writes: the stub's prompt_tokens (11 + 3 + 2) minus the cached 3.
EXPECTED_PLAIN_USAGE = {
    "anthropic": Usage(**PLAIN_USAGE),
    "openai": Usage(**PLAIN_USAGE),
    "copilot": Usage(**PLAIN_USAGE),
    "mistral": Usage(input_tokens=13, output_tokens=5, cache_read_tokens=3),
}
# USD per 1M tokens from genai-prices' data (pricing.py); gpt-5 and mistral-large have no
# cache-write rate and mistral-large no cache-read rate either: those tokens bill as input.
EXPECTED_PLAIN_COST = {
    "anthropic": (11 * 3.0 + 5 * 15.0 + 3 * 0.3 + 2 * 3.75) / 1e6,
    "openai": (11 * 1.25 + 5 * 10.0 + 3 * 0.125 + 2 * 1.25) / 1e6,
    "copilot": 0.0,  # paid by subscription: pricing.py charges Copilot turns $0
    "mistral": (13 * 2.0 + 5 * 6.0 + 3 * 2.0) / 1e6,
}
FAULTS: dict[str, dict[str, Any]] = {
    "429": {"status": 429, "retry_after_ms": 50},
    "529": {"status": 529},
    "500": {"status": 500},
    "drop": {"kind": "drop"},
    "stream_error": {"kind": "stream_error"},
}
FAULT_STATUS = {"429": 429, "529": 529, "500": 500, "drop": None, "stream_error": None}

SCRIPT: dict[str, Any] = {
    "conversations": [
        {
            "task": "plain",
            "turns": [
                {
                    "text": "Hello from the provider layer.",
                    "usage": PLAIN_USAGE,
                    "expect": {"tools_include": ["read", "grep", "edit", "bash"]},
                }
            ],
        },
        {
            "task": "one-tool",
            "turns": [
                {"tool_calls": [{"name": "read", "input": {"file_path": "calc.py"}}]},
                {
                    "text": "calc.py defines add.",
                    "expect": {"last_tool_result_contains": "def add"},
                },
            ],
        },
        {
            "task": "parallel",
            "turns": [
                {
                    "text": "Reading both files.",
                    "tool_calls": [
                        {"name": "read", "input": {"file_path": "a.py", "limit": 200}},
                        {"name": "grep", "input": {"pattern": "def ", "path": "src/pkg"}},
                    ],
                },
                {"text": "Both done.", "expect": {"last_tool_result_contains": "b-result"}},
            ],
        },
        {
            "task": "fix-bug",
            "turns": [
                {
                    "text": "I'll read the file first.",
                    "tool_calls": [{"name": "read", "input": {"file_path": "calc.py"}}],
                    "usage": {"input_tokens": 100, "output_tokens": 10},
                },
                {
                    "tool_calls": [
                        {
                            "name": "edit",
                            "input": {
                                "file_path": "calc.py",
                                "old_string": "a - b",
                                "new_string": "a + b",
                            },
                        }
                    ],
                    "expect": {"last_tool_result_contains": "def add"},
                    "usage": {"input_tokens": 200, "output_tokens": 20},
                },
                {
                    "tool_calls": [{"name": "bash", "input": {"command": "pytest -q"}}],
                    "expect": {"last_tool_result_contains": "edited"},
                    "usage": {"input_tokens": 300, "output_tokens": 30},
                },
                {
                    "text": "Fixed: add() now adds.",
                    "expect": {"last_tool_result_contains": "passed"},
                    "usage": {"input_tokens": 400, "output_tokens": 40},
                },
            ],
        },
        *[
            {"task": f"fault-{name}", "turns": [{"text": "Recovered.", "faults": [fault]}]}
            for name, fault in FAULTS.items()
        ],
        {
            "task": "fault-all",
            "turns": [{"text": "Recovered after every fault.", "faults": list(FAULTS.values())}],
        },
    ]
}

TOOLS = [
    ToolSpec(
        name="read",
        description="Read a file",
        input_schema={
            "type": "object",
            "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["file_path"],
        },
    ),
    ToolSpec(
        name="grep",
        description="Search file contents",
        input_schema={
            "type": "object",
            "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
            "required": ["pattern"],
        },
    ),
    ToolSpec(
        name="edit",
        description="Replace a string in a file",
        input_schema={
            "type": "object",
            "properties": {
                "file_path": {"type": "string"},
                "old_string": {"type": "string"},
                "new_string": {"type": "string"},
            },
        },
    ),
    ToolSpec(
        name="bash",
        description="Run a command",
        input_schema={"type": "object", "properties": {"command": {"type": "string"}}},
    ),
]

each_provider = pytest.mark.parametrize("provider", PROVIDERS)
# The SDK warns that the priced Anthropic models are deprecated; the stub does not care.
pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def server() -> Iterator[StubServer]:
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        yield stub


def build(provider: str, server: StubServer, key: str | None = SECRET) -> Provider:
    base = server.base_url
    if provider == "anthropic":
        if key is not None:
            return AnthropicProvider(api_key=key, base_url=base)
        keyless = AnthropicProvider(api_key="unused", base_url=base)
        keyless.client = anthropic.AsyncAnthropic(
            api_key=None,
            auth_token=None,
            base_url=base,
            max_retries=0,
            default_headers={"Authorization": anthropic.Omit()},  # type: ignore[dict-item]
        )
        return keyless
    if provider == "openai":
        return OpenAIProvider(api_key=key, base_url=f"{base}/v1")
    if provider == "mistral":
        return MistralProvider(api_key=key, base_url=base)
    return CopilotProvider(token=key, base_url=f"{base}/v1")


@pytest.fixture
async def make(server: StubServer) -> AsyncIterator[Callable[..., Provider]]:
    made: list[Provider] = []

    def factory(provider: str, key: str | None = SECRET) -> Provider:
        p = build(provider, server, key)
        made.append(p)
        return p

    yield factory
    for p in made:
        await p.aclose()


def system_for(agent: str) -> str:
    return f"You are a careful engineer.\nAgent: {agent}\n"


async def ask(
    p: Provider,
    provider: str,
    agent: str,
    messages: list[Message],
    policy: RetryPolicy = FAST,
    delays: list[tuple[ProviderError, float]] | None = None,
) -> tuple[ModelResponse, int]:
    async def on_retry(attempt: int, exc: ProviderError, delay: float) -> None:
        if delays is not None:
            delays.append((exc, delay))

    return await with_retries(
        lambda: p.complete(
            model=MODELS[provider],
            system=system_for(agent),
            messages=messages,
            tools=TOOLS,
            max_tokens=512,
        ),
        policy,
        on_retry,
    )


def requests_of(server: StubServer, agent: str) -> list[RecordedRequest]:
    return [r for r in server.requests if r.agent == agent]


def results(resp: ModelResponse, texts: list[str]) -> Message:
    calls = resp.message.tool_calls
    assert len(calls) == len(texts)
    return Message(
        role="user",
        content=[
            ToolResult(tool_call_id=c.id, content=t) for c, t in zip(calls, texts, strict=True)
        ],
    )


# --- turns ---------------------------------------------------------------------------------


@each_provider
async def test_plain_text_usage_and_cost(
    server: StubServer, make: Callable[..., Provider], provider: str
) -> None:
    agent = f"{provider}-plain"
    resp, attempts = await ask(
        make(provider), provider, agent, [Message.user_text("Task plain: hi")]
    )
    assert attempts == 1
    assert resp.message.role == "assistant"
    assert resp.message.text == "Hello from the provider layer."
    assert resp.message.tool_calls == []
    assert resp.stop_reason == "end_turn"
    assert resp.model == MODELS[provider]
    assert resp.usage == EXPECTED_PLAIN_USAGE[provider]
    cost = cost_usd(f"{provider}/{MODELS[provider]}", resp.usage)
    assert cost == pytest.approx(EXPECTED_PLAIN_COST[provider])
    [req] = requests_of(server, agent)
    assert req.status == 200 and req.body["stream"] is True


@each_provider
async def test_one_tool_call_then_answer(
    server: StubServer, make: Callable[..., Provider], provider: str
) -> None:
    p, agent = make(provider), f"{provider}-one-tool"
    messages = [Message.user_text("Task one-tool: what is in calc.py?")]
    first, _ = await ask(p, provider, agent, messages)
    [call] = first.message.tool_calls
    assert (call.name, call.input) == ("read", {"file_path": "calc.py"})
    assert re.fullmatch(ID_PATTERNS[provider], call.id)
    assert first.stop_reason == "tool_use"
    messages += [first.message, results(first, ["def add(a, b):\n    return a - b\n"])]
    second, _ = await ask(p, provider, agent, messages)
    assert second.message.text == "calc.py defines add."
    assert second.stop_reason == "end_turn"
    assert [r.status for r in requests_of(server, agent)] == [200, 200]


@each_provider
async def test_parallel_tool_calls_in_one_turn(
    server: StubServer, make: Callable[..., Provider], provider: str
) -> None:
    p, agent = make(provider), f"{provider}-parallel"
    messages = [Message.user_text("Task parallel: read both")]
    first, _ = await ask(p, provider, agent, messages)
    assert first.message.text == "Reading both files."
    calls = first.message.tool_calls
    assert [(c.name, c.input) for c in calls] == [
        ("read", {"file_path": "a.py", "limit": 200}),
        ("grep", {"pattern": "def ", "path": "src/pkg"}),
    ]
    assert len({c.id for c in calls}) == 2
    messages += [first.message, results(first, ["a-result", "b-result"])]
    second, _ = await ask(p, provider, agent, messages)
    assert second.message.text == "Both done."
    last = requests_of(server, agent)[-1]
    assert last.status == 200
    if provider != "anthropic":  # one `tool` message per result, answering its call's id
        tool_msgs = [m for m in last.body["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_msgs] == [c.id for c in calls]


@each_provider
async def test_multi_turn_conversation_with_tool_results(
    server: StubServer, make: Callable[..., Provider], provider: str
) -> None:
    p, agent = make(provider), f"{provider}-fixer"
    messages = [Message.user_text("Task fix-bug: add() subtracts")]
    outputs = ["def add(a, b): return a - b", "edited calc.py", "3 passed in 0.01s"]
    total = Usage()
    for turn, output in enumerate([*outputs, None]):
        resp, _ = await ask(p, provider, agent, messages)
        total = total + resp.usage
        messages.append(resp.message)
        if output is None:
            assert resp.message.text == "Fixed: add() now adds."
            assert resp.message.tool_calls == []
            break
        assert len(resp.message.tool_calls) == 1, turn
        messages.append(results(resp, [output]))
    assert [c.name for m in messages for c in m.tool_calls] == ["read", "edit", "bash"]
    assert total.input_tokens == 1000 and total.output_tokens == 100
    assert [r.turn for r in requests_of(server, agent)] == [0, 1, 2, 3]


# --- faults and errors ----------------------------------------------------------------------


@each_provider
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_retryable_fault_is_recovered(
    server: StubServer, make: Callable[..., Provider], provider: str, fault: str
) -> None:
    agent = f"{provider}-fault-{fault}"
    delays: list[tuple[ProviderError, float]] = []
    resp, attempts = await ask(
        make(provider),
        provider,
        agent,
        [Message.user_text(f"Task fault-{fault}: go")],
        delays=delays,
    )
    assert resp.message.text == "Recovered."
    assert attempts == 2
    [(exc, delay)] = delays
    assert exc.retryable and exc.status == FAULT_STATUS[fault]
    assert exc.provider == provider and str(exc).startswith(f"{provider}: ")
    assert SECRET not in str(exc)
    if fault == "429":
        assert exc.retry_after_s == pytest.approx(0.05)
        assert delay >= 0.05
    reqs = requests_of(server, agent)
    assert len(reqs) == 2 and reqs[-1].status == 200 and reqs[-1].fault is None
    assert reqs[0].fault == ("http" if FAULT_STATUS[fault] else fault)


@each_provider
async def test_every_fault_in_a_row_is_recovered(
    server: StubServer, make: Callable[..., Provider], provider: str
) -> None:
    agent = f"{provider}-fault-all"
    delays: list[tuple[ProviderError, float]] = []
    resp, attempts = await ask(
        make(provider), provider, agent, [Message.user_text("Task fault-all: go")], delays=delays
    )
    assert resp.message.text == "Recovered after every fault."
    assert attempts == len(FAULTS) + 1
    assert [exc.status for exc, _ in delays] == list(FAULT_STATUS.values())
    # The partial text streamed before the stream error is not part of the answer.
    assert resp.message.content[0].text == "Recovered after every fault."  # type: ignore[union-attr]


@each_provider
async def test_bad_request_surfaces_at_once(
    server: StubServer, make: Callable[..., Provider], provider: str
) -> None:
    agent = f"{provider}-strict"
    with pytest.raises(ProviderError) as info:
        await ask(make(provider), provider, agent, [Message.user_text("Task nothing: go")])
    exc = info.value
    assert exc.status == 400 and not exc.retryable
    assert str(exc).startswith(f"{provider}: HTTP 400: stub: no conversation for agent ")
    assert SECRET not in str(exc)
    assert len(requests_of(server, agent)) == 1


@each_provider
async def test_missing_key_is_401_at_once(
    server: StubServer,
    make: Callable[..., Provider],
    provider: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for env in (DEFAULT_KEY_ENV[provider], "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    before = len(server.requests)
    with pytest.raises(ProviderError) as info:
        await ask(
            make(provider, key=None), provider, "nokey", [Message.user_text("Task plain: hi")]
        )
    exc = info.value
    assert exc.status == 401 and not exc.retryable
    assert str(exc).startswith(f"{provider}: HTTP 401: ")
    [req] = server.requests.snapshot()[before:]  # refused before the script is consulted
    assert req.status == 401
    assert "authorization" not in req.headers and "x-api-key" not in req.headers


# --- copilot, registry ----------------------------------------------------------------------


async def test_copilot_sends_its_headers(server: StubServer, make: Callable[..., Provider]) -> None:
    await ask(make("copilot"), "copilot", "copilot-headers", [Message.user_text("Task plain: hi")])
    [req] = requests_of(server, "copilot-headers")
    h = req.headers
    assert req.provider == "openai" and req.path == "/v1/chat/completions"
    assert h["editor-version"].startswith("vscode/")
    assert h["editor-plugin-version"].startswith("copilot-chat/")
    assert h["copilot-integration-id"] == "vscode-chat"
    assert h["user-agent"].startswith("GitHubCopilotChat/")
    assert h["openai-intent"] == "conversation-panel"
    assert h["authorization"] == "<redacted>"  # a bearer token was sent
    assert "max_tokens" in req.body and "max_completion_tokens" not in req.body


async def test_copilot_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_COPILOT_TOKEN", SECRET)
    monkeypatch.delenv("COPILOT_BASE_URL", raising=False)
    p = make_provider(settings_for("copilot"))
    assert isinstance(p, CopilotProvider)
    assert str(p.client.base_url).rstrip("/") == COPILOT_BASE_URL
    await p.aclose()


@each_provider
async def test_registry_builds_each_provider_from_the_environment(
    server: StubServer, provider: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = server.base_url if provider in ("anthropic", "mistral") else f"{server.base_url}/v1"
    monkeypatch.setenv(DEFAULT_KEY_ENV[provider], SECRET)
    monkeypatch.setenv(DEFAULT_BASE_URL_ENV[provider], base)
    p = make_provider(settings_for(provider))
    try:
        assert p.name == provider
        resp, _ = await ask(
            p, provider, f"{provider}-registry", [Message.user_text("Task plain: x")]
        )
        assert resp.message.text == "Hello from the provider layer."
    finally:
        await p.aclose()


async def test_registry_requires_a_key_except_for_a_local_openai_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for provider in PROVIDERS:
        monkeypatch.delenv(DEFAULT_KEY_ENV[provider], raising=False)
        monkeypatch.delenv(DEFAULT_BASE_URL_ENV[provider], raising=False)
        with pytest.raises(BadInput, match=DEFAULT_KEY_ENV[provider]):
            make_provider(settings_for(provider))
    local = settings_for("openai", {"openai": {"base_url": "http://127.0.0.1:11434/v1"}})
    assert not local.key_required
    keyless = make_provider(local)
    assert isinstance(keyless, OpenAIProvider)
    assert keyless.max_tokens_param == "max_tokens"  # what compatible servers understand
    await keyless.aclose()
    with pytest.raises(BadInput, match="unknown provider 'nope'"):
        settings_for("nope")


def test_describe_models_never_shows_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/")
    rows = describe_models({"mistral": {"api_key_env": "MY_MISTRAL_KEY"}})
    by = {r["provider"]: r for r in rows}
    assert list(by) == PROVIDERS
    assert by["openai"]["key_present"] is True and by["openai"]["base_url"] == "default"
    assert by["mistral"]["key_env"] == "MY_MISTRAL_KEY" and by["mistral"]["key_present"] is False
    assert by["anthropic"]["base_url"] == "http://127.0.0.1:9/"
    assert "claude-sonnet-4-5" in by["anthropic"]["models"]
    assert "gpt-5" in by["openai"]["models"]
    assert all(r["implemented"] for r in rows)
    assert SECRET[:6] not in repr(rows)
