"""The `swarm` command line. Exit codes: 0 done, 1 a task failed, 2 bad input,
3 budget or time exhausted, 130 interrupted."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from swarm.cli_auth import auth_app
from swarm.errors import BadInput, SwarmError
from swarm.secrets import redact, secret_values

app = typer.Typer(
    help="A multi-agent coding swarm orchestrator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stub_app = typer.Typer(help="The local scripted LLM server.", no_args_is_help=True)
app.add_typer(stub_app, name="stub")
app.add_typer(auth_app, name="auth")
err = Console(stderr=True)


def _fail(exc: SwarmError) -> None:
    message = redact(str(exc), secret_values())  # e.g. the embedded Redis' password
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def _print_version(value: bool) -> None:
    if value:
        from swarm import version

        print(f"swarm {version()}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """A multi-agent coding swarm orchestrator."""


def _config_path(value: Path) -> Path:
    """`configs/NAME.yaml` that is not here: the copy shipped with swarm."""
    from swarm.paths import resolve_config

    found = resolve_config(value)
    if found != value:
        err.print(f"{value}: not here, using the one shipped with swarm ({found})", style="dim")
    return found


ConfigArg = Annotated[
    Path,
    typer.Argument(
        help="swarm config (YAML); configs/NAME.yaml, when not here, names a shipped one",
        callback=_config_path,
    ),
]
RepoOpt = Annotated[
    Path | None, typer.Option("--repo", help="target repository (overrides config)")
]
IncludeDirtyOpt = Annotated[
    bool,
    typer.Option(
        "--include-dirty",
        help="a git repository with uncommitted changes: make them the run's first commit",
    ),
]


@app.command()
def launch(
    config: ConfigArg,
    repo: RepoOpt = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="id for this run")] = None,
    no_dashboard: Annotated[
        bool, typer.Option("--no-dashboard", help="plain lines, no live view")
    ] = False,
    json_events: Annotated[bool, typer.Option("--json", help="print events as NDJSON")] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="merge the run's branch into yours if it succeeds")
    ] = False,
    include_dirty: IncludeDirtyOpt = False,
) -> None:
    """Run a swarm on a repository with a live dashboard."""
    from swarm.launch import launch as do_launch

    try:
        result = do_launch(
            config,
            repo,
            run_id,
            json_events,
            no_dashboard,
            include_dirty=include_dirty,
            apply=apply,
        )
    except SwarmError as exc:
        _fail(exc)
    raise typer.Exit(result.exit_code)


@app.command()
def ci(
    config: ConfigArg,
    repo: RepoOpt = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="default: gh-$GITHUB_RUN_ID (a re-run resumes it)"),
    ] = None,
    artifacts: Annotated[
        Path | None,
        typer.Option(
            "--artifacts",
            help="write report.md/json, junit.xml, events.jsonl, swarm.patch and state/ here "
            "(a re-run restores state/ and resumes)",
        ),
    ] = None,
    require_changes: Annotated[
        bool, typer.Option("--require-changes", help="a run that changed nothing fails")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", help="provider/model for every agent")
    ] = None,
    goal: Annotated[str | None, typer.Option("--goal", help="replace the config's goal")] = None,
    max_usd: Annotated[float | None, typer.Option("--max-usd", min=0.000001)] = None,
    max_wall_s: Annotated[float | None, typer.Option("--max-wall-s", min=0.001)] = None,
    json_events: Annotated[bool, typer.Option("--json", help="print events as NDJSON")] = False,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="write a JUnit XML report of the tasks here")
    ] = None,
    include_dirty: IncludeDirtyOpt = False,
) -> None:
    """Run a swarm headless as a CI job: a verdict that fails closed (exit 0 only when
    every task completed within the budget), $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY,
    artifacts, and a re-run that resumes the same run (docs/ci.md)."""
    from swarm.ci import CiOptions, run_ci
    from swarm.config import Overrides

    try:
        overrides = Overrides(model=model, goal=goal, max_usd=max_usd, max_wall_s=max_wall_s)
        code = run_ci(
            CiOptions(
                config=config,
                repo=repo,
                run_id=run_id,
                artifacts=artifacts,
                require_changes=require_changes,
                overrides=overrides,
                junit=junit,
                json_events=json_events,
                include_dirty=include_dirty,
            )
        )
    except SwarmError as exc:
        _fail(exc)
    raise typer.Exit(code)


@app.command()
def demo(
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard")] = False,
    json_events: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The offline demo: 4 agents fix a real bug in a copy of examples/calc, no keys needed."""
    from swarm.launch import demo as do_demo

    try:
        result = do_demo(Path.cwd(), json_events, no_dashboard)
    except SwarmError as exc:
        _fail(exc)
    raise typer.Exit(result.exit_code)


@app.command()
def resume(
    run: Annotated[str, typer.Argument(help="run id")],
    max_usd: Annotated[float | None, typer.Option("--max-usd", help="raise the budget")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens")] = None,
    max_wall_s: Annotated[float | None, typer.Option("--max-wall-s")] = None,
    no_dashboard: Annotated[bool, typer.Option("--no-dashboard")] = False,
    json_events: Annotated[bool, typer.Option("--json")] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="give failed tasks (and the dependants that failed with them) a new attempt",
        ),
    ] = False,
) -> None:
    """Continue a stopped run (budget, time, interrupt) from its stored state; a run whose
    coordinator died is taken over (at once when its process is known dead on this
    machine, else once its lease lapses)."""
    from swarm.launch import resume as do_resume

    budget = {
        k: v
        for k, v in (("max_usd", max_usd), ("max_tokens", max_tokens), ("max_wall_s", max_wall_s))
        if v is not None
    }
    for name, value in budget.items():
        if value <= 0:
            _fail(BadInput(f"--{name.replace('_', '-')}: must be greater than 0"))
    try:
        result = do_resume(run, json_events, no_dashboard, budget, retry_failed=retry_failed)
    except SwarmError as exc:
        _fail(exc)
    raise typer.Exit(result.exit_code)


@app.command()
def stop(run: Annotated[str, typer.Argument(help="run id")]) -> None:
    """Ask a running run to stop: agents hand back their tasks; `swarm resume` continues."""

    async def go(board: Any) -> bool:
        return bool(await board.request_stop("stopped by `swarm stop`"))

    try:
        stopped = asyncio.run(_with_board(run, go))
    except SwarmError as exc:
        _fail(exc)
    print(f"{run}: {'stopping' if stopped else 'not running'}")


async def _workspace_of(board: Any) -> Any:
    from swarm.plan import load_plan

    return (await load_plan(board)).workspace


@app.command()
def diff(
    run: Annotated[str | None, typer.Argument(help="run id (default: the latest)")] = None,
) -> None:
    """Print a worktree run's change as one patch (its base commit to its branch)."""
    from swarm.results import run_patch

    try:
        settings = asyncio.run(_with_board(run, _workspace_of))
        sys.stdout.write(run_patch(settings))
    except SwarmError as exc:
        _fail(exc)


@app.command()
def apply(
    run: Annotated[str | None, typer.Argument(help="run id (default: the latest)")] = None,
    repo: Annotated[
        Path | None, typer.Option("--repo", help="the checkout to merge into (default: the run's)")
    ] = None,
) -> None:
    """Merge a run's branch into your current branch; refuses (exit 2, nothing changed) on
    a dirty tree or a conflict."""
    from swarm.results import apply_run

    try:
        settings = asyncio.run(_with_board(run, _workspace_of))
        if settings.mode != "worktree":
            raise BadInput("RUN: this run worked in place (workspace: shared); nothing to apply")
        target = (repo or Path(settings.repo)).resolve()
        if not target.is_dir():
            raise BadInput(f"--repo: {target} is not a directory")
        print(apply_run(target, settings.run_branch))
    except SwarmError as exc:
        _fail(exc)


@app.command()
def clean(
    run: Annotated[str | None, typer.Argument(help="run id (default: every finished run)")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="also drop task branches with unmerged commits")
    ] = False,
) -> None:
    """Remove finished runs' worktrees and task branches (never an unmerged commit without
    --force); prints what it removed and the disk space freed."""
    from swarm.blackboard.board import Blackboard
    from swarm.plan import load_plan
    from swarm.results import clean_run

    async def one(board: Any) -> list[str]:
        meta = await board.meta()
        if meta.get("state") == "running":
            raise BadInput(f"RUN: run {board.run_id!r} is running; stop it before cleaning")
        settings = (await load_plan(board)).workspace
        if settings.mode != "worktree":
            return [f"{board.run_id}: worked in place (workspace: shared); nothing to clean"]
        return clean_run(settings, board.run_id, force).lines(board.run_id)

    async def every(board: Any) -> list[str]:
        lines: list[str] = []
        for run_id in await board.r.zrange(RUNS_KEY, 0, -1):
            other = Blackboard(board.url, run_id)
            try:
                meta = await other.meta()
                if meta.get("workspace") == "worktree" and meta.get("state") != "running":
                    lines += await one(other)
            finally:
                await other.close()
        return lines or ["no finished worktree runs to clean"]

    from swarm.blackboard.keys import RUNS as RUNS_KEY

    try:
        lines = asyncio.run(_with_board(run, one if run else every))
    except SwarmError as exc:
        _fail(exc)
    print("\n".join(lines))


@app.command()
def gc(
    older_than_days: Annotated[
        float, typer.Option("--older-than-days", help="remove runs finished before this")
    ] = 7.0,
    keep: Annotated[int, typer.Option("--keep", help="always keep this many recent runs")] = 10,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what would go")] = False,
) -> None:
    """Remove finished runs' stored state (events, sessions, usage) from Redis; running
    and orphaned runs are never touched. Worktrees: see `swarm clean`."""
    from swarm.blackboard.connection import open_redis
    from swarm.retention import collect

    if older_than_days < 0 or keep < 0:
        _fail(BadInput("--older-than-days and --keep: must be 0 or more"))

    async def go(url: str) -> list[str]:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            report = await collect(r, older_than_days * 86400, keep, dry_run)
        finally:
            await r.aclose()
        return report.lines()

    try:
        handle = open_redis()
    except SwarmError as exc:
        _fail(exc)
    try:
        lines = asyncio.run(go(handle.url))
    finally:
        handle.close()
    print(
        "\n".join(
            ("would be " + ln if dry_run and ln.startswith("removed ") else ln) for ln in lines
        )
    )


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config (and its role cards and topology) without running anything."""
    from swarm.config import load_config

    try:
        loaded = load_config(config)
    except SwarmError as exc:
        _fail(exc)
    print(
        f"{config}: ok ({len(loaded.agents)} agents, {len(loaded.tasks)} tasks, "
        f"{loaded.topology_kind} topology)"
    )


async def _with_board(run: str | None, fn: Any) -> Any:
    from swarm.blackboard.board import Blackboard
    from swarm.blackboard.connection import open_redis

    handle = open_redis()
    try:
        import redis.asyncio as aioredis

        r = aioredis.Redis.from_url(handle.url, decode_responses=True)
        run_id = run or await Blackboard.latest_run(r)
        await r.aclose()
        if run_id is None:
            raise BadInput("no runs yet in this directory (.swarm/); start one with swarm launch")
        board = Blackboard(handle.url, run_id)
        try:
            if not await board.exists():
                raise BadInput(f"RUN: no run {run_id!r} in this directory's .swarm/")
            return await fn(board)
        finally:
            await board.close()
    finally:
        handle.close()


@app.command()
def status(
    run: Annotated[str | None, typer.Argument(help="run id (default: the latest)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Show a run's tasks, agents and usage."""
    from swarm.status import snapshot

    try:
        snap = asyncio.run(_with_board(run, snapshot))
    except SwarmError as exc:
        _fail(exc)
    if json_out:
        print(json.dumps(snap.model_dump(), indent=1))
        return
    console = Console()
    u = snap.usage
    console.print(
        f"[bold]{snap.name}[/] run {snap.run_id}: [bold]{snap.state}[/] "
        f"{snap.reason}  tokens {u.input_tokens:,}/{u.output_tokens:,}  ${u.usd:.4f}"
    )
    if snap.branch:
        from swarm.results import human_bytes

        console.print(
            f"branch {snap.branch}  merge queue: {', '.join(snap.merge_queue) or 'empty'}  "
            f"worktrees on disk: {human_bytes(snap.worktrees_bytes)}",
            highlight=False,
        )
    tasks = Table("task", "phase", "status", "assignee", "attempts", "turns", "$", box=None)
    for t in snap.tasks:
        tasks.add_row(
            t.id,
            t.phase,
            t.status,
            t.assignee or "-",
            str(t.attempts),
            str(t.turns),
            f"{t.usd:.4f}",
        )
    console.print(tasks)
    agents = Table("agent", "role", "status", "task", "turns", "tokens", "$", box=None)
    for a in snap.agents:
        agents.add_row(
            a.name,
            a.role,
            a.status,
            a.task or "-",
            str(a.turns),
            f"{a.input_tokens:,}/{a.output_tokens:,}",
            f"{a.usd:.4f}",
        )
    console.print(agents)


@app.command()
def report(
    run: Annotated[str | None, typer.Argument(help="run id (default: the latest)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md | json | junit")] = "md",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="write to this file, not stdout")
    ] = None,
) -> None:
    """A run's progress report (Markdown), JSON, or JUnit XML: stored and measured values only."""
    from swarm.report import FORMATS, load, render

    if fmt not in FORMATS:
        _fail(BadInput(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}"))
    try:
        snap, times = asyncio.run(_with_board(run, load))
    except SwarmError as exc:
        _fail(exc)
    text = render(snap, fmt, times)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(BadInput(f"--output: cannot write {output}: {exc.strerror or exc}"))


@app.command()
def watch(
    run: Annotated[str | None, typer.Argument(help="run id (default: the latest)")] = None,
    json_events: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Follow a run (started elsewhere) until it finishes."""
    from swarm.dashboard import follow
    from swarm.launch import display_mode

    async def go(board: Any) -> None:
        stop = asyncio.Event()

        async def until_finished() -> None:
            while await board.run_state() == "running":
                await board.wait_events(await board.last_event_id(), 1000, count=1)
            stop.set()

        mode = display_mode(json_events, False)
        await asyncio.gather(follow(board, mode, stop), until_finished())
        if mode != "json":  # the dashboard's screen is gone: how the run ended
            from swarm.dashboard import ended_line

            print(await ended_line(board))

    try:
        asyncio.run(_with_board(run, go))
    except SwarmError as exc:
        _fail(exc)


@app.command()
def tool(
    name: Annotated[str, typer.Argument(help="tool name, e.g. read")],
    args_json: Annotated[str, typer.Argument(help="arguments as a JSON object")] = "{}",
    repo: Annotated[Path, typer.Option("--repo", help="workspace root")] = Path("."),
) -> None:
    """Run one tool in a workspace and print its result."""
    from swarm.tools.base import ToolContext
    from swarm.tools.builtin import BUILTIN_TOOLS, MemoryLocks, MemoryState
    from swarm.tools.repo_tools import run_tool

    try:
        args = json.loads(args_json)
        if not isinstance(args, dict):
            raise ValueError("must be a JSON object")
    except ValueError as exc:
        _fail(BadInput(f"ARGS_JSON: invalid: {exc}"))
    if not repo.is_dir():
        _fail(BadInput(f"--repo: {repo} is not a directory"))
    ctx = ToolContext(
        workspace=repo.resolve(), agent="cli", state=MemoryState(), locks=MemoryLocks()
    )

    async def go() -> Any:
        if name in ("edit", "multiedit", "write") and isinstance(args.get("file_path"), str):
            # a person at the keyboard has seen the file: the staleness check (which
            # protects agents from overwriting what they never read) starts from now
            await BUILTIN_TOOLS["read"]({"file_path": args["file_path"], "limit": 1}, ctx)
        return await run_tool(repo.resolve(), name, args, ctx, dict(BUILTIN_TOOLS))

    try:  # built-in tools, the repo's command tools and MCP tools (mcp__server__tool)
        out = asyncio.run(go())
    except SwarmError as exc:  # unknown tool (the message lists them), bad tools/*.yaml
        _fail(exc)
    print(out.text)
    raise typer.Exit(1 if out.is_error else 0)


@app.command()
def models(
    config: Annotated[
        Path | None, typer.Option("--config", help="use this config's providers, models, pricing")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """List providers, where each one's key comes from (config api_key_env, environment,
    stored credential: the source's name, never the value), and the price each model gets
    (USD per 1M tokens) and from where: genai-prices' data, the config's `pricing:`, or,
    for a model genai-prices does not know, the highest price of its provider."""
    from swarm.config import load_config
    from swarm.providers.registry import describe_models

    configured: dict[str, dict[str, object]] = {}
    names: list[str] = []
    pricing: dict[str, tuple[float, float, float, float]] = {}
    if config is not None:
        try:
            loaded = load_config(config)
        except SwarmError as exc:
            _fail(exc)
        configured = {k: v.model_dump() for k, v in loaded.config.providers.items()}
        names = [loaded.config.model, *(a.model for a in loaded.agents)]
        pricing = {m: p.as_tuple() for m, p in loaded.config.pricing.items()}
    rows = describe_models(configured, names, pricing)
    if json_out:
        print(json.dumps(rows, indent=1))
        return
    console = Console()
    table = Table("provider", "credentials", "base URL", box=None)
    for row in rows:
        if row["key_present"]:  # where the key comes from: a name, never the value
            cred = f"[green]{escape(row['key_source'])}[/]"
        elif not row["key_required"]:
            cred = f"{row['key_env']} not needed"
        else:
            cred = f"[red]{row['key_env']} missing[/], none stored"
        table.add_row(row["provider"], cred, row["base_url"])
    console.print(table)
    prices = Table(
        "model",
        "input",
        "output",
        "cache read",
        "cache write",
        "source",
        box=None,
        title_justify="left",
    )
    for row in rows:
        for p in [*row["prices"], row["unknown_price"]]:
            name = f"{row['provider']}/{p['model']}"
            if p["model"] == "*":
                name = f"{row['provider']}/(any other)"
            source = p["source"]
            if p.get("tiers"):
                above = ", ".join(
                    f">{t['above_prompt_tokens'] // 1000}k prompt: ${_usd(t['input'])}/${_usd(t['output'])}"
                    for t in p["tiers"]
                )
                source += f" ({above})"
            prices.add_row(
                name,
                *(f"${_usd(p[k])}" for k in ("input", "output", "cache_read", "cache_write")),
                source,
            )
    console.print("\nUSD per 1M tokens:", highlight=False)
    console.print(prices, highlight=False)


def _usd(x: float) -> str:
    return f"{x:g}"


@stub_app.command("serve")
def stub_serve(
    script: Annotated[
        Path,
        typer.Argument(
            help="stub script (YAML); configs/NAME.yaml, when not here, names a shipped one",
            callback=_config_path,
        ),
    ],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="0 = a free port")] = 0,
    record: Annotated[Path | None, typer.Option("--record", help="append requests (JSONL)")] = None,
) -> None:
    """Serve the scripted LLM (Anthropic, OpenAI and Mistral wire formats)."""
    from swarm.llmstub import serve_forever

    try:
        serve_forever(script, host, port, record)
    except SwarmError as exc:
        _fail(exc)


from swarm import cli_init, cli_run  # noqa: E402  (their commands, registered here)

app.command("run")(cli_run.run)
app.add_typer(cli_run.session_app, name="session")
app.command("init")(cli_init.init)

from swarm.cli_serve import register as _register_serve  # noqa: E402

_register_serve(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
