"""The stub driven end to end by the official anthropic, openai and mistralai SDKs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx2
import openai
import pytest
import yaml
from mistralai.client import Mistral
from mistralai.client.errors import MistralError, SDKError
from mistralai.client.utils import BackoffStrategy, RetryConfig

from swarm.llmstub import StubScript, StubServer

SECRET = "sk-very-secret-key-123"

SCRIPT: dict[str, Any] = {
    "conversations": [
        {
            "agent": "coder",
            "task": "plain",
            "turns": [
                {
                    "text": "Hello from the stub, a scripted reply.",
                    "usage": {
                        "input_tokens": 11,
                        "output_tokens": 5,
                        "cache_read_tokens": 3,
                        "cache_creation_tokens": 2,
                    },
                }
            ],
        },
        {
            "agent": "coder",
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
            "agent": "coder",
            "task": "parallel",
            "turns": [
                {
                    "text": "Reading both files.",
                    "tool_calls": [
                        {"name": "read", "input": {"file_path": "a.py"}},
                        {"name": "grep", "input": {"pattern": "def ", "path": "."}},
                    ],
                },
                {"text": "Both done.", "expect": {"last_tool_result_contains": "b-result"}},
            ],
        },
        {
            "agent": "fixer",
            "task": "fix-bug",
            "turns": [
                {
                    "text": "I'll read the file first.",
                    "tool_calls": [{"name": "read", "input": {"file_path": "calc.py"}}],
                },
                {
                    "tool_calls": [
                        {
                            "name": "edit",
                            "input": {"file_path": "calc.py", "old": "a - b", "new": "a + b"},
                        }
                    ],
                    "expect": {"last_tool_result_contains": "def add"},
                },
                {
                    "tool_calls": [{"name": "bash", "input": {"command": "pytest -q"}}],
                    "expect": {"last_tool_result_contains": "edited"},
                },
                {
                    "text": "Fixed: add() now adds.",
                    "expect": {"last_tool_result_contains": "passed"},
                },
            ],
        },
        {
            "task": "faults",
            "turns": [
                {
                    "text": "Recovered after faults.",
                    "faults": [
                        {"status": 429, "retry_after": 1},
                        {"status": 529},
                        {"status": 500, "retry_after_ms": 1500},
                        {"kind": "drop"},
                        {"kind": "stream_error"},
                    ],
                }
            ],
        },
        {
            "task": "retry",
            "turns": [
                {
                    "text": "Recovered by SDK retries.",
                    "faults": [
                        {"status": 429, "retry_after_ms": 10},
                        {"status": 500, "retry_after_ms": 10},
                    ],
                }
            ],
        },
        {
            "task": "slow",
            "turns": [
                {"text": "one two three four five six seven eight nine", "chunk_delay_s": 0.02}
            ],
        },
    ]
}

TOOLS: list[tuple[str, str, dict[str, str]]] = [
    ("read", "Read a file", {"file_path": "string"}),
    ("grep", "Search", {"pattern": "string", "path": "string"}),
    ("edit", "Edit", {"file_path": "string", "old": "string", "new": "string"}),
    ("bash", "Run", {"command": "string"}),
]


def json_schema(props: dict[str, str]) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"type": v} for k, v in props.items()}}


ANTHROPIC_TOOLS = [
    {"name": name, "description": description, "input_schema": json_schema(props)}
    for name, description, props in TOOLS
]
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": json_schema(props),
        },
    }
    for name, description, props in TOOLS
]

ID_PATTERNS = {
    "anthropic": r"toolu_[A-Za-z0-9]{24}",
    "openai": r"call_[A-Za-z0-9]{24}",
    "mistral": r"[A-Za-z0-9]{9}",
}


@dataclass
class Call:
    id: str
    name: str
    input: dict[str, Any]


@dataclass
class Reply:
    text: str
    calls: list[Call]
    stop: str
    usage: dict[str, int]


@dataclass
class Chat:
    """A provider-neutral conversation driven through one official SDK."""

    provider: str
    server: StubServer
    agent: str
    task: str
    stream: bool = False
    history: list[tuple[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.history.append(("user", f"Task {self.task}: please help"))

    @property
    def system(self) -> str:
        return f"You are a careful engineer.\nAgent: {self.agent}\n"

    def ask(self, stream: bool | None = None) -> Reply:
        use_stream = self.stream if stream is None else stream
        reply = getattr(self, f"_ask_{self.provider}")(use_stream)
        self.history.append(("assistant", reply))
        return reply

    def answer(self, results: dict[str, str]) -> None:
        self.history.append(("results", results))

    # anthropic -------------------------------------------------------------------------

    def anthropic_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for kind, item in self.history:
            if kind == "user":
                messages.append({"role": "user", "content": item})
            elif kind == "assistant":
                blocks: list[dict[str, Any]] = (
                    [{"type": "text", "text": item.text}] if item.text else []
                )
                blocks += [
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": c.input}
                    for c in item.calls
                ]
                messages.append({"role": "assistant", "content": blocks})
            else:
                messages.append(
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": i, "content": text}
                            for i, text in item.items()
                        ],
                    }
                )
        return messages

    def _ask_anthropic(self, stream: bool) -> Reply:
        client = opened(
            anthropic.Anthropic(base_url=self.server.base_url, api_key=SECRET, max_retries=0)
        )
        kwargs: dict[str, Any] = {
            "model": "claude-stub",
            "max_tokens": 1024,
            "system": self.system,
            "messages": self.anthropic_messages(),
            "tools": ANTHROPIC_TOOLS,
        }
        if stream:
            with client.messages.stream(**kwargs) as events:
                message: Any = events.get_final_message()
        else:
            message = client.messages.create(**kwargs)
        usage = message.usage
        return Reply(
            text="".join(b.text for b in message.content if b.type == "text"),
            calls=[Call(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"],
            stop={"tool_use": "tool", "end_turn": "end"}[message.stop_reason],
            usage={
                "input": usage.input_tokens,
                "output": usage.output_tokens,
                "cache_read": usage.cache_read_input_tokens,
                "cache_creation": usage.cache_creation_input_tokens,
            },
        )

    # openai / mistral ------------------------------------------------------------------

    def chat_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system}]
        for kind, item in self.history:
            if kind == "user":
                messages.append({"role": "user", "content": item})
            elif kind == "assistant":
                message: dict[str, Any] = {"role": "assistant", "content": item.text or None}
                if item.calls:
                    message["tool_calls"] = [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.input)},
                        }
                        for c in item.calls
                    ]
                messages.append(message)
            else:
                messages += [
                    {"role": "tool", "tool_call_id": i, "content": text} for i, text in item.items()
                ]
        return messages

    def _ask_openai(self, stream: bool) -> Reply:
        client = opened(
            openai.OpenAI(base_url=f"{self.server.base_url}/v1", api_key=SECRET, max_retries=0)
        )
        kwargs: dict[str, Any] = {
            "model": "gpt-stub",
            "messages": self.chat_messages(),
            "tools": CHAT_TOOLS,
        }
        if not stream:
            completion = client.chat.completions.create(**kwargs)
            choice = completion.choices[0]
            assert completion.usage is not None
            return Reply(
                text=choice.message.content or "",
                calls=[
                    Call(c.id, c.function.name, json.loads(c.function.arguments))
                    for c in choice.message.tool_calls or []
                    if c.type == "function"
                ],
                stop={"tool_calls": "tool", "stop": "end"}[choice.finish_reason],
                usage=_chat_usage(completion.usage),
            )
        text, finish, usage = "", None, None
        calls: dict[int, dict[str, Any]] = {}
        for chunk in client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.usage is not None:
                usage = _chat_usage(chunk.usage)
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
                for tc in choice.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] = tc.id or slot["id"]
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
        assert usage is not None and finish is not None
        return Reply(
            text=text,
            calls=[
                Call(c["id"], c["name"], json.loads(c["arguments"]))
                for _, c in sorted(calls.items())
            ],
            stop={"tool_calls": "tool", "stop": "end"}[finish],
            usage=usage,
        )

    def _ask_mistral(self, stream: bool) -> Reply:
        client = opened(Mistral(api_key=SECRET, server_url=self.server.base_url))
        kwargs: dict[str, Any] = {
            "model": "mistral-stub",
            "messages": self.chat_messages(),
            "tools": CHAT_TOOLS,
        }
        if not stream:
            response = client.chat.complete(**kwargs)
            choice = response.choices[0]
            assert choice.message is not None
            content = choice.message.content
            return Reply(
                text=content if isinstance(content, str) else "",
                calls=[
                    Call(str(c.id), c.function.name, _arguments(c.function.arguments))
                    for c in choice.message.tool_calls or []
                ],
                stop={"tool_calls": "tool", "stop": "end"}[str(choice.finish_reason)],
                usage=_chat_usage(response.usage),
            )
        text, finish, usage = "", None, None
        calls: list[Call] = []
        for event in client.chat.stream(**kwargs):
            chunk = event.data
            if chunk.usage is not None:
                usage = _chat_usage(chunk.usage)
            for choice in chunk.choices:
                delta = choice.delta
                if isinstance(delta.content, str):
                    text += delta.content
                finish = choice.finish_reason or finish
                for tc in delta.tool_calls or []:
                    calls.append(
                        Call(str(tc.id), tc.function.name, _arguments(tc.function.arguments))
                    )
        assert usage is not None and finish is not None
        return Reply(text, calls, {"tool_calls": "tool", "stop": "end"}[str(finish)], usage)


def _arguments(arguments: Any) -> dict[str, Any]:
    return json.loads(arguments) if isinstance(arguments, str) else dict(arguments)


def _chat_usage(usage: Any) -> dict[str, int]:
    out = {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
    }
    details = getattr(usage, "prompt_tokens_details", None)
    if isinstance(details, dict):  # mistral: an extra field
        out["cached"] = details["cached_tokens"]
    elif details is not None:
        out["cached"] = details.cached_tokens
    return out


_OPEN_CLIENTS: list[Any] = []
C = TypeVar("C")


def opened(client: C) -> C:
    """Keep a sync SDK client until the module ends, then close it (no leaked sockets)."""
    _OPEN_CLIENTS.append(client)
    return client


@pytest.fixture(scope="module", autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _OPEN_CLIENTS:
        client = _OPEN_CLIENTS.pop()
        if isinstance(client, Mistral):
            client.__exit__(None, None, None)
        else:
            client.close()


PROVIDERS = ["anthropic", "openai", "mistral"]
EXPECTED_PLAIN_USAGE = {
    "anthropic": {"input": 11, "output": 5, "cache_read": 3, "cache_creation": 2},
    # prompt = input + cache_read + cache_creation; cached = cache_read
    "openai": {"prompt": 16, "completion": 5, "total": 21, "cached": 3},
    "mistral": {"prompt": 16, "completion": 5, "total": 21, "cached": 3},
}


@pytest.fixture(scope="module")
def record_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llmstub") / "requests.jsonl"


@pytest.fixture(scope="module")
def server(record_path: Path) -> Iterator[StubServer]:
    with StubServer(StubScript.model_validate(SCRIPT), record_path=record_path) as stub:
        yield stub


both_modes = pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
each_provider = pytest.mark.parametrize("provider", PROVIDERS)


@each_provider
@both_modes
def test_plain_text_with_scripted_usage(server: StubServer, provider: str, stream: bool) -> None:
    reply = Chat(provider, server, "coder", "plain", stream).ask()
    assert reply.text == "Hello from the stub, a scripted reply."
    assert reply.calls == [] and reply.stop == "end"
    assert reply.usage == EXPECTED_PLAIN_USAGE[provider]


@each_provider
@both_modes
def test_one_tool_call_then_answer(server: StubServer, provider: str, stream: bool) -> None:
    chat = Chat(provider, server, "coder", "one-tool", stream)
    first = chat.ask()
    assert first.stop == "tool" and first.text == ""
    assert [(c.name, c.input) for c in first.calls] == [("read", {"file_path": "calc.py"})]
    assert re.fullmatch(ID_PATTERNS[provider], first.calls[0].id)
    chat.answer({first.calls[0].id: "def add(a, b):\n    return a - b\n"})
    second = chat.ask()
    assert (second.text, second.calls, second.stop) == ("calc.py defines add.", [], "end")


@each_provider
@both_modes
def test_parallel_tool_calls(server: StubServer, provider: str, stream: bool) -> None:
    chat = Chat(provider, server, "coder", "parallel", stream)
    first = chat.ask()
    assert first.text == "Reading both files." and first.stop == "tool"
    assert [(c.name, c.input) for c in first.calls] == [
        ("read", {"file_path": "a.py"}),
        ("grep", {"pattern": "def ", "path": "."}),
    ]
    assert len({c.id for c in first.calls}) == 2
    chat.answer({first.calls[0].id: "a-result", first.calls[1].id: "b-result"})
    assert chat.ask().text == "Both done."


@each_provider
def test_multi_turn_conversation_with_tool_results(server: StubServer, provider: str) -> None:
    chat = Chat(provider, server, "fixer", "fix-bug")
    results = ["def add(a, b): return a - b", "edited calc.py", "3 passed in 0.01s"]
    for turn, result in enumerate(results):
        reply = chat.ask(stream=turn % 2 == 1)  # mix streaming and non-streaming turns
        assert reply.stop == "tool" and len(reply.calls) == 1
        chat.answer({reply.calls[0].id: result})
    final = chat.ask(stream=True)
    assert final.text == "Fixed: add() now adds." and final.stop == "end"
    turns = [r.turn for r in server.requests if r.agent == "fixer" and r.provider == provider]
    assert turns[-4:] == [0, 1, 2, 3]


def test_anthropic_faults(server: StubServer) -> None:
    client = opened(anthropic.Anthropic(base_url=server.base_url, api_key=SECRET, max_retries=0))
    kwargs: dict[str, Any] = {
        "model": "claude-stub",
        "max_tokens": 100,
        "system": "Agent: anthropic-faults",
        "messages": [{"role": "user", "content": "Task faults: go"}],
    }
    with pytest.raises(anthropic.RateLimitError) as rate:
        client.messages.create(**kwargs)
    assert rate.value.status_code == 429
    assert rate.value.response.headers["retry-after"] == "1"
    assert rate.value.type == "rate_limit_error"
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(**kwargs)
    assert overloaded.value.status_code == 529 and overloaded.value.type == "overloaded_error"
    with pytest.raises(anthropic.InternalServerError) as internal:
        client.messages.create(**kwargs)
    assert internal.value.status_code == 500
    assert internal.value.response.headers["retry-after-ms"] == "1500"
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(**kwargs)
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as stream_error:
        with client.messages.stream(**kwargs) as events:
            received.extend(events.text_stream)
    assert received == ["Recovered "]  # some text arrived before the error event
    assert stream_error.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "stub: injected stream error"},
    }
    with client.messages.stream(**kwargs) as events:
        assert events.get_final_message().content[0].text == "Recovered after faults."  # type: ignore[union-attr]


def test_openai_faults(server: StubServer) -> None:
    client = opened(openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=SECRET, max_retries=0))
    kwargs: dict[str, Any] = {
        "model": "gpt-stub",
        "messages": [
            {"role": "system", "content": "Agent: openai-faults"},
            {"role": "user", "content": "Task faults: go"},
        ],
    }
    with pytest.raises(openai.RateLimitError) as rate:
        client.chat.completions.create(**kwargs)
    assert rate.value.response.headers["retry-after"] == "1"
    assert rate.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as overloaded:
        client.chat.completions.create(**kwargs)
    assert overloaded.value.status_code == 529
    with pytest.raises(openai.InternalServerError) as internal:
        client.chat.completions.create(**kwargs)
    assert internal.value.status_code == 500
    assert internal.value.response.headers["retry-after-ms"] == "1500"
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**kwargs)
    text = ""
    with pytest.raises(openai.APIError, match="stub: injected stream error"):
        for chunk in client.chat.completions.create(**kwargs, stream=True):
            text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert text == "Recovered "  # some text arrived before the error
    completion = client.chat.completions.create(**kwargs)
    assert completion.choices[0].message.content == "Recovered after faults."


def test_mistral_faults(server: StubServer) -> None:
    client = opened(Mistral(api_key=SECRET, server_url=server.base_url))
    kwargs: dict[str, Any] = {
        "model": "mistral-stub",
        "messages": [
            {"role": "system", "content": "Agent: mistral-faults"},
            {"role": "user", "content": "Task faults: go"},
        ],
    }
    with pytest.raises(SDKError) as rate:
        client.chat.complete(**kwargs)
    assert rate.value.status_code == 429 and rate.value.headers["retry-after"] == "1"
    with pytest.raises(SDKError) as overloaded:
        client.chat.complete(**kwargs)
    assert overloaded.value.status_code == 529
    with pytest.raises(SDKError) as internal:
        client.chat.complete(**kwargs)
    assert internal.value.status_code == 500
    assert internal.value.headers["retry-after-ms"] == "1500"
    with pytest.raises(httpx2.TransportError):
        client.chat.complete(**kwargs)
    with pytest.raises(MistralError) as stream_error:
        list(client.chat.stream(**kwargs))
    assert "stub: injected stream error" in stream_error.value.body
    response = client.chat.complete(**kwargs)
    assert response.choices[0].message is not None
    assert response.choices[0].message.content == "Recovered after faults."


@each_provider
def test_sdk_retries_get_past_faults(server: StubServer, provider: str) -> None:
    agent = f"{provider}-retry"
    if provider == "anthropic":
        a_client = opened(
            anthropic.Anthropic(base_url=server.base_url, api_key=SECRET, max_retries=2)
        )
        message = a_client.messages.create(
            model="claude-stub",
            max_tokens=100,
            system=f"Agent: {agent}",
            messages=[{"role": "user", "content": "Task retry: go"}],
        )
        text = message.content[0].text  # type: ignore[union-attr]
    elif provider == "openai":
        o_client = opened(
            openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=SECRET, max_retries=2)
        )
        completion = o_client.chat.completions.create(
            model="gpt-stub",
            messages=[
                {"role": "system", "content": f"Agent: {agent}"},
                {"role": "user", "content": "Task retry: go"},
            ],
        )
        text = completion.choices[0].message.content or ""
    else:
        retries = RetryConfig("backoff", BackoffStrategy(5, 20, 1.5, 5000), False)
        m_client = opened(Mistral(api_key=SECRET, server_url=server.base_url, retry_config=retries))
        messages: Any = [
            {"role": "system", "content": f"Agent: {agent}"},
            {"role": "user", "content": "Task retry: go"},
        ]
        response = m_client.chat.complete(model="mistral-stub", messages=messages)
        assert response.choices[0].message is not None
        text = str(response.choices[0].message.content)
    assert text == "Recovered by SDK retries."
    statuses = [r.status for r in server.requests if r.agent == agent]
    assert statuses == [429, 500, 200]


@each_provider
def test_strict_errors_surface_as_bad_request(server: StubServer, provider: str) -> None:
    chat = Chat(provider, server, "nobody", "nothing")
    expected = "stub: no conversation for agent 'nobody' task 'nothing'; scripted: coder/plain"
    past_end = "stub: no scripted turn 2 for agent 'coder' task 'plain' (the script has 1 turns"
    if provider == "mistral":
        with pytest.raises(SDKError) as m_info:
            chat.ask()
        assert m_info.value.status_code == 400 and expected in m_info.value.body
        chat = Chat(provider, server, "coder", "plain")
        chat.ask()
        chat.history.append(("user", "and again?"))
        with pytest.raises(SDKError) as m_info:
            chat.ask()
        assert past_end in m_info.value.body
        return
    errors = (anthropic.BadRequestError, openai.BadRequestError)
    with pytest.raises(errors) as info:
        chat.ask()
    error = info.value
    assert isinstance(error, errors[PROVIDERS.index(provider)])
    assert error.status_code == 400 and expected in error.message
    chat = Chat(provider, server, "coder", "plain")
    chat.ask()
    chat.history.append(("user", "and again?"))
    with pytest.raises(errors) as info:
        chat.ask(stream=True)
    error = info.value
    assert isinstance(error, errors) and past_end in error.message


@each_provider
def test_malformed_requests_are_rejected_like_the_real_api(
    server: StubServer, provider: str
) -> None:
    chat = Chat(provider, server, "coder", "one-tool")
    reply = chat.ask()
    chat.history.append(("user", "I never ran your tool"))  # tool call left unanswered
    if provider == "anthropic":
        with pytest.raises(anthropic.BadRequestError, match="`tool_use` ids were found without"):
            chat.ask()
    elif provider == "openai":
        with pytest.raises(openai.BadRequestError, match="did not have response messages"):
            chat.ask()
    else:
        with pytest.raises(SDKError) as info:
            chat.ask()
        assert info.value.status_code == 400 and reply.calls[0].id in info.value.body


async def test_async_clients_stream(server: StubServer) -> None:
    a_client = anthropic.AsyncAnthropic(base_url=server.base_url, api_key=SECRET, max_retries=0)
    async with (
        a_client,
        a_client.messages.stream(
            model="claude-stub",
            max_tokens=100,
            system="Agent: coder",
            messages=[{"role": "user", "content": "Task slow: go"}],
        ) as events,
    ):
        pieces = [piece async for piece in events.text_stream]
        message = await events.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == "one two three four five six seven eight nine"
    assert message.stop_reason == "end_turn"

    started = time.monotonic()
    async with openai.AsyncOpenAI(
        base_url=f"{server.base_url}/v1", api_key=SECRET, max_retries=0
    ) as o_client:
        stream = await o_client.chat.completions.create(
            model="gpt-stub",
            messages=[
                {"role": "system", "content": "Agent: coder"},
                {"role": "user", "content": "Task slow: go"},
            ],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert time.monotonic() - started >= 0.05  # chunk_delay_s spaces the deltas out
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 11


def test_record_file_has_every_request_with_secrets_redacted(
    server: StubServer, record_path: Path
) -> None:
    Chat("openai", server, "coder", "plain").ask()
    lines = record_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [r.seq for r in server.requests]
    assert len(records) == len(server.requests) > 10
    assert {r["provider"] for r in records} == {"anthropic", "openai", "mistral"}
    for entry in records:
        secrets = {k: v for k, v in entry["headers"].items() if k in ("authorization", "x-api-key")}
        assert secrets and set(secrets.values()) == {"<redacted>"}
    assert SECRET not in record_path.read_text()
    last = records[-1]
    assert (last["agent"], last["task"], last["turn"], last["status"]) == ("coder", "plain", 0, 200)
    assert last["body"]["messages"][0]["role"] == "system"
    assert {r["fault"] for r in records} >= {"http", "drop", "stream_error", None}


def test_serve_forever_in_another_process(tmp_path: Path) -> None:
    script_path = tmp_path / "script.yaml"
    script_path.write_text(yaml.safe_dump(SCRIPT))
    record = tmp_path / "served.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        [sys.executable, "-m", "swarm.llmstub", str(script_path), "--record", str(record)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            match = re.fullmatch(r"stub listening on (http://127\.0\.0\.1:\d+)", line)
            assert match, line
            with anthropic.Anthropic(
                base_url=match.group(1), api_key=SECRET, max_retries=0
            ) as client:
                message = client.messages.create(
                    model="claude-stub",
                    max_tokens=10,
                    system="Agent: coder",
                    messages=[{"role": "user", "content": "Task plain: hi"}],
                )
            assert message.usage.input_tokens == 11
            entries = [json.loads(x) for x in record.read_text().splitlines()]
            assert len(entries) == 1 and entries[0]["status"] == 200
            assert entries[0]["headers"]["authorization"] == "<redacted>"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, stderr
