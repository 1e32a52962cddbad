r"""A local, scripted LLM server speaking the real Anthropic, OpenAI and Mistral wire formats.

No machine running swarm's tests reaches an LLM API or holds a key. `StubServer` is a real
HTTP server on 127.0.0.1 (random port by default) that the *official* SDKs talk to through
their base URL, so request building, streaming, usage and error handling are exercised end
to end.

Endpoints
---------
- ``POST /v1/messages`` - Anthropic Messages API (JSON, or SSE when ``"stream": true``:
  message_start, ping, content_block_start/delta(text_delta | input_json_delta)/stop,
  message_delta (stop_reason + usage), message_stop; ``event: error`` for stream faults).
- ``POST /v1/chat/completions`` - OpenAI Chat Completions; requests whose ``User-Agent``
  names the ``mistralai`` SDK are answered in the Mistral dialect. Streams are
  ``data: {...}`` chunks ending with ``data: [DONE]``; with
  ``stream_options.include_usage`` OpenAI gets a final usage chunk (``choices: []``),
  Mistral always carries usage on its final chunk.
- ``POST /openai/v1/chat/completions`` and ``POST /mistral/v1/chat/completions`` force
  one dialect whatever the User-Agent.

Configuring each SDK
--------------------
::

    server = StubServer(load_script(path)).start()      # or: with StubServer(...) as server:
    anthropic.Anthropic(base_url=server.base_url, api_key="stub", max_retries=0)
    openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="stub", max_retries=0)
    mistralai.client.Mistral(api_key="stub", server_url=server.base_url)
    # (or server_url=f"{server.base_url}/mistral" to force the Mistral dialect)

Anthropic appends ``/v1/messages`` to its base URL; OpenAI appends ``/chat/completions``
to its base URL, hence the ``/v1``; Mistral appends ``/v1/chat/completions`` to
``server_url``. Any non-empty key is accepted (Anthropic: ``x-api-key`` or
``Authorization: Bearer``, which anthropic>=2 sends; OpenAI/Mistral: ``Authorization:
Bearer``); a missing key gets 401 like the real APIs.

Script
------
YAML (``load_script``) or a dict (``StubScript.model_validate``)::

    match:                                   # optional; these are the defaults
      agent: 'Agent: (?P<agent>[A-Za-z0-9_.-]+)'   # searched in the system prompt
      task: 'Task (?P<task>[A-Za-z0-9_.-]+):'      # searched in the first user message
      compact: '\[swarm: context compaction\]'   # in the last user text: a summary request
      compacted: '\[Conversation compacted after (?P<turns>[0-9]+) turns'  # turns before
    context_window: 16000                    # optional: larger requests get the overflow error
    prompt_cache: false                      # true: model the providers' prompt caches
    conversations:
      - agent: fixer                         # omitted = any agent
        task: fix-bug                        # omitted = any task
        summary: "I fixed half of it."       # the answer to a compaction's summary request
        turns:
          - text: "I'll read the file first."
            tool_calls:                      # several = parallel tool calls in one turn
              - {name: read, input: {file_path: calc.py}}
            usage: {input_tokens: 1200, output_tokens: 40,
                    cache_read_tokens: 0, cache_creation_tokens: 0}
            delay_s: 0                       # sleep before the (non-fault) answer
            chunk_delay_s: 0                 # sleep between stream chunks
            expect:                          # failing one -> 400 saying what was expected
              last_tool_result_contains: passed
              last_user_text_contains: ...
              system_contains: ...
              tools_include: [read, grep]
              model: claude-x
            faults:                          # served on the first N attempts of this turn
              - {status: 429, retry_after: 1}    # or retry_after_ms: 1500; message: "..."
              - {status: 529}
              - {kind: drop}                     # connection closed, no response
              - {kind: stream_error}             # streams: some text then an error; else 500
              - {kind: overflow}                 # the provider's "prompt is too long" (400)
          - thinking: "Let me look."         # Anthropic thinking block (signature made up
            signature: "EqQB..."             #   if omitted); redacted_thinking: "<data>"
            text: "Fixed."                   # no tool_calls -> end_turn / stop
          - refusal: "I can't help with that."   # Anthropic stop_reason refusal; OpenAI
                                                 #   `refusal` field
          - {text: "The answer is", stop_reason: max_tokens}   # or pause (pause_turn)

Rules: the turn index is the number of assistant messages in the request (plus the
turns a compaction summarised, read from the `compacted` pattern in the first user
message), so the server
is stateless apart from fault counters (per conversation entry, agent, task and turn), and a
restarted client can replay any turn. The most specific conversation wins (agent+task, then
agent only, then task only, then the catch-all; file order breaks ties). Unmatched requests
and turns past the end of a conversation get HTTP 400 in the provider's error shape,
explaining what was expected and what arrived. Requests are validated like the real API
(role order, tool_use/tool_result and tool_call_id pairing, tool schemas, max_tokens for
Anthropic, 9-character alphanumeric tool-call ids for Mistral) and rejected with 400.

Usage: Anthropic gets ``input_tokens``, ``output_tokens``, ``cache_read_input_tokens`` and
``cache_creation_input_tokens`` as scripted. OpenAI/Mistral get ``prompt_tokens`` =
input + cache_read + cache_creation, ``completion_tokens`` = output,
``prompt_tokens_details.cached_tokens`` = cache_read (OpenAI also
``cache_write_tokens`` = cache_creation when non-zero). Unscripted input/output counts are
estimated as request JSON chars / 4 and output chars / 4.

With `context_window`, a request whose size (JSON characters / 4) plus its max_tokens is
larger is answered with the provider's overflow error (Anthropic `prompt is too long: N
tokens > M maximum`, OpenAI `context_length_exceeded`, Mistral `too large for model`). A
request whose last user text matches `compact` is a summary request: it is answered with
the conversation's `summary` (or a made-up one) and uses no scripted turn. With
`prompt_cache: true`, unscripted usage is split into cache reads, cache writes and the
rest by a model of the providers' caches (`swarm/llmstub/cache.py`: Anthropic reads the
longest prefix cached at an earlier request's `cache_control` breakpoint and writes up
to this request's last one; OpenAI reads the longest seen prefix of 1024+ tokens).

Every request is recorded in ``server.requests`` (a thread-safe ``RequestLog`` of
``RecordedRequest``) and, with ``record_path``, appended to that file as one JSON line,
flushed, with ``authorization`` / ``x-api-key`` values redacted. A record has ``purpose``
(``turn`` or ``summary``) and ``tokens`` (the request's size as the server counts it).
"""

from swarm.llmstub.script import (
    Conversation,
    Expect,
    Fault,
    MatchSpec,
    ScriptError,
    StubScript,
    ToolCallSpec,
    Turn,
    UsageSpec,
    load_script,
    parse_script,
)
from swarm.llmstub.server import (
    RecordedRequest,
    RequestLog,
    StubServer,
    serve_forever,
)

__all__ = [
    "Conversation",
    "Expect",
    "Fault",
    "MatchSpec",
    "RecordedRequest",
    "RequestLog",
    "ScriptError",
    "StubScript",
    "StubServer",
    "ToolCallSpec",
    "Turn",
    "UsageSpec",
    "load_script",
    "parse_script",
    "serve_forever",
]
