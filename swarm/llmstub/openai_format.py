"""OpenAI Chat Completions (POST /v1/chat/completions) and its Mistral variant.

Both speak `data: {...}` SSE chunks ending with `data: [DONE]`. Differences in the Mistral
variant: tool-call ids are exactly 9 alphanumerics (validated and generated), a tool call in a
stream arrives whole in one chunk, usage rides on the final chunk, and errors use Mistral's
`{"object": "error", ...}` body.
"""

from __future__ import annotations

import asyncio
import re
import time
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

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MISTRAL_ID = re.compile(r"^[a-zA-Z0-9]{9}$")


class OpenAIFormat:
    name = "openai"
    roles: tuple[str, ...] = ("system", "developer", "user", "assistant", "tool")
    system_roles: tuple[str, ...] = ("system", "developer")

    # --- validation -------------------------------------------------------------------

    def validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise StubHTTPError(401, "You didn't provide an API key (Authorization: Bearer ...).")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise bad_request("Missing required parameter: 'model'.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("Missing required parameter: 'messages' (a non-empty array).")
        for i, message in enumerate(messages):
            self._validate_message(i, message)
        self._validate_tool_pairing(messages)
        self._validate_tools(body.get("tools"))
        if body.get("stream_options") is not None and body.get("stream") is not True:
            raise bad_request(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled."
            )

    def _validate_message(self, i: int, message: Any) -> None:
        if not isinstance(message, dict):
            raise bad_request(f"Invalid type for 'messages[{i}]': expected an object.")
        role = message.get("role")
        if role not in self.roles:
            allowed = ", ".join(f"'{r}'" for r in self.roles)
            raise bad_request(f"Invalid value for 'messages[{i}].role': expected one of {allowed}.")
        if role == "assistant":
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise bad_request(
                    f"Invalid type for 'messages[{i}].tool_calls': expected an array."
                )
            for k, call in enumerate(calls):
                self._validate_call(f"messages[{i}].tool_calls[{k}]", call)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise bad_request(f"Missing required parameter: 'messages[{i}].tool_call_id'.")

    def _validate_call(self, where: str, call: Any) -> None:
        if not isinstance(call, dict) or not isinstance(call.get("id"), str):
            raise bad_request(f"Missing required parameter: '{where}.id'.")
        function = call.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise bad_request(f"Missing required parameter: '{where}.function.name'.")
        if not isinstance(function.get("arguments"), str):
            raise bad_request(f"Invalid type for '{where}.function.arguments': expected a string.")
        if call.get("type", "function") != "function":
            raise bad_request(f"Invalid value for '{where}.type': expected 'function'.")

    @staticmethod
    def _validate_tool_pairing(messages: list[dict[str, Any]]) -> None:
        asked: list[str] | None = None  # ids of the preceding assistant message's tool calls
        pending: list[str] = []
        for i, message in enumerate(messages):
            if message["role"] == "tool":
                call_id = message["tool_call_id"]
                if asked is None:
                    raise bad_request(
                        f"Invalid parameter: messages with role 'tool' must be a response to a "
                        f"preceding message with 'tool_calls' (messages[{i}], tool_call_id "
                        f"{call_id!r})."
                    )
                if call_id not in asked:
                    raise bad_request(
                        f"Invalid parameter: messages[{i}].tool_call_id {call_id!r} does not answer "
                        f"a tool call of the preceding assistant message (its tool calls: "
                        f"{', '.join(asked) or 'none'})."
                    )
                if call_id in pending:
                    pending.remove(call_id)
                continue
            if pending:
                break
            asked = None
            if message["role"] == "assistant" and message.get("tool_calls"):
                asked = [call["id"] for call in message["tool_calls"]]
                pending = list(asked)
        if pending:
            raise bad_request(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}"
            )

    @staticmethod
    def _validate_tools(tools: Any) -> None:
        if tools is None:
            return
        if not isinstance(tools, list):
            raise bad_request("Invalid type for 'tools': expected an array.")
        for k, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                raise bad_request(f"Invalid value for 'tools[{k}].type': expected 'function'.")
            function = tool.get("function")
            if not isinstance(function, dict):
                raise bad_request(f"Missing required parameter: 'tools[{k}].function'.")
            name = function.get("name")
            if not isinstance(name, str) or not _TOOL_NAME.match(name):
                raise bad_request(
                    f"Invalid 'tools[{k}].function.name': string does not match pattern "
                    "'^[a-zA-Z0-9_-]{1,64}$'."
                )
            parameters = function.get("parameters")
            if parameters is None:
                raise bad_request(f"Missing required parameter: 'tools[{k}].function.parameters'.")
            if not isinstance(parameters, dict):
                raise bad_request(
                    f"Invalid type for 'tools[{k}].function.parameters': expected an object, "
                    f"but got {describe_json_type(parameters)} instead."
                )

    # --- extraction -------------------------------------------------------------------

    def view(self, body: dict[str, Any]) -> RequestView:
        messages: list[dict[str, Any]] = body["messages"]
        system = next((m for m in messages if m["role"] in self.system_roles), None)
        first_user = next((m for m in messages if m["role"] == "user"), None)
        last_user = next((m for m in reversed(messages) if m["role"] == "user"), None)
        last_assistant = max(
            (i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1
        )
        tool_results = [
            content_text(m.get("content"))
            for m in messages[last_assistant + 1 :]
            if m["role"] == "tool"
        ]
        stream_options = body.get("stream_options") or {}
        return RequestView(
            model=body["model"],
            stream=body.get("stream") is True,
            system=content_text(system.get("content")) if system else None,
            first_user_text=content_text(first_user.get("content")) if first_user else None,
            assistant_count=sum(1 for m in messages if m["role"] == "assistant"),
            last_user_text=content_text(last_user.get("content")) if last_user else None,
            last_tool_results=tool_results,
            tool_names=[t["function"]["name"] for t in body.get("tools") or []],
            include_usage=bool(stream_options.get("include_usage")),
            max_tokens=int(body.get("max_completion_tokens") or body.get("max_tokens") or 0),
        )

    def tool_call_id(self, seed: str) -> str:
        return "call_" + seeded_id(seed, 24)

    # --- responses --------------------------------------------------------------------

    def overflow_response(self, tokens: int, window: int) -> Response:
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {tokens} tokens. Please reduce the length of the messages."
        )
        return self.error_response(400, message, code="context_length_exceeded")

    def error_response(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> Response:
        kind, default_code = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            404: ("invalid_request_error", "not_found"),
            429: ("requests", "rate_limit_exceeded"),
        }.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        code = code or default_code
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return JSONResponse(body, status, headers={**self._headers(), **(headers or {})})

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"x-request-id": "req_" + random_id(24), "openai-processing-ms": "1"}

    def _completion_id(self) -> str:
        return "chatcmpl-" + random_id(29)

    @staticmethod
    def _finish_reason(turn: ResolvedTurn) -> str:
        if turn.stop_reason == "max_tokens":
            return "length"
        return "tool_calls" if turn.has_tool_calls else "stop"

    def _usage(self, turn: ResolvedTurn) -> dict[str, Any]:
        details: dict[str, Any] = {"cached_tokens": turn.cache_read_tokens, "audio_tokens": 0}
        if turn.cache_creation_tokens:
            details["cache_write_tokens"] = turn.cache_creation_tokens
        return {
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.prompt_tokens + turn.output_tokens,
            "prompt_tokens_details": details,
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def _message(self, turn: ResolvedTurn) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.text,
            "refusal": turn.refusal,
            "annotations": [],
        }
        if turn.calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in turn.calls
            ]
        return message

    def response(self, turn: ResolvedTurn, view: RequestView) -> Response:
        body = {
            "id": self._completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": view.model,
            "choices": [
                {
                    "index": 0,
                    "message": self._message(turn),
                    "logprobs": None,
                    "finish_reason": self._finish_reason(turn),
                }
            ],
            "usage": self._usage(turn),
            "service_tier": "default",
            "system_fingerprint": "fp_stub",
        }
        return JSONResponse(body, headers=self._headers())

    def _stream_error(self, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}

    def _tool_call_deltas(self, turn: ResolvedTurn) -> list[list[dict[str, Any]]]:
        deltas: list[list[dict[str, Any]]] = []
        for index, call in enumerate(turn.calls):
            head = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            deltas.append([head])
            deltas.extend(
                [{"index": index, "function": {"arguments": piece}}]
                for piece in chunk_json(call.arguments)
            )
        return deltas

    def _final_usage(self, turn: ResolvedTurn, view: RequestView) -> dict[str, Any] | None:
        return self._usage(turn) if view.include_usage else None

    async def stream(
        self, turn: ResolvedTurn, view: RequestView, chunk_delay_s: float, fail: str | None
    ) -> AsyncIterator[bytes]:
        head: dict[str, Any] = {
            "id": self._completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": view.model,
        }
        if self.name == "openai":
            head |= {"service_tier": "default", "system_fingerprint": "fp_stub"}
            if view.include_usage:
                head["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            if self.name == "openai":
                choice["logprobs"] = None
            return sse({**head, "choices": [choice]})

        async def pause() -> None:
            if chunk_delay_s:
                await asyncio.sleep(chunk_delay_s)

        yield chunk({"role": "assistant", "content": ""})
        if turn.refusal is not None and self.name == "openai":
            for piece in chunk_text(turn.refusal):
                yield chunk({"refusal": piece})
        text = turn.text if fail is None else partial_text(turn.text or "")
        for piece in chunk_text(text) if text else []:
            await pause()
            yield chunk({"content": piece})
        if fail is not None:
            yield sse(self._stream_error(fail))
            return
        for calls in self._tool_call_deltas(turn):
            await pause()
            yield chunk({"tool_calls": calls})
        usage = self._final_usage(turn, view)
        if self.name == "openai":
            yield chunk({}, self._finish_reason(turn))
            if usage is not None:
                yield sse({**head, "choices": [], "usage": usage})
        else:
            final = {
                "index": 0,
                "delta": {"content": ""},
                "finish_reason": self._finish_reason(turn),
            }
            yield sse({**head, "choices": [final], "usage": usage})
        yield sse("[DONE]")


class MistralFormat(OpenAIFormat):
    name = "mistral"
    roles = ("system", "user", "assistant", "tool")
    system_roles = ("system",)

    def validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise StubHTTPError(401, "Unauthorized")
        super().validate(body, headers)
        messages = body["messages"]
        for i, message in enumerate(messages):
            ids = [c["id"] for c in message.get("tool_calls") or []]
            if message["role"] == "tool":
                ids.append(message["tool_call_id"])
            for call_id in ids:
                if not _MISTRAL_ID.match(call_id):
                    raise bad_request(
                        f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length "
                        f"of 9 (messages[{i}])."
                    )
        last = messages[-1]
        if last["role"] not in ("user", "tool") and not (
            last["role"] == "assistant" and last.get("prefix") is True
        ):
            raise bad_request(
                f"Expected last role User or Tool (or Assistant with prefix True) for serving "
                f"but got {last['role']}"
            )

    def _validate_call(self, where: str, call: Any) -> None:
        # Mistral accepts arguments as a JSON string or an object.
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            function = call["function"]
            if isinstance(function.get("arguments"), dict):
                call = {**call, "function": {**function, "arguments": "{}"}}
        super()._validate_call(where, call)

    def tool_call_id(self, seed: str) -> str:
        return seeded_id(seed, 9)

    def overflow_response(self, tokens: int, window: int) -> Response:
        message = (
            f"Prompt contains {tokens} tokens and 0 draft tokens, too large for model with "
            f"{window} maximum context length"
        )
        return self.error_response(400, message)

    def error_response(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> Response:
        kind = {
            400: "invalid_request_error",
            401: "unauthorized",
            404: "not_found",
            429: "rate_limited",
        }.get(status, "internal_server_error" if status >= 500 else "invalid_request_error")
        body = {"object": "error", "message": message, "type": kind, "param": None, "code": None}
        return JSONResponse(body, status, headers={**self._headers(), **(headers or {})})

    @staticmethod
    def _headers() -> dict[str, str]:
        return {"x-kong-request-id": random_id(24)}

    def _completion_id(self) -> str:
        return random_id(32).lower()

    def _usage(self, turn: ResolvedTurn) -> dict[str, Any]:
        return {
            "prompt_tokens": turn.prompt_tokens,
            "completion_tokens": turn.output_tokens,
            "total_tokens": turn.prompt_tokens + turn.output_tokens,
            "prompt_tokens_details": {"cached_tokens": turn.cache_read_tokens},
        }

    def _message(self, turn: ResolvedTurn) -> dict[str, Any]:
        return {
            "role": "assistant",
            "content": turn.text or turn.refusal or "",
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                    "index": index,
                }
                for index, c in enumerate(turn.calls)
            ]
            or None,
            "prefix": False,
        }

    def response(self, turn: ResolvedTurn, view: RequestView) -> Response:
        body = {
            "id": self._completion_id(),
            "object": "chat.completion",
            "model": view.model,
            "created": int(time.time()),
            "usage": self._usage(turn),
            "choices": [
                {
                    "index": 0,
                    "message": self._message(turn),
                    "finish_reason": self._finish_reason(turn),
                }
            ],
        }
        return JSONResponse(body, headers=self._headers())

    def _stream_error(self, message: str) -> dict[str, Any]:
        return {
            "object": "error",
            "message": message,
            "type": "internal_server_error",
            "param": None,
            "code": None,
        }

    def _tool_call_deltas(self, turn: ResolvedTurn) -> list[list[dict[str, Any]]]:
        # Mistral streams each tool call whole, in a single chunk.
        return [
            [{"id": c.id, "function": {"name": c.name, "arguments": c.arguments}, "index": index}]
            for index, c in enumerate(turn.calls)
        ]

    def _final_usage(self, turn: ResolvedTurn, view: RequestView) -> dict[str, Any] | None:
        return self._usage(turn)
