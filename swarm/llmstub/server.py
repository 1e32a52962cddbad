"""The HTTP side: a Starlette app serving the script, request recording, and the uvicorn thread."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from swarm.llmstub.anthropic_format import AnthropicFormat
from swarm.llmstub.cache import PromptCache
from swarm.llmstub.openai_format import MistralFormat, OpenAIFormat
from swarm.llmstub.script import Expect, StubScript, load_script
from swarm.llmstub.wire import (
    RequestView,
    ResolvedTurn,
    StubHTTPError,
    WireFormat,
    bad_request,
    estimate_tokens,
    resolve_turn,
    retry_headers,
    summary_turn,
)

REDACTED_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"}
)
REDACTED = "<redacted>"
STREAM_ERROR_MESSAGE = "stub: injected stream error"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stub saw it, and what it answered."""

    seq: int
    method: str
    path: str
    provider: str  # "anthropic" | "openai" | "mistral" | "unknown"
    headers: dict[str, str]  # lower-case names, secrets redacted
    body: Any  # parsed JSON, or the raw text if it was not JSON
    agent: str | None
    task: str | None
    conversation: str | None  # the matched script entry, as "agent/task" ("*" = any)
    # 0-based turn index (= assistant messages in the request, plus the turns a
    # compaction summarised); None for a summary request
    turn: int | None
    status: int | None  # None when the connection was dropped
    fault: str | None  # "http" | "drop" | "stream_error" when a fault was served
    error: str | None  # the error message sent, if any
    received_at: float
    responded_at: float
    purpose: str = "turn"  # or "summary": a compaction's request for a summary
    tokens: int = 0  # the request's size as the stub counts it (JSON characters / 4)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RequestLog:
    """Thread-safe, append-only list of recorded requests, mirrored to a JSON-lines file."""

    def __init__(self, record_path: Path | None = None) -> None:
        self.record_path = Path(record_path) if record_path is not None else None
        self._items: list[RecordedRequest] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def append(self, record: RecordedRequest) -> None:
        with self._lock:
            self._items.append(record)
            if self.record_path is not None:
                with self.record_path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
                    fh.flush()
            self._changed.notify_all()

    def next_seq(self) -> int:
        """Numbers requests 1, 2, ... in arrival order (not reset by clear())."""
        with self._lock:
            self._seq += 1
            return self._seq

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `count` requests are recorded (or timeout); returns a snapshot."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._items) >= count, timeout)
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[RecordedRequest]:
        return iter(self.snapshot())

    def __getitem__(self, index: int) -> RecordedRequest:
        with self._lock:
            return self._items[index]


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name.lower(): (REDACTED if name.lower() in REDACTED_HEADERS else value)
        for name, value in headers.items()
    }


def check_expect(expect: Expect, view: RequestView) -> str | None:
    """What the request lacks, or None when it satisfies every expectation."""

    def shown(value: str | None) -> str:
        if value is None:
            return "nothing"
        return repr(value if len(value) <= 300 else value[:300] + "...")

    if expect.model is not None and view.model != expect.model:
        return f"model {expect.model!r}, got {view.model!r}"
    if expect.system_contains is not None and expect.system_contains not in (view.system or ""):
        return f"the system prompt to contain {expect.system_contains!r}, got {shown(view.system)}"
    needle = expect.last_user_text_contains
    if needle is not None and needle not in (view.last_user_text or ""):
        return f"the last user message to contain {needle!r}, got {shown(view.last_user_text)}"
    needle = expect.last_tool_result_contains
    if needle is not None and not any(needle in result for result in view.last_tool_results):
        got = " | ".join(view.last_tool_results) if view.last_tool_results else None
        return f"a tool result in the last message to contain {needle!r}, got {shown(got)}"
    missing = [name for name in expect.tools_include if name not in view.tool_names]
    if missing:
        return f"tools {missing} to be offered, got {view.tool_names}"
    return None


class _NoResponse(Response):
    """Sends nothing: the connection was already aborted."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


DropHook = Callable[[tuple[str, int] | None], bool]


@dataclass
class Chaos:
    """Faults an operator turns on for the whole server, on top of the script: a provider
    outage (every request answers ``status`` until ``until``), a share of random errors,
    and keys the provider rejects (401), as when a key is revoked. Set through
    ``StubServer.chaos(...)`` or ``POST /_stub/chaos`` (a JSON object of these fields;
    ``outage_s`` sets ``until`` from now)."""

    status: int = 529
    until: float = 0.0  # epoch seconds
    random_rate: float = 0.0
    random_statuses: tuple[int, ...] = (429, 529)
    rejected_keys: frozenset[str] = frozenset()

    def update(self, data: dict[str, Any]) -> None:
        if "outage_s" in data:
            self.until = time.time() + float(data["outage_s"])
        if "status" in data:
            self.status = int(data["status"])
        if "random_rate" in data:
            self.random_rate = float(data["random_rate"])
        if "random_statuses" in data:
            self.random_statuses = tuple(int(x) for x in data["random_statuses"])
        if "rejected_keys" in data:
            self.rejected_keys = frozenset(str(k) for k in data["rejected_keys"])

    def fault_for(self, key: str, rng: random.Random) -> int | None:
        if key and key in self.rejected_keys:
            return 401
        if time.time() < self.until:
            return self.status
        if self.random_rate and rng.random() < self.random_rate:
            return rng.choice(self.random_statuses)
        return None


def _request_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return request.headers.get("x-api-key") or auth.removeprefix("Bearer ").strip()


class StubApp:
    """The ASGI application: validates, matches the script, injects faults, answers, records."""

    def __init__(self, script: StubScript, log: RequestLog) -> None:
        self.script = script
        self.log = log
        self.drop_connection: DropHook | None = None
        self.chaos = Chaos()
        self._rng = random.Random(1)  # reproducible; Random(0) happens to start high
        self._attempts: dict[tuple[int, str | None, str | None, int], int] = {}
        self._cache = PromptCache()
        self._lock = threading.Lock()
        self.anthropic = AnthropicFormat()
        self.openai = OpenAIFormat()
        self.mistral = MistralFormat()
        self.asgi = Starlette(
            routes=[
                Route("/v1/messages", self._anthropic_endpoint, methods=["POST"]),
                Route("/v1/chat/completions", self._chat_endpoint, methods=["POST"]),
                Route("/openai/v1/chat/completions", self._openai_endpoint, methods=["POST"]),
                Route("/mistral/v1/chat/completions", self._mistral_endpoint, methods=["POST"]),
                Route("/_stub/chaos", self._chaos_endpoint, methods=["POST", "GET"]),
                Route(
                    "/{path:path}",
                    self._not_found,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                ),
            ]
        )

    def reset_faults(self) -> None:
        with self._lock:
            self._attempts.clear()

    # --- endpoints --------------------------------------------------------------------

    async def _anthropic_endpoint(self, request: Request) -> Response:
        return await self.handle(request, self.anthropic)

    async def _chat_endpoint(self, request: Request) -> Response:
        agent = request.headers.get("user-agent", "").lower()
        mistral = "mistral" in agent
        return await self.handle(request, self.mistral if mistral else self.openai)

    async def _chaos_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            with self._lock:
                self.chaos.update(await request.json())
        c = self.chaos
        return JSONResponse(
            {
                "status": c.status,
                "until": c.until,
                "random_rate": c.random_rate,
                "random_statuses": list(c.random_statuses),
                "rejected_keys": len(c.rejected_keys),
            }
        )

    async def _openai_endpoint(self, request: Request) -> Response:
        return await self.handle(request, self.openai)

    async def _mistral_endpoint(self, request: Request) -> Response:
        return await self.handle(request, self.mistral)

    async def _not_found(self, request: Request) -> Response:
        received = time.time()
        raw = await request.body()
        message = f"stub: no route for {request.method} {request.url.path}"
        self.log.append(
            RecordedRequest(
                seq=self.log.next_seq(),
                method=request.method,
                path=request.url.path,
                provider="unknown",
                headers=redact_headers(request.headers),
                body=_parse_body(raw),
                agent=None,
                task=None,
                conversation=None,
                turn=None,
                status=404,
                fault=None,
                error=message,
                received_at=received,
                responded_at=time.time(),
            )
        )
        return JSONResponse({"error": {"type": "not_found_error", "message": message}}, 404)

    # --- the request cycle ------------------------------------------------------------

    async def handle(self, request: Request, fmt: WireFormat) -> Response:
        received = time.time()
        raw = await request.body()
        body = _parse_body(raw)
        facts: dict[str, Any] = {
            "agent": None,
            "task": None,
            "conversation": None,
            "turn": None,
            "purpose": "turn",
            "tokens": estimate_tokens(len(raw)),
        }

        def record(status: int | None, fault: str | None = None, error: str | None = None) -> None:
            self.log.append(
                RecordedRequest(
                    seq=self.log.next_seq(),
                    method=request.method,
                    path=request.url.path,
                    provider=fmt.name,
                    headers=redact_headers(request.headers),
                    body=body,
                    status=status,
                    fault=fault,
                    error=error,
                    received_at=received,
                    responded_at=time.time(),
                    **facts,
                )
            )

        with self._lock:
            chaos = self.chaos.fault_for(_request_key(request), self._rng)
        if chaos is not None:
            message = (
                "stub: invalid x-api-key"
                if chaos == 401
                else f"stub: injected HTTP {chaos} (operator chaos)"
            )
            record(chaos, "chaos", message)
            return fmt.error_response(chaos, message)
        try:
            if not isinstance(body, dict):
                raise bad_request("stub: the request body must be a JSON object")
            fmt.validate(body, request.headers)
            view = fmt.view(body)
            match = self.script.match
            agent = match.extract("agent", view.system)
            task = match.extract("task", view.first_user_text)
            turn_index = match.turns_before(view.first_user_text) + view.assistant_count
            facts.update(agent=agent, task=task, turn=turn_index)
            window = self.script.context_window
            if window is not None and facts["tokens"] + view.max_tokens > window:
                record(400, "overflow", "prompt is too long")
                return fmt.overflow_response(facts["tokens"] + view.max_tokens, window)
            found = self.script.find(agent, task)
            if found is None:
                raise bad_request(self._no_conversation(agent, task, view))
            conv_index, conv = found
            facts["conversation"] = conv.label
            if match.is_summary_request(view.last_user_text):
                facts.update(turn=None, purpose="summary")
                summary = conv.summary or (
                    f"Summary (scripted server): {turn_index} turns so far; the last tool "
                    f"results began: {' | '.join(r[:80] for r in view.last_tool_results)}"
                )
                resolved = resolve_turn(summary_turn(summary), fmt, "summary", len(raw))
                record(200)
                if view.stream:
                    return StreamingResponse(
                        fmt.stream(resolved, view, 0.0, None), media_type="text/event-stream"
                    )
                return fmt.response(resolved, view)
            where = f"agent {agent!r} task {task!r}"
            if conv.label != f"{agent}/{task}":
                where += f" (conversation {conv.label})"
            if turn_index >= len(conv.turns):
                raise bad_request(
                    f"stub: no scripted turn {turn_index + 1} for {where} (the script has "
                    f"{len(conv.turns)} turns; the request has {turn_index} assistant messages)"
                )
            turn = conv.turns[turn_index]
            if turn.expect is not None:
                problem = check_expect(turn.expect, view)
                if problem is not None:
                    raise bad_request(f"stub: turn {turn_index + 1} for {where} expected {problem}")
            key = (conv_index, agent, task, turn_index)
            with self._lock:
                attempt = self._attempts.get(key, 0)
                self._attempts[key] = attempt + 1
        except StubHTTPError as exc:
            record(exc.status, error=exc.message)
            return fmt.error_response(exc.status, exc.message)

        fault = turn.faults[attempt] if attempt < len(turn.faults) else None
        stream_fail: str | None = None
        if fault is not None and fault.kind == "overflow":
            record(400, "overflow", "prompt is too long (injected)")
            return fmt.overflow_response(facts["tokens"] + view.max_tokens, facts["tokens"])
        if fault is not None:
            if fault.kind == "http":
                assert fault.status is not None
                message = (
                    fault.message or f"stub: injected HTTP {fault.status} (attempt {attempt + 1})"
                )
                record(fault.status, "http", message)
                headers = retry_headers(fault.retry_after, fault.retry_after_ms)
                return fmt.error_response(fault.status, message, headers)
            if fault.kind == "drop":
                record(None, "drop", "connection dropped")
                if self.drop_connection is not None and self.drop_connection(
                    request.scope.get("client")
                ):
                    await asyncio.sleep(0.02)  # let the transport report the loss
                    return _NoResponse()
                raise RuntimeError("stub: cannot drop the connection")  # uvicorn answers 500
            stream_fail = fault.message or STREAM_ERROR_MESSAGE
            if not view.stream:
                record(500, "stream_error", stream_fail)
                return fmt.error_response(500, stream_fail)

        if turn.delay_s:
            await asyncio.sleep(turn.delay_s)
        seed = f"{conv_index}|{agent}|{task}|{turn_index}"
        resolved = resolve_turn(turn, fmt, seed, len(raw))
        if self.script.prompt_cache and turn.usage is None:
            self._apply_cache(fmt.name, body, resolved)
        record(200, "stream_error" if stream_fail else None, stream_fail)
        if view.stream:
            return StreamingResponse(
                fmt.stream(resolved, view, turn.chunk_delay_s, stream_fail),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        return fmt.response(resolved, view)

    def _apply_cache(self, provider: str, body: dict[str, Any], turn: ResolvedTurn) -> None:
        """Split the estimated input into cache reads, writes and the rest."""
        read, write = self._cache.usage(provider, body, turn.input_tokens)
        turn.cache_read_tokens, turn.cache_creation_tokens = read, write
        turn.input_tokens = max(turn.input_tokens - read - write, 0)

    def _no_conversation(self, agent: str | None, task: str | None, view: RequestView) -> str:
        message = (
            f"stub: no conversation for agent {agent!r} task {task!r}; "
            f"scripted: {self.script.describe()}"
        )
        if agent is None:
            message += (
                f" (the agent pattern {self.script.match.agent!r} found nothing in the "
                f"system prompt {_preview(view.system)})"
            )
        if task is None:
            message += (
                f" (the task pattern {self.script.match.task!r} found nothing in the "
                f"first user message {_preview(view.first_user_text)})"
            )
        return message


def _preview(text: str | None) -> str:
    if text is None:
        return "(none)"
    return repr(text if len(text) <= 120 else text[:120] + "...")


def _parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class StubServer:
    """The scripted LLM server on a real socket, run by uvicorn in a daemon thread.

    Use as a context manager or call start()/stop(). `base_url` is `http://HOST:PORT`.
    """

    def __init__(
        self,
        script: StubScript,
        record_path: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.script = script
        self.record_path = Path(record_path) if record_path is not None else None
        self.host = host
        self.port = port
        self._log = RequestLog(self.record_path)
        self._app = StubApp(script, self._log)
        self._app.drop_connection = self._drop_connection
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def requests(self) -> RequestLog:
        return self._log

    @property
    def app(self) -> StubApp:
        return self._app

    def reset_faults(self) -> None:
        """Forget fault attempt counters, so every turn serves its faults again."""
        self._app.reset_faults()

    def chaos(self, **fields: Any) -> None:
        """Turn server-wide faults on or off (see ``Chaos``)."""
        with self._app._lock:
            self._app.chaos.update(fields)

    def start(self, timeout: float = 10.0) -> StubServer:
        if self._thread is not None:
            raise RuntimeError("stub server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
        # proto says TCP, and accepted sockets inherit this one's. With Nagle on, every
        # request on a kept-alive connection waited ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.listen(128)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app.asgi,
            log_config=None,
            log_level="warning",
            access_log=False,
            http="h11",
            ws="none",
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server

        def run() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # reported by start() / stop()
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"llmstub:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"stub server failed to start: {self._error!r}")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = None
        self._thread = None

    def _drop_connection(self, client: tuple[str, int] | None) -> bool:
        server = self._server
        if server is None or client is None:
            return False
        for connection in list(server.server_state.connections):
            if getattr(connection, "client", None) == tuple(client):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
                    return True
        return False

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(
    script_path: Path | str,
    host: str = "127.0.0.1",
    port: int = 0,
    record_path: Path | str | None = None,
) -> None:
    """Serve a script until SIGINT/SIGTERM; prints `stub listening on http://HOST:PORT` first."""
    script = load_script(Path(script_path))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = StubServer(
        script, Path(record_path) if record_path is not None else None, host=host, port=port
    )
    try:
        server.start()
        print(f"stub listening on {server.base_url}", flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
