"""`swarm serve`: the HTTP API over the run state in Redis (docs/serve.md).

Every answer is read from Redis when asked; runs are started and resumed as detached
CLI processes. Several servers and CLIs on the same Redis see the same runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import redis.asyncio as aioredis
from fastapi import FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from swarm import approvals
from swarm.blackboard.board import Blackboard
from swarm.blackboard.keys import RUNS, Keys
from swarm.errors import BadInput, SwarmError
from swarm.secrets import redact, secret_values
from swarm.server.auth import BearerAuth
from swarm.server.models import (
    EVENT_ID_PATTERN,
    RUN_ID_PATTERN,
    TASK_ID_PATTERN,
    Answered,
    ApprovalAnswer,
    ApprovalList,
    ApprovalView,
    ErrorResponse,
    Health,
    RunList,
    RunState,
    RunSummary,
    Session,
    StartRun,
)
from swarm.server.runs import ApiError, Processes
from swarm.server.runs import resume as resume_run
from swarm.server.runs import start as start_run

log = logging.getLogger(__name__)
T = TypeVar("T")

HEARTBEAT_S = 15.0
ATTACH_TTL_S = 30.0  # the server marks running runs attended for this long, renewed
ATTACH_EVERY_S = 10.0
ATTACH_RUNS = 200  # the most recent runs the server attends to
STOP_REASON = "stopped through the API (swarm serve)"

RunId = Annotated[str, PathParam(pattern=RUN_ID_PATTERN)]
TaskId = Annotated[str, PathParam(pattern=TASK_ID_PATTERN)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (401, "missing or wrong bearer token"),
        (404, "no such run (or task, or approval)"),
        (409, "the run is not in a state that allows it"),
        (422, "invalid request, or a config that does not validate (the message locates it)"),
    )
}
REPORT_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "json": "application/json",
    "junit": "application/xml",
}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_app(
    redis_url: str, workdir: Path, token: str, *, heartbeat_s: float = HEARTBEAT_S, who: str = ""
) -> Any:
    """The ASGI app (the FastAPI app wrapped in the bearer-token check)."""
    procs = Processes(workdir)
    me = who or f"server:{socket.gethostname()}:{os.getpid()}"

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        attending = asyncio.create_task(_attend(redis_url, me, procs))
        try:
            yield
        finally:
            attending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await attending

    app = FastAPI(
        title="swarm",
        version=_version(),
        summary="Runs, their event streams and the approvals of a swarm, over Redis",
        lifespan=lifespan,
    )

    # -- errors: always {"error": {"code", "message"}} -----------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, BadInput):
            return _error(422, "bad_input", redact(str(exc), secret_values()))
        log.error("internal error: %s", redact(f"{type(exc).__name__}: {exc}", secret_values()))
        return _error(500, "internal", "internal server error")

    async def with_run(run_id: str, fn: Callable[[Blackboard], Awaitable[T]]) -> T:
        board = Blackboard(redis_url, run_id)
        try:
            if not await board.exists():
                raise ApiError(404, "not_found", f"no run {run_id!r}")
            return await fn(board)
        finally:
            await board.close()

    # -- routes --------------------------------------------------------------------------
    @app.get("/health", response_model=Health, tags=["server"])
    async def health() -> Health:
        """Open (no token): whether the server answers."""
        return Health(status="ok", version=_version())

    @app.post("/runs", status_code=201, response_model=RunState, responses=ERRORS, tags=["runs"])
    async def start(body: StartRun) -> RunState:
        """Start a swarm, validated as `swarm launch` validates it (a bad config is a 422
        naming the file, line and field)."""
        run_id = await start_run(body, workdir, redis_url, procs)
        await with_run(run_id, lambda board: approvals.attach(board, me, ATTACH_TTL_S))
        return RunState(run_id=run_id, state="running")

    @app.get("/runs", response_model=RunList, responses=ERRORS, tags=["runs"])
    async def list_runs(
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: Annotated[str | None, Query(pattern=RUN_ID_PATTERN)] = None,
    ) -> RunList:
        """Runs, newest first; `next_cursor` pages on."""
        r: Any = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            start = 0
            if cursor is not None:
                rank = await r.zrevrank(RUNS, cursor)
                if rank is None:
                    raise ApiError(422, "bad_cursor", f"cursor: no run {cursor!r}")
                start = int(rank) + 1
            ids = await r.zrevrange(RUNS, start, start + limit)  # one more: is there a next?
            pipe = r.pipeline(transaction=False)
            for i in ids[:limit]:
                pipe.hmget(Keys(i).meta, "name", "state", "created", "finished")
            rows = await pipe.execute() if ids else []
        finally:
            await r.aclose()
        runs = [
            RunSummary(
                run_id=i,
                name=name or "",
                state=state or "unknown",
                created_ms=int(created or 0),
                finished_ms=int(finished or 0),
            )
            for i, (name, state, created, finished) in zip(ids[:limit], rows, strict=True)
        ]
        more = len(ids) > limit
        return RunList(runs=runs, next_cursor=runs[-1].run_id if more and runs else None)

    @app.get("/runs/{run_id}", responses=ERRORS, tags=["runs"])
    async def status(run_id: RunId) -> dict[str, Any]:
        """The status snapshot: the same JSON as `swarm status --json`."""
        from swarm.status import snapshot

        async def go(board: Blackboard) -> dict[str, Any]:
            return (await snapshot(board)).model_dump()

        return await with_run(run_id, go)

    @app.post("/runs/{run_id}/stop", response_model=RunState, responses=ERRORS, tags=["runs"])
    async def stop(run_id: RunId) -> RunState:
        """As `swarm stop`: agents hand their tasks back; resume continues."""

        async def go(board: Blackboard) -> RunState:
            if await board.request_stop(STOP_REASON):
                return RunState(run_id=run_id, state="stopping")
            return RunState(run_id=run_id, state=await board.run_state())

        return await with_run(run_id, go)

    @app.post("/runs/{run_id}/resume", response_model=RunState, responses=ERRORS, tags=["runs"])
    async def resume(run_id: RunId) -> RunState:
        """As `swarm resume RUN`: the run goes on from its stored state."""

        async def go(board: Blackboard) -> RunState:
            await resume_run(board, procs)
            await approvals.attach(board, me, ATTACH_TTL_S)
            return RunState(run_id=run_id, state="running")

        return await with_run(run_id, go)

    @app.get(
        "/runs/{run_id}/events",
        response_class=EventSourceResponse,
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "server-sent events: id = the Redis stream id, event = the "
                "event's type, data = the event as JSON (a line of `swarm launch --json`)",
            },
            **ERRORS,
        },
        tags=["runs"],
    )
    async def events(
        run_id: RunId,
        last_event_id_q: Annotated[
            str | None, Query(alias="last_event_id", pattern=EVENT_ID_PATTERN)
        ] = None,
        last_event_id_h: Annotated[
            str | None, Header(alias="Last-Event-ID", pattern=EVENT_ID_PATTERN)
        ] = None,
    ) -> EventSourceResponse:
        """The run's events as they happen, from after `Last-Event-ID` (the header, or
        `?last_event_id=`); the stream ends after the run's final `run_finished`."""
        after = last_event_id_h or last_event_id_q or "0-0"

        async def check(board: Blackboard) -> None:
            return None

        await with_run(run_id, check)
        return EventSourceResponse(
            _stream(redis_url, run_id, after),
            ping=heartbeat_s,
            ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
        )

    @app.get(
        "/runs/{run_id}/sessions/{task}", response_model=Session, responses=ERRORS, tags=["runs"]
    )
    async def session(run_id: RunId, task: TaskId) -> Session:
        """A task's conversation as stored (every message, in order)."""

        async def go(board: Blackboard) -> Session:
            if await board.task(task) is None:
                raise ApiError(404, "not_found", f"run {run_id!r} has no task {task!r}")
            return Session(run_id=run_id, task=task, messages=await board.session(task))

        return await with_run(run_id, go)

    @app.get(
        "/runs/{run_id}/report",
        responses={
            200: {"content": {t: {"schema": {"type": "string"}} for t in REPORT_TYPES.values()}},
            **ERRORS,
        },
        response_class=PlainTextResponse,
        tags=["runs"],
    )
    async def report(run_id: RunId, format: Literal["md", "json", "junit"] = "md") -> Response:
        """The progress report (Markdown), JSON, or JUnit XML, as `swarm report`."""
        from swarm.report import load, render

        snap, times = await with_run(run_id, load)
        return Response(render(snap, format, times), media_type=REPORT_TYPES[format])

    @app.get(
        "/runs/{run_id}/diff",
        responses={200: {"content": {"text/x-diff": {"schema": {"type": "string"}}}}, **ERRORS},
        response_class=PlainTextResponse,
        tags=["runs"],
    )
    async def diff(run_id: RunId) -> Response:
        """A worktree run's change as one patch, as `swarm diff`."""
        from swarm.plan import load_plan
        from swarm.results import run_patch

        async def go(board: Blackboard) -> str:
            settings = (await load_plan(board)).workspace
            if settings.mode != "worktree":
                raise ApiError(
                    409, "not_worktree", "this run worked in place (workspace: shared); no patch"
                )
            try:
                return await asyncio.to_thread(run_patch, settings)
            except SwarmError as exc:
                raise ApiError(409, "no_patch", redact(str(exc), secret_values())) from None

        return Response(await with_run(run_id, go), media_type="text/x-diff")

    @app.get(
        "/runs/{run_id}/approvals",
        response_model=ApprovalList,
        responses=ERRORS,
        tags=["approvals"],
    )
    async def pending(run_id: RunId) -> ApprovalList:
        """The tool calls waiting for a person's answer."""

        async def go(board: Blackboard) -> ApprovalList:
            found = await approvals.pending(board)
            return ApprovalList(
                approvals=[ApprovalView(**a.model_dump(exclude={"run_id"})) for a in found]
            )

        return await with_run(run_id, go)

    @app.post(
        "/runs/{run_id}/approvals/{approval_id}",
        response_model=Answered,
        responses=ERRORS,
        tags=["approvals"],
    )
    async def answer(
        run_id: RunId,
        approval_id: Annotated[str, PathParam(pattern=r"^ap-[0-9a-f]{1,32}$")],
        body: ApprovalAnswer,
    ) -> Answered:
        """Allow or deny a pending call; `remember: always` allows its rule for the rest
        of the run."""

        async def go(board: Blackboard) -> Answered:
            if await approvals.answer(
                board, approval_id, body.decision, body.remember, body.message, by="person"
            ):
                return Answered(id=approval_id, decision=body.decision, remember=body.remember)
            if await approvals.answer_of(board, approval_id) is not None:
                raise ApiError(409, "already_answered", f"approval {approval_id} was answered")
            raise ApiError(404, "not_found", f"no pending approval {approval_id}")

        return await with_run(run_id, go)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearer": []}]
            schema["paths"]["/health"]["get"]["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return BearerAuth(app, token)


async def _stream(redis_url: str, run_id: str, after: str) -> AsyncIterator[ServerSentEvent]:
    """Events after ``after``, then as they come; ends after the run's final
    ``run_finished`` (a stopped run that was resumed goes on past its earlier ones)."""
    board = Blackboard(redis_url, run_id)
    try:
        if await _over(board, after):
            return
        while True:
            batch = await board.events(after=after, count=500)
            if not batch:
                await board.wait_events(after, block_ms=5000, count=1)
                continue
            for e in batch:
                yield ServerSentEvent(data=e.model_dump_json(), event=e.type, id=e.id)
                after = e.id
                if e.type == "run_finished" and await _final(board, e.id):
                    return
    finally:
        await board.close()


async def _final(board: Blackboard, event_id: str) -> bool:
    """Whether the ``run_finished`` at ``event_id`` is the run's last word: the run is not
    running and was not resumed after it (a resume stores ``running`` first)."""
    if await board.run_state() == "running":
        return False
    after = event_id
    while True:
        rows = await board.events(after=after, count=1000)
        if not rows:
            return True
        if any(e.type == "run_resumed" for e in rows):
            return False
        after = rows[-1].id


async def _over(board: Blackboard, after: str) -> bool:
    """A reconnect after the final ``run_finished`` gets an empty stream at once."""
    if after == "0-0" or await board.run_state() == "running":
        return False
    top = "+"
    while True:  # back from the end to the latest run_finished or run_resumed
        rows = await board.r.xrevrange(board.k.events, max=top, count=100)
        rows = [r for r in rows if r[0] != top]
        if not rows:
            return False
        for event_id, fields in rows:
            kind = fields.get("type")
            if kind == "run_resumed":
                return False
            if kind == "run_finished":
                return _stream_id(after) >= _stream_id(event_id)
        top = rows[-1][0]


def _stream_id(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


async def _attend(redis_url: str, who: str, procs: Processes) -> None:
    """Mark every running run attended while the server is up (`ask` calls wait for an
    answer through the API), and reap finished child processes."""
    r: Any = aioredis.Redis.from_url(redis_url, decode_responses=True)
    attended: set[str] = set()
    try:
        while True:
            procs.reap()
            with contextlib.suppress(Exception):  # Redis away for a moment: try again
                ids = await r.zrevrange(RUNS, 0, ATTACH_RUNS - 1)
                pipe = r.pipeline(transaction=False)
                for i in ids:
                    pipe.hget(Keys(i).meta, "state")
                states = await pipe.execute() if ids else []
                running = [i for i, s in zip(ids, states, strict=True) if s == "running"]
                for i in running:
                    board = Blackboard(redis_url, i)
                    try:
                        await approvals.attach(board, who, ATTACH_TTL_S)
                    finally:
                        await board.close()
                attended = set(running) | attended
            await asyncio.sleep(ATTACH_EVERY_S)
    finally:
        for i in attended:
            with contextlib.suppress(Exception):
                board = Blackboard(redis_url, i)
                try:
                    await asyncio.shield(approvals.detach(board, who))
                finally:
                    await board.close()
        await r.aclose()


def _version() -> str:
    from swarm import version

    return version()
