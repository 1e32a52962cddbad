"""`swarm run` and `swarm session ...` on the command line (logic: swarm.single and
swarm.sessions)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from swarm.errors import BadInput, SwarmError

session_app = typer.Typer(
    help="Stored sessions: list, show, export, continue, delete.", no_args_is_help=True
)

FormatOpt = Annotated[str, typer.Option("--format", help="text (default) | json (NDJSON events)")]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="provider/model (default: anthropic/claude-sonnet-5-5)"),
]
RepoOpt = Annotated[
    Path | None, typer.Option("--repo", help="the repository to work in (default: here)")
]
MaxUsdOpt = Annotated[float | None, typer.Option("--max-usd", min=0.000001, help="budget")]
MaxTurnsOpt = Annotated[int | None, typer.Option("--max-turns", min=1, help="model turns")]


def _fail(exc: SwarmError) -> None:
    from swarm.cli import _fail as fail

    fail(exc)


def _run(opts: Any) -> None:
    from swarm.single import run as do_run

    try:
        outcome = do_run(opts)
    except SwarmError as exc:
        _fail(exc)
    raise typer.Exit(outcome.exit_code)


def run(
    prompt: Annotated[str, typer.Argument(help="what the agent should do")],
    model: ModelOpt = None,
    repo: RepoOpt = None,
    continue_last: Annotated[
        bool,
        typer.Option("--continue", "-c", help="continue the latest `swarm run` session here"),
    ] = False,
    session: Annotated[
        str | None,
        typer.Option("--session", "-s", help="continue this session (RUN/TASK, or RUN)"),
    ] = None,
    fmt: FormatOpt = "text",
    max_usd: MaxUsdOpt = None,
    max_turns: MaxTurnsOpt = None,
) -> None:
    """One agent, in-process: the swarm's agent loop, tools and blackboard, streamed to the
    terminal (or NDJSON events with --format json). Exit codes as for launch."""
    from swarm.single import RunOptions

    _run(
        RunOptions(
            prompt=prompt,
            model=model,
            repo=repo,
            session=session,
            continue_last=continue_last,
            fmt=fmt,
            max_usd=max_usd,
            max_turns=max_turns,
        )
    )


async def _with_redis(fn: Any) -> Any:
    import redis.asyncio as aioredis

    from swarm.blackboard.connection import open_redis

    handle = open_redis()
    r = aioredis.Redis.from_url(handle.url, decode_responses=True)
    try:
        return await fn(r)
    finally:
        await r.aclose()
        handle.close()


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


@session_app.command("list")
def session_list(
    run: Annotated[str | None, typer.Option("--run", help="only this run's sessions")] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="at most this many (0: all; default 50, all of a --run)"),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Sessions, most recently updated first (from the sessions index, not a scan)."""
    from swarm.sessions import list_sessions

    try:
        n = limit if limit is not None else (0 if run else 50)
        rows = asyncio.run(_with_redis(lambda r: list_sessions(r, run, n)))
    except SwarmError as exc:
        _fail(exc)
    if json_out:
        print(json.dumps([row.model_dump() for row in rows], indent=1))
        return
    if not rows:
        print('no sessions yet; start one with swarm run "PROMPT"')
        return
    # plain columns: a session id is what one copies, so it is never cut short
    width = max(len(row.id) for row in rows)
    print(f"{'session':<{width}}  kind   status     agent         msgs  updated              task")
    for row in rows:
        print(
            f"{row.id:<{width}}  {row.kind:<5}  {row.status:<9}  {row.agent[:12]:<12}  "
            f"{row.messages:>4}  {_when(row.updated_ms)}  {row.title[:60]}"
        )


@session_app.command("show")
def session_show(
    session: Annotated[str, typer.Argument(help="session id (RUN/TASK, or RUN)")],
) -> None:
    """The conversation, readable, with tool calls and results folded to a line each."""
    from swarm.sessions import load_session, render_text

    try:
        view = asyncio.run(_with_redis(lambda r: load_session(r, session)))
    except SwarmError as exc:
        _fail(exc)
    sys.stdout.write(render_text(view))


@session_app.command("export")
def session_export(
    session: Annotated[str, typer.Argument(help="session id (RUN/TASK, or RUN)")],
    fmt: Annotated[str, typer.Option("--format", help="json | md")] = "json",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file, not stdout")
    ] = None,
) -> None:
    """The whole session: JSON (every stored message as stored) or Markdown."""
    from swarm.sessions import load_session, render_json, render_md

    if fmt not in ("json", "md"):
        _fail(BadInput(f"--format: {fmt!r} is not one of json, md"))
    try:
        view = asyncio.run(_with_redis(lambda r: load_session(r, session)))
    except SwarmError as exc:
        _fail(exc)
    text = render_json(view) + "\n" if fmt == "json" else render_md(view)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(BadInput(f"--output: cannot write {output}: {exc.strerror or exc}"))


@session_app.command("continue")
def session_continue(
    session: Annotated[str, typer.Argument(help="session id (RUN/TASK, or RUN)")],
    prompt: Annotated[str, typer.Argument(help="the next message")],
    model: ModelOpt = None,
    repo: RepoOpt = None,
    fmt: FormatOpt = "text",
    max_usd: MaxUsdOpt = None,
) -> None:
    """Continue a session with a new message (the same as swarm run --session ID)."""
    from swarm.single import RunOptions

    _run(
        RunOptions(prompt=prompt, model=model, repo=repo, session=session, fmt=fmt, max_usd=max_usd)
    )


@session_app.command("delete")
def session_delete(
    session: Annotated[str, typer.Argument(help="session id (RUN/TASK, or RUN)")],
) -> None:
    """Delete a session: a `swarm run` session with its run; a swarm task's conversation
    only (the task and the run's report stay)."""
    from swarm.sessions import delete_session

    try:
        print(asyncio.run(_with_redis(lambda r: delete_session(r, session))))
    except SwarmError as exc:
        _fail(exc)
