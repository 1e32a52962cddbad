"""Checks that a recorded Anthropic Messages request is well formed."""

from __future__ import annotations

from typing import Any


def anthropic_request_problems(body: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if not isinstance(body.get("max_tokens"), int):
        problems.append("max_tokens missing")
    for tool in body.get("tools", []):
        schema = tool.get("input_schema")
        if not tool.get("name") or not isinstance(schema, dict) or schema.get("type") != "object":
            problems.append(f"tool without a JSON object schema: {tool.get('name')}")
    messages = body.get("messages", [])
    if not messages or messages[0].get("role") != "user":
        problems.append("first message is not from the user")
    for i, msg in enumerate(messages):
        if i and msg["role"] == messages[i - 1]["role"]:
            problems.append(f"roles do not alternate at message {i}")
        content = msg["content"] if isinstance(msg["content"], list) else []
        results = [b["tool_use_id"] for b in content if b.get("type") == "tool_result"]
        prev = messages[i - 1]["content"] if i else []
        uses = [b["id"] for b in prev if isinstance(b, dict) and b.get("type") == "tool_use"]
        if msg["role"] == "user" and sorted(results) != sorted(uses):
            problems.append(f"message {i}: tool results {results} do not answer tool uses {uses}")
    return problems
