"""Unit tests for swarm.llmstub: script validation, matching, turn selection, strict and
request-validation errors, faults, expectations and recording (in-process, via ASGI)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm.llmstub import RequestLog, ScriptError, StubScript, load_script, parse_script
from swarm.llmstub.server import StubApp, redact_headers
from swarm.llmstub.wire import chunk_json, chunk_text, seeded_id

A_HEADERS = {"x-api-key": "sk-ant-secret", "anthropic-version": "2023-06-01"}
O_HEADERS = {"authorization": "Bearer sk-openai-secret"}
M_HEADERS = {"authorization": "Bearer mistral-secret", "user-agent": "mistral-client-python/3"}

SCRIPT = StubScript.model_validate(
    {
        "conversations": [
            {
                "agent": "fixer",
                "task": "fix-bug",
                "turns": [
                    {
                        "text": "Reading.",
                        "tool_calls": [
                            {"name": "read", "input": {"file_path": "calc.py"}},
                            {"name": "grep", "input": {"pattern": "add"}},
                        ],
                        "usage": {"input_tokens": 100, "output_tokens": 7, "cache_read_tokens": 5},
                    },
                    {"text": "Fixed.", "expect": {"last_tool_result_contains": "def add"}},
                ],
            },
            {"agent": "fixer", "turns": [{"text": "fixer, any task"}]},
            {"task": "fix-bug", "turns": [{"text": "any agent, fix-bug"}]},
            {"turns": [{"text": "catch-all"}]},
            {
                "agent": "faulty",
                "turns": [
                    {
                        "text": "finally",
                        "faults": [
                            {"status": 429, "retry_after": 2},
                            {"status": 529, "retry_after_ms": 1500, "message": "busy"},
                            {"kind": "stream_error"},
                        ],
                    }
                ],
            },
            {
                "agent": "strict",
                "task": "only",
                "turns": [
                    {"text": "one", "expect": {"system_contains": "be careful"}},
                ],
            },
        ]
    }
)
STRICT_ONLY = StubScript.model_validate(
    {
        "conversations": [
            {"agent": "fixer", "task": "fix-bug", "turns": [{"text": "a"}, {"text": "b"}]}
        ]
    }
)


def a_body(
    system: Any = "Agent: fixer",
    task: str = "fix-bug",
    history: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    messages = [{"role": "user", "content": f"Task {task}: do it"}, *(history or [])]
    return {
        "model": "claude-test",
        "max_tokens": 64,
        "system": system,
        "messages": messages,
    } | extra


def o_body(
    system: str = "Agent: fixer",
    task: str = "fix-bug",
    history: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Task {task}: do it"},
        *(history or []),
    ]
    return {"model": "gpt-test", "messages": messages} | extra


def a_tool_turn(ids: list[str], results: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": i, "name": "read", "input": {}} for i in ids],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": i, "content": text}
                for i, text in results.items()
            ],
        },
    ]


def o_tool_turn(ids: list[str], results: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": i, "type": "function", "function": {"name": "read", "arguments": "{}"}}
                for i in ids
            ],
        },
        *({"role": "tool", "tool_call_id": i, "content": text} for i, text in results.items()),
    ]


class Stub:
    def __init__(self, app: StubApp, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    async def anthropic(self, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(
            "/v1/messages", json=body, headers=A_HEADERS if headers is None else headers
        )

    async def openai(self, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(
            "/v1/chat/completions", json=body, headers=O_HEADERS if headers is None else headers
        )

    async def mistral(self, body: Any) -> httpx.Response:
        return await self.client.post("/v1/chat/completions", json=body, headers=M_HEADERS)


async def make_stub(script: StubScript, record_path: Path | None = None) -> AsyncIterator[Stub]:
    app = StubApp(script, RequestLog(record_path))
    transport = httpx.ASGITransport(app=app.asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://stub") as client:
        yield Stub(app, client)


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    async for s in make_stub(SCRIPT):
        yield s


@pytest.fixture
async def strict_stub() -> AsyncIterator[Stub]:
    async for s in make_stub(STRICT_ONLY):
        yield s


def a_error(response: httpx.Response) -> str:
    body = response.json()
    assert body["type"] == "error"
    message: str = body["error"]["message"]
    return message


def o_error(response: httpx.Response) -> str:
    message: str = response.json()["error"]["message"]
    return message


# --- script loading and validation ------------------------------------------------------


EXAMPLE_YAML = """
match:
  agent: 'Agent: (?P<agent>[A-Za-z0-9_.-]+)'
  task: 'Task (?P<task>[A-Za-z0-9_.-]+):'
conversations:
  - agent: fixer
    task: fix-bug
    turns:
      - text: "I'll read the file first."
        tool_calls:
          - {name: read, input: {file_path: calc.py}}
          - {name: grep, input: {pattern: add}}
        usage: {input_tokens: 1200, output_tokens: 40, cache_read_tokens: 0, cache_creation_tokens: 0}
        delay_s: 0
        chunk_delay_s: 0
        expect:
          last_tool_result_contains: "passed"
        faults:
          - {status: 429, retry_after: 1}
          - {status: 529}
          - {status: 500}
          - {kind: drop}
          - {kind: stream_error}
      - text: "Fixed."
"""


def test_load_script_reads_the_documented_format(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(EXAMPLE_YAML)
    script = load_script(path)
    conv = script.conversations[0]
    assert (conv.agent, conv.task, len(conv.turns)) == ("fixer", "fix-bug", 2)
    first = conv.turns[0]
    assert [c.name for c in first.tool_calls] == ["read", "grep"]
    assert first.usage is not None and first.usage.input_tokens == 1200
    assert [f.kind for f in first.faults] == ["http", "http", "http", "drop", "stream_error"]
    assert first.faults[0].retry_after == 1
    assert first.expect is not None and first.expect.last_tool_result_contains == "passed"


def test_defaults_when_match_is_omitted() -> None:
    script = StubScript.model_validate({"conversations": [{"turns": [{"text": "hi"}]}]})
    assert script.match.extract("agent", "You are... Agent: coder-2.x\n") == "coder-2.x"
    assert script.match.extract("task", "Task T-17: fix it") == "T-17"
    assert script.match.extract("agent", "no marker") is None
    assert script.match.extract("task", None) is None


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "conversations: Field required"),
        ({"conversations": []}, "conversations: List should have at least 1 item"),
        ({"conversations": [{"turns": []}]}, "conversations[0].turns: List should have at least 1"),
        ({"conversations": [{"turns": [{}]}]}, "conversations[0].turns[0]: a turn needs text"),
        (
            {"conversations": [{"turns": [{"text": "x", "tool_call": []}]}]},
            "conversations[0].turns[0].tool_call: Extra inputs are not permitted",
        ),
        (
            {"conversations": [{"turns": [{"text": "x", "faults": [{"retry_after": 1}]}]}]},
            "conversations[0].turns[0].faults[0]: an http fault needs a status",
        ),
        (
            {
                "conversations": [
                    {"turns": [{"text": "x", "faults": [{"kind": "drop", "status": 500}]}]}
                ]
            },
            "conversations[0].turns[0].faults[0]: a 'drop' fault takes no status",
        ),
        (
            {"conversations": [{"turns": [{"text": "x", "faults": [{"kind": "explode"}]}]}]},
            "conversations[0].turns[0].faults[0].kind: Input should be 'http', 'drop', 'stream_error' or 'overflow'",
        ),
        (
            {"conversations": [{"turns": [{"text": "x", "faults": [{"status": 200}]}]}]},
            "conversations[0].turns[0].faults[0].status: Input should be greater than or equal to 400",
        ),
        (
            {"conversations": [{"turns": [{"text": "x", "delay_s": -1}]}]},
            "conversations[0].turns[0].delay_s: Input should be greater than or equal to 0",
        ),
        (
            {"conversations": [{"turns": [{"tool_calls": [{"input": {}}]}]}]},
            "conversations[0].turns[0].tool_calls[0].name: Field required",
        ),
        (
            {"conversations": [{"turns": [{"text": "x", "usage": {"input_tokens": "many"}}]}]},
            "conversations[0].turns[0].usage.input_tokens: Input should be a valid integer",
        ),
        (
            {"match": {"agent": "Agent: (\\w+)"}, "conversations": [{"turns": [{"text": "x"}]}]},
            "match.agent: the pattern needs a named group (?P<agent>...)",
        ),
        (
            {"match": {"task": "Task (?P<task>"}, "conversations": [{"turns": [{"text": "x"}]}]},
            "match.task: not a valid regular expression",
        ),
        (
            {
                "conversations": [
                    {"agent": "a", "turns": [{"text": "x"}]},
                    {"agent": "a", "turns": [{"text": "y"}]},
                ]
            },
            "conversations[1] (a/*) duplicates conversations[0]",
        ),
    ],
)
def test_validation_errors_name_the_source_and_field(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ScriptError) as info:
        parse_script(data, "scripts/demo.yaml")
    message = str(info.value)
    assert message.startswith("scripts/demo.yaml: invalid stub script")
    assert fragment in message


def test_load_script_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "conversations:\n  - turns:\n      - {text: ok, faults: [{kind: drop, status: 1}]}\n"
    )
    with pytest.raises(ScriptError, match=re.escape(str(bad))):
        load_script(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("conversations: [unclosed")
    with pytest.raises(ScriptError, match="not valid YAML"):
        load_script(broken)
    with pytest.raises(ScriptError, match="cannot read"):
        load_script(tmp_path / "missing.yaml")


# --- matching -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "task", "label"),
    [
        ("fixer", "fix-bug", "fixer/fix-bug"),
        ("fixer", "other", "fixer/*"),
        ("someone", "fix-bug", "*/fix-bug"),
        ("someone", "other", "*/*"),
        (None, None, "*/*"),
    ],
)
def test_the_most_specific_conversation_wins(
    agent: str | None, task: str | None, label: str
) -> None:
    found = SCRIPT.find(agent, task)
    assert found is not None and found[1].label == label


def test_agent_specific_beats_task_specific_and_file_order_breaks_ties() -> None:
    script = StubScript.model_validate(
        {
            "conversations": [
                {"task": "t", "turns": [{"text": "task"}]},
                {"agent": "a", "turns": [{"text": "agent"}]},
            ]
        }
    )
    found = script.find("a", "t")
    assert found is not None and found[0] == 1
    assert script.find("b", "u") is None


def test_custom_match_patterns() -> None:
    script = StubScript.model_validate(
        {
            "match": {"agent": r"role=(?P<agent>\w+)", "task": r"\[(?P<task>[^\]]+)\]"},
            "conversations": [{"agent": "lead", "task": "T1", "turns": [{"text": "ok"}]}],
        }
    )
    assert script.match.extract("agent", "x role=lead y") == "lead"
    assert script.match.extract("task", "do [T1] now") == "T1"


# --- turn selection -----------------------------------------------------------------------


async def test_turn_index_counts_assistant_messages(stub: Stub) -> None:
    first = await stub.anthropic(a_body())
    assert first.status_code == 200, first.text
    content = first.json()["content"]
    assert content[0] == {"type": "text", "text": "Reading."}
    ids = [b["id"] for b in content[1:]]
    assert all(re.fullmatch(r"toolu_[A-Za-z0-9]{24}", i) for i in ids) and len(set(ids)) == 2

    history = a_tool_turn(ids, {ids[0]: "def add(a, b): ...", ids[1]: "3: def add"})
    second = await stub.anthropic(a_body(history=history))
    assert second.status_code == 200, second.text
    assert second.json()["content"] == [{"type": "text", "text": "Fixed."}]
    assert second.json()["stop_reason"] == "end_turn"
    assert [r.turn for r in stub.app.log] == [0, 1]


async def test_the_same_turn_can_be_replayed(stub: Stub) -> None:
    """Stateless: a restarted client re-asks for turn 0 and gets it again, same tool ids."""
    one = (await stub.anthropic(a_body())).json()
    two = (await stub.anthropic(a_body())).json()
    assert one["content"] == two["content"]
    oa = (await stub.openai(o_body())).json()
    assert oa["choices"][0]["message"]["tool_calls"][0]["id"].startswith("call_")


async def test_usage_is_scripted_or_estimated(stub: Stub) -> None:
    usage = (await stub.anthropic(a_body())).json()["usage"]
    assert usage["input_tokens"] == 100
    assert usage["output_tokens"] == 7
    assert usage["cache_read_input_tokens"] == 5
    assert usage["cache_creation_input_tokens"] == 0
    o_usage = (await stub.openai(o_body())).json()["usage"]
    assert o_usage["prompt_tokens"] == 105
    assert o_usage["completion_tokens"] == 7
    assert o_usage["total_tokens"] == 112
    assert o_usage["prompt_tokens_details"]["cached_tokens"] == 5

    body = a_body(system="Agent: nobody", task="x")
    estimated = (await stub.anthropic(body)).json()["usage"]
    raw_chars = len(json.dumps(body, separators=(",", ":")).encode())  # as httpx sends it
    assert estimated["input_tokens"] == math.ceil(raw_chars / 4)
    assert estimated["output_tokens"] == 3  # "catch-all" = 9 chars -> ceil(9 / 4)


# --- strict errors ------------------------------------------------------------------------


async def test_no_conversation_is_a_400_listing_the_script(strict_stub: Stub) -> None:
    response = await strict_stub.anthropic(a_body(system="Agent: x", task="y"))
    assert response.status_code == 400
    message = a_error(response)
    assert message == "stub: no conversation for agent 'x' task 'y'; scripted: fixer/fix-bug"
    assert strict_stub.app.log[0].status == 400
    assert strict_stub.app.log[0].error == message


async def test_a_missing_agent_marker_is_explained(strict_stub: Stub) -> None:
    response = await strict_stub.openai(o_body(system="You are helpful."))
    assert response.status_code == 400
    message = o_error(response)
    assert "no conversation for agent None task 'fix-bug'" in message
    assert "the agent pattern 'Agent: (?P<agent>[A-Za-z0-9_.-]+)' found nothing" in message
    assert "'You are helpful.'" in message


async def test_a_turn_past_the_script_is_a_400(strict_stub: Stub) -> None:
    history = [
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "more"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "more"},
    ]
    response = await strict_stub.anthropic(a_body(history=history))
    assert response.status_code == 400
    assert a_error(response) == (
        "stub: no scripted turn 3 for agent 'fixer' task 'fix-bug' "
        "(the script has 2 turns; the request has 2 assistant messages)"
    )
    mistral = await strict_stub.mistral(o_body(history=history))
    assert mistral.status_code == 400
    assert mistral.json()["object"] == "error"
    assert "no scripted turn 3" in mistral.json()["message"]


async def test_failed_expectations_say_what_was_expected(stub: Stub) -> None:
    history = a_tool_turn(["toolu_a", "toolu_b"], {"toolu_a": "nothing", "toolu_b": "here"})
    response = await stub.anthropic(a_body(history=history))
    assert response.status_code == 400
    assert a_error(response) == (
        "stub: turn 2 for agent 'fixer' task 'fix-bug' expected a tool result in the last "
        "message to contain 'def add', got 'nothing | here'"
    )
    strict = await stub.openai(o_body(system="Agent: strict", task="only"))
    assert strict.status_code == 400
    assert "expected the system prompt to contain 'be careful'" in o_error(strict)
    ok = await stub.openai(o_body(system="Agent: strict. Please be careful.", task="only"))
    assert ok.status_code == 200


# --- request validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}]},
            400,
            "max_tokens: Field required",
        ),
        (
            {"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            400,
            "model: Field required",
        ),
        ({"model": "m", "max_tokens": 5, "messages": []}, 400, "at least one message"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]},
            400,
            'first message must use the "user" role',
        ),
        (
            a_body(history=[{"role": "user", "content": "again"}]),
            400,
            'found multiple "user" roles in a row',
        ),
        (
            a_body(history=[{"role": "system", "content": "x"}]),
            400,
            "messages.1.role: Input should be 'user' or 'assistant'",
        ),
        (
            a_body(
                history=[
                    {"role": "assistant", "content": "no tools here"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}
                        ],
                    },
                ]
            ),
            400,
            "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_x",
        ),
        (
            a_body(history=a_tool_turn(["toolu_a", "toolu_b"], {"toolu_a": "only one"})),
            400,
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_b",
        ),
        (
            a_body(history=a_tool_turn(["toolu_a"], {})[:1]),
            400,
            "without `tool_result` blocks immediately after: toolu_a",
        ),
        (
            a_body(tools=[{"name": "read", "description": "r"}]),
            400,
            "tools.0.custom.input_schema: Field required",
        ),
        (
            a_body(tools=[{"name": "read", "input_schema": {"type": "string"}}]),
            400,
            "tools.0.custom.input_schema.type: Input should be 'object'",
        ),
        (
            a_body(tools=[{"name": "bad name!", "input_schema": {"type": "object"}}]),
            400,
            "tools.0.custom.name: String should match pattern",
        ),
        (
            a_body(
                tools=[
                    {"name": "read", "input_schema": {"type": "object"}},
                    {"name": "read", "input_schema": {"type": "object"}},
                ]
            ),
            400,
            "Tool names must be unique",
        ),
        (a_body(system=[{"type": "image"}]), 400, "system.0: Input should be a text block"),
    ],
)
async def test_anthropic_requests_are_validated(
    stub: Stub, body: dict[str, Any], status: int, fragment: str
) -> None:
    response = await stub.anthropic(body)
    assert response.status_code == status, response.text
    assert fragment in a_error(response)
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_anthropic_headers_are_checked(stub: Stub) -> None:
    no_key = await stub.anthropic(a_body(), headers={"anthropic-version": "2023-06-01"})
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"
    no_version = await stub.anthropic(a_body(), headers={"x-api-key": "k"})
    assert no_version.status_code == 400
    assert "anthropic-version" in a_error(no_version)
    not_json = await stub.client.post("/v1/messages", content=b"[1, 2]", headers=A_HEADERS)
    assert not_json.status_code == 400
    assert "must be a JSON object" in a_error(not_json)


async def test_anthropic_server_tools_need_no_input_schema(stub: Stub) -> None:
    body = a_body(tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}])
    assert (await stub.anthropic(body)).status_code == 200


@pytest.mark.parametrize(
    ("history", "extra", "fragment"),
    [
        (
            [{"role": "tool", "tool_call_id": "call_x", "content": "r"}],
            {},
            "messages with role 'tool' must be a response to a preceding message with 'tool_calls'",
        ),
        (
            o_tool_turn(["call_a", "call_b"], {"call_a": "r"}),
            {},
            "The following tool_call_ids did not have response messages: call_b",
        ),
        (
            [*o_tool_turn(["call_a"], {})[:1], {"role": "user", "content": "skip it"}],
            {},
            "did not have response messages: call_a",
        ),
        (
            o_tool_turn(["call_a"], {"call_zzz": "r"}),
            {},
            "messages[3].tool_call_id 'call_zzz' does not answer a tool call of the preceding "
            "assistant message (its tool calls: call_a)",
        ),
        (
            [{"role": "robot", "content": "x"}],
            {},
            "Invalid value for 'messages[2].role'",
        ),
        (
            [],
            {"tools": [{"type": "retrieval", "function": {"name": "x", "parameters": {}}}]},
            "Invalid value for 'tools[0].type': expected 'function'",
        ),
        (
            [],
            {"tools": [{"type": "function", "function": {"name": "read"}}]},
            "Missing required parameter: 'tools[0].function.parameters'",
        ),
        (
            [],
            {"tools": [{"type": "function", "function": {"name": "read", "parameters": []}}]},
            "expected an object, but got array instead",
        ),
        (
            [],
            {"stream_options": {"include_usage": True}},
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ),
    ],
)
async def test_openai_requests_are_validated(
    stub: Stub, history: list[dict[str, Any]], extra: dict[str, Any], fragment: str
) -> None:
    response = await stub.openai(o_body(history=history, **extra))
    assert response.status_code == 400, response.text
    assert fragment in o_error(response)
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_openai_needs_a_bearer_key(stub: Stub) -> None:
    response = await stub.openai(o_body(), headers={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_openai_multi_turn_with_tool_results(stub: Stub) -> None:
    first = (await stub.openai(o_body())).json()
    calls = first["choices"][0]["message"]["tool_calls"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"file_path": "calc.py"},
        {"pattern": "add"},
    ]
    history = o_tool_turn(
        [c["id"] for c in calls], {calls[0]["id"]: "def add", calls[1]["id"]: "x"}
    )
    second = await stub.openai(o_body(history=history))
    assert second.status_code == 200, second.text
    assert second.json()["choices"][0]["message"]["content"] == "Fixed."
    assert second.json()["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("history", "fragment"),
    [
        (
            o_tool_turn(["call_abc"], {"call_abc": "r"}),
            "Tool call id was call_abc but must be a-z, A-Z, 0-9, with a length of 9",
        ),
        (
            [{"role": "assistant", "content": "done"}],
            "Expected last role User or Tool (or Assistant with prefix True) for serving but got assistant",
        ),
    ],
)
async def test_mistral_requests_are_validated(
    stub: Stub, history: list[dict[str, Any]], fragment: str
) -> None:
    response = await stub.mistral(o_body(history=history))
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["object"] == "error" and fragment in body["message"]


async def test_mistral_ids_are_nine_alphanumerics_and_accepted_back(stub: Stub) -> None:
    first = await stub.mistral(o_body())
    assert first.status_code == 200, first.text
    calls = first.json()["choices"][0]["message"]["tool_calls"]
    assert all(re.fullmatch(r"[A-Za-z0-9]{9}", c["id"]) for c in calls)
    history = o_tool_turn([c["id"] for c in calls], {c["id"]: "def add" for c in calls})
    second = await stub.mistral(o_body(history=history))
    assert second.status_code == 200, second.text
    assert stub.app.log[-1].provider == "mistral"


async def test_forced_dialect_routes(stub: Stub) -> None:
    forced = await stub.client.post(
        "/mistral/v1/chat/completions", json=o_body(), headers=O_HEADERS
    )
    assert forced.status_code == 200 and stub.app.log[-1].provider == "mistral"
    plain = await stub.client.post("/openai/v1/chat/completions", json=o_body(), headers=M_HEADERS)
    assert plain.status_code == 200 and stub.app.log[-1].provider == "openai"
    missing = await stub.client.get("/v1/models")
    assert missing.status_code == 404 and stub.app.log[-1].provider == "unknown"


# --- faults -------------------------------------------------------------------------------


async def test_faults_are_served_in_order_then_the_answer(stub: Stub) -> None:
    body = a_body(system="Agent: faulty", task="t1")
    first = await stub.anthropic(body)
    assert first.status_code == 429
    assert first.headers["retry-after"] == "2"
    assert first.json()["error"]["type"] == "rate_limit_error"
    second = await stub.anthropic(body)
    assert second.status_code == 529
    assert second.headers["retry-after-ms"] == "1500"
    assert second.json()["error"] == {"type": "overloaded_error", "message": "busy"}
    third = await stub.anthropic(body)  # stream_error on a non-streaming request: 500
    assert third.status_code == 500 and third.json()["error"]["type"] == "api_error"
    fourth = await stub.anthropic(body)
    assert fourth.status_code == 200 and fourth.json()["content"][0]["text"] == "finally"
    assert [r.fault for r in stub.app.log] == ["http", "http", "stream_error", None]

    # Counters are per (conversation, agent, task, turn): another task starts afresh.
    other = await stub.openai(o_body(system="Agent: faulty", task="t2"))
    assert other.status_code == 429
    assert other.json()["error"]["code"] == "rate_limit_exceeded"
    stub.app.reset_faults()
    assert (await stub.anthropic(body)).status_code == 429


async def test_stream_error_fault_in_an_anthropic_stream(stub: Stub) -> None:
    body = a_body(system="Agent: faulty", task="s", stream=True)
    for _ in range(2):
        await stub.anthropic(body)
    response = await stub.anthropic(body)
    assert response.status_code == 200
    events = re.findall(r"^event: (\S+)$", response.text, flags=re.M)
    assert events[:2] == ["message_start", "ping"]
    assert events[-1] == "error"
    assert '"overloaded_error"' in response.text and "message_stop" not in events


async def test_openai_stream_with_usage_chunk(stub: Stub) -> None:
    body = o_body(stream=True, stream_options={"include_usage": True})
    response = await stub.openai(body)
    lines = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 105
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text == "Reading."


async def test_delay_s_sleeps_before_answering() -> None:
    script = StubScript.model_validate(
        {"conversations": [{"turns": [{"text": "late", "delay_s": 0.1}]}]}
    )
    async for s in make_stub(script):
        started = time.monotonic()
        response = await s.anthropic(a_body())
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.1


# --- recording ------------------------------------------------------------------------------


async def test_requests_are_recorded_with_secrets_redacted(tmp_path: Path) -> None:
    record = tmp_path / "requests.jsonl"
    async for s in make_stub(SCRIPT, record):
        await s.anthropic(a_body())
        await s.openai(o_body(system="Agent: x", task="y"))
        await s.mistral(o_body())
        log = list(s.app.log)
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert [entry["seq"] for entry in lines] == [1, 2, 3] == [r.seq for r in log]
    assert [entry["provider"] for entry in lines] == ["anthropic", "openai", "mistral"]
    assert lines[0]["headers"]["x-api-key"] == "<redacted>"
    assert lines[1]["headers"]["authorization"] == "<redacted>"
    assert lines[0]["body"]["messages"][0]["content"] == "Task fix-bug: do it"
    assert (lines[0]["agent"], lines[0]["task"], lines[0]["turn"]) == ("fixer", "fix-bug", 0)
    assert lines[0]["conversation"] == "fixer/fix-bug" and lines[0]["status"] == 200
    assert lines[1]["conversation"] == "*/*"
    assert lines[0]["received_at"] <= lines[0]["responded_at"]
    text = record.read_text()
    for secret in ("sk-ant-secret", "sk-openai-secret", "mistral-secret"):
        assert secret not in text


def test_redact_headers() -> None:
    headers = {"Authorization": "Bearer x", "X-Api-Key": "y", "Content-Type": "application/json"}
    assert redact_headers(headers) == {
        "authorization": "<redacted>",
        "x-api-key": "<redacted>",
        "content-type": "application/json",
    }


# --- helpers --------------------------------------------------------------------------------


def test_chunking_preserves_text_and_ids_are_stable() -> None:
    text = "The quick  brown fox\njumps over the lazy dog. "
    assert "".join(chunk_text(text)) == text
    assert len(chunk_text(text)) > 1
    payload = json.dumps({"file_path": "a/very/long/path/to/some/file.py", "n": 3})
    assert "".join(chunk_json(payload)) == payload
    assert seeded_id("x", 9) == seeded_id("x", 9) != seeded_id("y", 9)
    assert re.fullmatch(r"[A-Za-z0-9]{24}", seeded_id("x", 24))


def test_prompt_cache_model_reads_the_longest_cached_prefix() -> None:
    from swarm.llmstub.cache import PromptCache

    cache = PromptCache()
    mark = {"type": "ephemeral"}

    def body(*texts: str) -> dict[str, Any]:
        msgs = [
            {
                "role": "user" if i % 2 == 0 else "assistant",
                "content": [{"type": "text", "text": t}],
            }
            for i, t in enumerate(texts)
        ]
        msgs[-1]["content"][-1]["cache_control"] = mark
        return {
            "model": "m",
            "system": [{"type": "text", "text": "s", "cache_control": mark}],
            "messages": msgs,
        }

    first = cache.usage("anthropic", body("a" * 4000), 1000)
    assert first[0] == 0 and first[1] > 900  # nothing to read; all of it written
    second = cache.usage("anthropic", body("a" * 4000, "b" * 4000, "c" * 4000), 3000)
    assert 900 < second[0] < 1100 and 1900 < second[1] < 2100  # read up to the old mark
    changed = cache.usage("anthropic", body("z" * 4000, "b" * 4000, "c" * 4000), 3000)
    assert changed[0] < 50  # an early change costs everything after it
    openai = PromptCache()
    assert openai.usage("openai", body("a" * 8000), 2000) == (0, 0)
    read, written = openai.usage("openai", body("a" * 8000, "b" * 400), 2100)
    assert read > 1900 and written == 0  # OpenAI reports no writes
