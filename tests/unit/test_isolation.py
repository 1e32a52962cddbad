"""Agents' commands run in a PID namespace of their own: the provider key in the
environment of the user's other processes stays out of their reach (real processes)."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from swarm.config import CommandsConfig
from swarm.tools import bash as bash_mod
from swarm.tools import isolation
from swarm.tools.base import ToolContext, ToolOutput
from swarm.tools.builtin import BUILTIN_TOOLS, local_context
from swarm.tools.commands import COMMANDS_FILE, command_tools
from swarm.workspace.gate import run_gate

KEY = "sk-test-abcdef123456"
#: The exact command of the leak: every process's environment, reversed past redaction.
PROC_LOOP = r"for p in /proc/[0-9]*/environ; do tr '\0' '\n' < $p; done | grep -i key | rev"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    w.mkdir()
    return w


@pytest.fixture
def ctx(ws: Path, tmp_path: Path) -> ToolContext:
    c = local_context(ws)
    c.output_dir = tmp_path / "outputs"
    return c


@pytest.fixture
def holder(monkeypatch: pytest.MonkeyPatch) -> Iterator[psutil.Process]:
    """The key in this process's environment and in the initial environment of another
    process (/proc/PID/environ shows what a process started with: a stand-in for the CLI
    or the user's shell)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    proc = subprocess.Popen(
        ["sleep", "300"], env={**os.environ, "ANTHROPIC_API_KEY": KEY}, start_new_session=True
    )
    try:
        yield psutil.Process(proc.pid)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    yield
    assert bash_mod.live_spawned_pids() == []


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Probe again under this test's SWARM_ISOLATION; the real one again afterwards."""
    isolation.reset()
    yield
    monkeypatch.delenv(isolation.ENV_HOOK, raising=False)
    isolation.reset()


async def bash(ctx: ToolContext, command: str, **args: Any) -> ToolOutput:
    return await BUILTIN_TOOLS["bash"]({"command": command, **args}, ctx)


def body(out: ToolOutput) -> str:
    return out.text.rsplit("\n\n", 1)[0]


def alive_with(token: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and token in " ".join(p.info["cmdline"] or []):
            found.append(p.pid)
    return found


def test_namespaces_are_available_here() -> None:
    # this machine allows them: a fallback to "none" must fail the suite, not pass it
    assert isolation.isolation_level() == "pid-namespace", isolation.isolation_reason()
    assert isolation.current().prefix[0] == "unshare"


def test_the_leak_exists_without_isolation(holder: psutil.Process) -> None:
    # the same loop run directly (no namespace) finds the key: the tests below can fail
    out = subprocess.run(["bash", "-c", PROC_LOOP], capture_output=True, text=True, check=False)
    assert KEY[::-1] in out.stdout


async def test_proc_loop_does_not_reveal_the_key(ctx: ToolContext, holder: psutil.Process) -> None:
    out = await bash(ctx, PROC_LOOP)
    assert KEY not in out.text and KEY[::-1] not in out.text
    assert "[redacted]" not in out.text  # not redaction: the key is simply not there
    out = await bash(ctx, f"cat /proc/{holder.pid}/environ; ls /proc/{holder.pid}")
    assert KEY not in out.text and out.meta["exit_code"] != 0


async def test_proc_shows_only_the_commands_processes(ctx: ToolContext) -> None:
    out = await bash(ctx, "echo $$ $PPID; ls /proc | grep -c '^[0-9]'; ps -e -o comm=")
    pid_line, count, *names = body(out).splitlines()
    assert pid_line == "2 1"  # PID 1 is the namespace's init
    assert int(count) <= 5  # init, bash, ls, grep (and maybe ps)
    assert names[0].startswith("python") and names[-1] == "ps" and len(names) <= 3


async def test_root_cannot_unmount_the_private_proc(ctx: ToolContext) -> None:
    # with CAP_SYS_ADMIN, `umount /proc` would uncover the host's /proc. Never run this
    # outside a namespace (it would unmount the machine's /proc): checked twice
    assert isolation.isolation_level() == "pid-namespace"
    out = await bash(
        ctx,
        "[ $$ = 2 ] || exit 99; umount /proc; mount -t proc proc /mnt; ls /proc | grep -c '^[0-9]'",
    )
    assert int(body(out).splitlines()[-1]) <= 4, out.text


async def test_exit_code_is_the_commands(ctx: ToolContext) -> None:
    out = await bash(ctx, "exit 7")
    assert out.meta["exit_code"] == 7 and out.text.endswith("Exit code: 7")
    out = await bash(ctx, "kill -TERM $$")
    assert out.text == "(no output)\n\nExit code: 143 (killed by SIGTERM)"


async def test_cwd_is_the_workspace_and_stdin_empty(ws: Path, ctx: ToolContext) -> None:
    out = await bash(ctx, "pwd; cat; echo done")
    assert body(out) == f"{os.path.realpath(ws)}\ndone"


async def test_timeout_kills_everything_in_the_namespace(ctx: ToolContext) -> None:
    start = time.monotonic()
    out = await bash(
        ctx,
        "sleep 1000.111 & setsid sleep 1000.112 & setsid env -i sleep 1000.113 & "
        "echo started; sleep 1000.114",
        timeout=500,
    )
    assert time.monotonic() - start < 5
    assert out.text.startswith("started\n\n(timed out after 500 ms)")
    assert out.meta["timed_out"] is True
    assert alive_with("sleep 1000.11") == []


async def test_background_escapees_die_with_the_command(ctx: ToolContext) -> None:
    # `env -i` drops the marker the marker scan looks for, `setsid` leaves the group:
    # only the namespace catches this one
    out = await bash(ctx, "setsid env -i sleep 1000.221 & echo started")
    assert out.text.startswith("started\n\n(background processes still running")
    assert out.text.endswith("Exit code: 0")
    assert alive_with("sleep 1000.221") == []


async def test_agent_sockets_are_hidden_unless_passed(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/ssh-test/agent.42")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/tmp/dbus-test")
    cmd = 'echo "ssh=${SSH_AUTH_SOCK:-unset} dbus=${DBUS_SESSION_BUS_ADDRESS:-unset}"'
    assert body(await bash(ctx, cmd)) == "ssh=unset dbus=unset"
    ctx.pass_env = frozenset(CommandsConfig(pass_env=["SSH_AUTH_SOCK"]).pass_env)
    assert body(await bash(ctx, cmd)) == "ssh=/tmp/ssh-test/agent.42 dbus=unset"


async def test_credentials_are_never_passed(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError, match="credentials are never passed"):
        CommandsConfig(pass_env=["ANTHROPIC_API_KEY"])
    with pytest.raises(ValidationError, match="not an environment variable name"):
        CommandsConfig(pass_env=["A=B"])
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    ctx.pass_env = frozenset({"ANTHROPIC_API_KEY"})  # even when a caller asks for it
    assert KEY not in (await bash(ctx, "env")).text


async def test_command_tools_are_isolated_too(tmp_path: Path, holder: psutil.Process) -> None:
    repo = tmp_path / "repo"
    (repo / COMMANDS_FILE).parent.mkdir(parents=True)
    (repo / COMMANDS_FILE).write_text(
        textwrap.dedent(
            """\
            commands:
              envs:
                description: Print what the environments of all processes say
                command: "echo pid=$$; for p in /proc/[0-9]*/environ; do tr '\\\\0' '\\\\n' < $p; done | grep -i {word} | rev"
                params:
                  word: {type: string}
            """
        )
    )
    tool = command_tools(repo)["envs"]
    out = await tool({"word": "key"}, local_context(repo))
    assert "pid=2\n" in out.text
    assert KEY not in out.text and KEY[::-1] not in out.text
    assert out.meta["exit_code"] == 0


async def test_the_gate_is_isolated_too(tmp_path: Path, holder: psutil.Process) -> None:
    res = await run_gate(f"echo $$; {PROC_LOOP}; exit 3", tmp_path, 30)
    assert res.exit_code == 3 and not res.passed
    assert res.tail == "2"


async def test_refused_namespaces_warn_and_say_so(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch, fresh_probe: None
) -> None:
    monkeypatch.setenv(isolation.ENV_HOOK, "false")  # a wrapper that refuses everything
    with pytest.warns(RuntimeWarning, match="WITHOUT a PID namespace"):
        assert isolation.isolation_level() == "none"
    assert isolation.isolation_reason().startswith("PID namespaces refused: false: exit 1")
    out = await bash(ctx, "echo $$; exit 7")  # still runs, unisolated
    assert int(body(out)) > 2 and out.meta["exit_code"] == 7


async def test_switched_off_and_custom_prefix(
    ctx: ToolContext, monkeypatch: pytest.MonkeyPatch, fresh_probe: None
) -> None:
    monkeypatch.setenv(isolation.ENV_HOOK, "none")
    with pytest.warns(RuntimeWarning):
        assert isolation.current().reason == "disabled by SWARM_ISOLATION=none"
    isolation.reset()
    monkeypatch.setenv(isolation.ENV_HOOK, "unshare --pid --fork --mount-proc")
    assert isolation.isolation_level() == "pid-namespace"
    assert body(await bash(ctx, "echo $$")) == "2"


async def test_concurrent_commands_each_get_a_namespace(ctx: ToolContext) -> None:
    outs = await asyncio.gather(
        *(bash(ctx, "echo $$; ls /proc | grep -c '^[0-9]'") for _ in range(4))
    )
    for out in outs:
        pid, count = body(out).split()
        assert pid == "2" and int(count) <= 4


def test_init_refuses_outside_a_namespace() -> None:
    # run inside a throwaway namespace where it is not PID 1, so that a broken guard
    # could only ever signal that namespace's processes
    init = shlex.join([sys.executable, "-I", "-S", str(isolation.INIT), "--", "true"])
    out = subprocess.run(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "bash",
            "-c",
            f"sleep 5 & {init}; echo rc=$?; kill %1",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "rc=125" in out.stdout and "not PID 1" in out.stderr


CONFIG = (
    "name: p\ngoal: g\nmodel: openai/m\n"
    "commands:\n  pass_env: [{names}]\n"
    "agents:\n  - {{name: a, role: developer}}\n"
    "phases:\n  - name: one\n    tasks:\n      - {{id: t, title: T, agent: a}}\n"
)


def test_pass_env_reaches_the_agents(tmp_path: Path) -> None:
    from swarm.config import load_config
    from swarm.errors import ConfigError
    from swarm.hosting import agent_specs
    from swarm.plan import RunPlan

    (tmp_path / "s.yaml").write_text(CONFIG.format(names="SSH_AUTH_SOCK"))
    loaded = load_config(tmp_path / "s.yaml")
    plan = RunPlan(run_id="r", loaded=loaded, repo=tmp_path, workspace={"repo": str(tmp_path)})
    [spec] = agent_specs(plan, "unix:///x", tmp_path)
    assert spec.pass_env == ["SSH_AUTH_SOCK"]
    (tmp_path / "s.yaml").write_text(CONFIG.format(names="SSH_AUTH_SOCK, GITHUB_TOKEN"))
    with pytest.raises(ConfigError, match="credentials are never passed") as err:
        load_config(tmp_path / "s.yaml")
    assert "s.yaml:5" in str(err.value)
