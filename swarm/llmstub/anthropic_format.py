"""The Anthropic Messages API dialect (POST /v1/messages), non-streaming and SSE streaming."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from swarm.llmstub.wire import (
    RequestView,
    ResolvedTurn,
    StubHTTPError,
    bad_request,
    chunk_json,
    chunk_text,
    content_text,
    describe_json_type,
    partial_text,
    random_id,
    seeded_id,
    sse,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def _error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class AnthropicFormat:
    name = "anthropic"

    # --- validation -------------------------------------------------------------------

    def validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        if not headers.get("x-api-key") and not headers.get("authorization"):
            raise StubHTTPError(401, "x-api-key header is required")
        if not headers.get("anthropic-version"):
            raise bad_request("anthropic-version: header is required")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise bad_request("model: Field required")
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise bad_request("max_tokens: Field required")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise bad_request("max_tokens: Input should be an integer greater than or equal to 1")
        self._validate_system(body.get("system"))
        self._validate_messages(body.get("messages"))
        self._validate_tools(body.get("tools"))

    @staticmethod
    def _validate_system(system: Any) -> None:
        if system is None or isinstance(system, str):
            return
        if not isinstance(system, list):
            raise bad_request("system: Input should be a valid string or a list of text blocks")
        for i, block in enumerate(system):
            if not (
                isinstance(block, dict)
                and block.get("type") == "text"
                and isinstance(block.get("text"), str)
            ):
                raise bad_request(
                    f"system.{i}: Input should be a text block {{type: 'text', text}}"
                )

    def _validate_messages(self, messages: Any) -> None:
        if messages is None:
            raise bad_request("messages: Field required")
        if not isinstance(messages, list) or not messages:
            raise bad_request("messages: at least one message is required")
        previous_role: str | None = None
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                raise bad_request(f"messages.{i}: Input should be an object")
            role = message.get("role")
            if role not in ("user", "assistant"):
                raise bad_request(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            if i == 0 and role != "user":
                raise bad_request('messages: first message must use the "user" role')
            if role == previous_role:
                raise bad_request(
                    f'messages: roles must alternate between "user" and "assistant", '
                    f'but found multiple "{role}" roles in a row (messages.{i - 1} and messages.{i})'
                )
            previous_role = role
            content = message.get("content")
            if isinstance(content, str):
                continue
            if not isinstance(content, list):
                raise bad_request(
                    f"messages.{i}.content: Input should be a string or a list of blocks"
                )
            for j, block in enumerate(content):
                if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                    raise bad_request(f"messages.{i}.content.{j}: a content block needs a 'type'")
                self._validate_block(i, j, role, block)
        self._validate_tool_pairing(messages)

    @staticmethod
    def _validate_block(i: int, j: int, role: str, block: dict[str, Any]) -> None:
        where = f"messages.{i}.content.{j}"
        kind = block["type"]
        if kind == "text" and not isinstance(block.get("text"), str):
            raise bad_request(f"{where}.text: Field required")
        if kind == "tool_use":
            if role != "assistant":
                raise bad_request(
                    f"{where}: `tool_use` blocks are only allowed in assistant messages"
                )
            for key, expected in (("id", str), ("name", str), ("input", dict)):
                if not isinstance(block.get(key), expected):
                    raise bad_request(f"{where}.tool_use.{key}: Field required")
        if kind == "tool_result":
            if role != "user":
                raise bad_request(
                    f"{where}: `tool_result` blocks are only allowed in user messages"
                )
            if not isinstance(block.get("tool_use_id"), str):
                raise bad_request(f"{where}.tool_result.tool_use_id: Field required")

    @staticmethod
    def _validate_tool_pairing(messages: list[dict[str, Any]]) -> None:
        def blocks(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
            content = message.get("content")
            if not isinstance(content, list):
                return []
            return [b for b in content if b.get("type") == kind]

        for i, message in enumerate(messages):
            if message["role"] == "user":
                asked = {b["id"] for b in blocks(messages[i - 1], "tool_use")} if i > 0 else set()
                content = message.get("content")
                for j, block in enumerate(content if isinstance(content, list) else []):
                    if block.get("type") == "tool_result" and block["tool_use_id"] not in asked:
                        raise bad_request(
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                            f"`tool_result` blocks: {block['tool_use_id']}. Each `tool_result` "
                            "block must have a corresponding `tool_use` block in the previous message."
                        )
            else:
                asked_ids = [b["id"] for b in blocks(message, "tool_use")]
                if not asked_ids:
                    continue
                answered = (
                    {b["tool_use_id"] for b in blocks(messages[i + 1], "tool_result")}
                    if i + 1 < len(messages)
                    else set()
                )
                missing = [tid for tid in asked_ids if tid not in answered]
                if missing:
                    raise bad_request(
                        f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                        f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                        "a corresponding `tool_result` block in the next message."
                    )

    @staticmethod
    def _validate_tools(tools: Any) -> None:
        if tools is None:
            return
        if not isinstance(tools, list):
            raise bad_request("tools: Input should be a valid list")
        names: set[str] = set()
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise bad_request(f"tools.{k}: Input should be an object")
            name = tool.get("name")
            server_tool = tool.get("type") not in (None, "custom")
            where = f"tools.{k}" if server_tool else f"tools.{k}.custom"
            if not isinstance(name, str):
                raise bad_request(f"{where}.name: Field required")
            if not server_tool:
                if not _TOOL_NAME.match(name):
                    raise bad_request(
                        f"{where}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
                    )
                schema = tool.get("input_schema")
                if schema is None:
                    raise bad_request(f"{where}.input_schema: Field required")
                if not isinstance(schema, dict):
                    raise bad_request(
                        f"{where}.input_schema: Input should be an object, "
                        f"got {describe_json_type(schema)}"
                    )
                if schema.get("type") != "object":
                    raise bad_request(f"{where}.input_schema.type: Input should be 'object'")
            if name in names:
                raise bad_request(f"tools: Tool names must be unique (duplicate: {name!r})")
            names.add(name)

    # --- extraction -------------------------------------------------------------------

    def view(self, body: dict[str, Any]) -> RequestView:
        messages: list[dict[str, Any]] = body["messages"]
        system = body.get("system")
        last = messages[-1]
        last_is_user = last["role"] == "user"
        tool_results: list[str] = []
        if last_is_user and isinstance(last.get("content"), list):
            tool_results = [
                content_text(b.get("content"))
                for b in last["content"]
                if b.get("type") == "tool_result"
            ]
        return RequestView(
            model=body["model"],
            stream=body.get("stream") is True,
            system=content_text(system) if system is not None else None,
            first_user_text=content_text(messages[0].get("content")),
            assistant_count=sum(1 for m in messages if m["role"] == "assistant"),
            last_user_text=content_text(last.get("content")) if last_is_user else None,
            last_tool_results=tool_results,
            tool_names=[t["name"] for t in body.get("tools") or []],
            max_tokens=int(body.get("max_tokens") or 0),
        )

    def tool_call_id(self, seed: str) -> str:
        return "toolu_" + seeded_id(seed, 24)

    # --- responses --------------------------------------------------------------------

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        request_id = "req_" + random_id(24)
        body = {
            "type": "error",
            "error": {"type": _error_type(status), "message": message},
            "request_id": request_id,
        }
        return JSONResponse(body, status, headers={"request-id": request_id, **(headers or {})})

    def overflow_response(self, tokens: int, window: int) -> Response:
        return self.error_response(400, f"prompt is too long: {tokens} tokens > {window} maximum")

    @staticmethod
    def _usage(turn: ResolvedTurn, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": turn.input_tokens,
            "cache_creation_input_tokens": turn.cache_creation_tokens,
            "cache_read_input_tokens": turn.cache_read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": turn.cache_creation_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    @staticmethod
    def _stop_reason(turn: ResolvedTurn) -> str:
        if turn.refusal is not None:
            return "refusal"
        if turn.stop_reason is not None:
            return {"pause": "pause_turn"}.get(turn.stop_reason, turn.stop_reason)
        return "tool_use" if turn.has_tool_calls else "end_turn"

    @staticmethod
    def _text(turn: ResolvedTurn) -> str | None:
        return turn.refusal if turn.refusal is not None else turn.text

    @staticmethod
    def _thinking_blocks(turn: ResolvedTurn) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if turn.thinking is not None:
            out.append({"type": "thinking", "thinking": turn.thinking, "signature": turn.signature})
        if turn.redacted_thinking is not None:
            out.append({"type": "redacted_thinking", "data": turn.redacted_thinking})
        return out

    def _message(self, turn: ResolvedTurn, view: RequestView, *, final: bool) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if final:
            content.extend(self._thinking_blocks(turn))
            if self._text(turn):
                content.append({"type": "text", "text": self._text(turn)})
            content.extend(
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.input}
                for c in turn.calls
            )
        return {
            "id": "msg_" + random_id(24),
            "type": "message",
            "role": "assistant",
            "model": view.model,
            "content": content,
            "stop_reason": self._stop_reason(turn) if final else None,
            "stop_sequence": None,
            "usage": self._usage(turn, turn.output_tokens if final else 1),
        }

    def response(self, turn: ResolvedTurn, view: RequestView) -> Response:
        return JSONResponse(
            self._message(turn, view, final=True), headers={"request-id": "req_" + random_id(24)}
        )

    async def stream(
        self, turn: ResolvedTurn, view: RequestView, chunk_delay_s: float, fail: str | None
    ) -> AsyncIterator[bytes]:
        async def pause() -> None:
            if chunk_delay_s:
                await asyncio.sleep(chunk_delay_s)

        start = {"type": "message_start", "message": self._message(turn, view, final=False)}
        yield sse(start, "message_start")
        yield sse({"type": "ping"}, "ping")
        index = 0
        for block in self._thinking_blocks(turn) if fail is None else []:
            yield sse(
                {"type": "content_block_start", "index": index, "content_block": {**block}}
                if block["type"] == "redacted_thinking"
                else {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                },
                "content_block_start",
            )
            if block["type"] == "thinking":
                for piece in chunk_text(block["thinking"]):
                    await pause()
                    delta = {"type": "thinking_delta", "thinking": piece}
                    yield sse(
                        {"type": "content_block_delta", "index": index, "delta": delta},
                        "content_block_delta",
                    )
                delta = {"type": "signature_delta", "signature": block["signature"]}
                yield sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            index += 1
        text = self._text(turn)
        if text:
            yield sse(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            )
            for piece in chunk_text(text if fail is None else partial_text(text)):
                await pause()
                delta = {"type": "text_delta", "text": piece}
                yield sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            if fail is None:
                yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            index += 1
        if fail is not None:
            error = {"type": "overloaded_error", "message": fail}
            yield sse({"type": "error", "error": error}, "error")
            return
        for call in turn.calls:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            yield sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
            for piece in chunk_json(call.arguments):
                await pause()
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            index += 1
        usage = self._usage(turn, turn.output_tokens)
        del usage["cache_creation"], usage["service_tier"]
        yield sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(turn), "stop_sequence": None},
                "usage": usage,
            },
            "message_delta",
        )
        yield sse({"type": "message_stop"}, "message_stop")
