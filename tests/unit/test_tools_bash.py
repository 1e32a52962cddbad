"""The bash tool: output, exit codes, timeouts, truncation, process cleanup."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.tools import bash as bash_mod
from swarm.tools.base import ToolContext, ToolOutput
from swarm.tools.builtin import BUILTIN_TOOLS, local_context


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


async def bash(ctx: ToolContext, command: str, **args: Any) -> ToolOutput:
    return await BUILTIN_TOOLS["bash"]({"command": command, **args}, ctx)


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Any:
    yield
    assert bash_mod.live_spawned_pids() == []


async def test_output_and_exit_code(ctx: ToolContext) -> None:
    out = await bash(ctx, "echo hello; exit 3")
    assert out.text == "hello\n\nExit code: 3"
    assert not out.is_error
    assert out.meta["exit_code"] == 3 and out.meta["timed_out"] is False


async def test_stdout_and_stderr_interleaved(ctx: ToolContext) -> None:
    out = await bash(ctx, "echo one; echo two >&2; echo three")
    assert out.text == "one\ntwo\nthree\n\nExit code: 0"


async def test_no_output(ctx: ToolContext) -> None:
    assert (await bash(ctx, "true")).text == "(no output)\n\nExit code: 0"


async def test_runs_in_workspace_with_env(ws: Path, ctx: ToolContext) -> None:
    ctx.env = {"SWARM_TEST_VAR": "from-ctx"}
    out = await bash(ctx, 'pwd; echo "$SWARM_TEST_VAR"; echo "${HOME:+home-set}"')
    assert out.text == f"{os.path.realpath(ws)}\nfrom-ctx\nhome-set\n\nExit code: 0"


async def test_stdin_is_empty(ctx: ToolContext) -> None:
    start = time.monotonic()
    out = await bash(ctx, "cat; read -r line || echo eof")
    assert time.monotonic() - start < 2
    assert out.text == "eof\n\nExit code: 0"


async def test_own_process_group(ctx: ToolContext) -> None:
    out = await bash(ctx, "ps -o pgid= -p $$; ps -o sid= -p $$; echo $$")
    pgid, sid, pid = out.text.split("\n\n")[0].split()
    assert pgid == pid == sid


async def test_timeout_kills_and_reports(ctx: ToolContext) -> None:
    start = time.monotonic()
    out = await bash(ctx, "echo started; sleep 30", timeout=400)
    assert time.monotonic() - start < 3
    assert out.is_error
    assert out.text == ("started\n\n(timed out after 400 ms)\nExit code: 143 (killed by SIGTERM)")
    assert out.meta["timed_out"] is True


async def test_timeout_above_maximum_is_clamped(ctx: ToolContext) -> None:
    out = await bash(ctx, "echo ok", timeout=900_000)
    assert out.text == (
        "ok\n\n(timeout 900000 ms exceeds the maximum; clamped to 600000 ms)\nExit code: 0"
    )


async def test_invalid_timeout(ctx: ToolContext) -> None:
    out = await bash(ctx, "echo ok", timeout=0)
    assert out.is_error and out.text.startswith("Invalid arguments for bash: timeout:")


async def test_empty_command(ctx: ToolContext) -> None:
    out = await bash(ctx, "   ")
    assert out.is_error and out.text == "The command is empty."


async def test_truncates_by_lines_keeping_head_and_tail(ctx: ToolContext) -> None:
    out = await bash(ctx, "seq 1 5000")
    body, trailer = out.text.split("\n\n(Output truncated")
    head, tail = body.split("\n\n... 3000 lines truncated ...\n\n")
    assert head.splitlines() == [str(i) for i in range(1, 1001)]
    assert tail.splitlines() == [str(i) for i in range(4001, 5001)]
    path = Path(out.meta["output_file"])
    assert path.read_text() == "".join(f"{i}\n" for i in range(1, 5001))
    assert trailer.startswith(f": 5000 lines, 23893 bytes. Full output saved to {path};")
    assert f"`sed -n '1,200p' {path}`" in trailer
    assert out.text.endswith("Exit code: 0")
    assert out.meta["truncated"] is True


async def test_truncates_by_bytes(ctx: ToolContext) -> None:
    out = await bash(ctx, "for i in $(seq 1 400); do printf '%0200d\\n' $i; done")
    shown = out.text.split("\n\n(Output truncated")[0]
    assert len(shown.encode()) <= bash_mod.DISPLAY_MAX_BYTES + 200
    assert "lines truncated ..." in shown
    assert shown.splitlines()[-1] == f"{400:0200d}"
    assert Path(out.meta["output_file"]).stat().st_size == 400 * 201


async def test_single_huge_line_is_cut_by_bytes(ctx: ToolContext) -> None:
    out = await bash(ctx, "head -c 100000 /dev/zero | tr '\\0' x; echo")
    assert "bytes truncated ..." in out.text
    assert len(out.text) < bash_mod.DISPLAY_MAX_BYTES + 1000


async def test_small_output_is_not_saved(ctx: ToolContext) -> None:
    out = await bash(ctx, "seq 1 10")
    assert out.meta["output_file"] is None
    assert not (ctx.output_dir and ctx.output_dir.exists() and any(ctx.output_dir.iterdir()))


async def test_output_file_inside_workspace_is_readable(ws: Path, ctx: ToolContext) -> None:
    ctx.output_dir = ws / ".swarm" / "outputs"
    out = await bash(ctx, "seq 1 3000")
    rel = Path(out.meta["output_file"]).relative_to(ws).as_posix()
    assert (
        f"Full output saved to {rel}; read it with the read tool using offset/limit.)" in out.text
    )
    read = await BUILTIN_TOOLS["read"]({"file_path": rel, "offset": 2999}, ctx)
    assert read.text.startswith(f"{2999:>6}\t2999\n{3000:>6}\t3000")


async def test_default_output_dir_is_outside_workspace(ws: Path) -> None:
    ctx = local_context(ws)
    out = await bash(ctx, "seq 1 3000")
    path = Path(out.meta["output_file"])
    assert path.parent == bash_mod.default_output_dir()
    assert not path.is_relative_to(ws)
    path.unlink()


async def test_non_utf8_and_ansi_output(ctx: ToolContext) -> None:
    out = await bash(ctx, r"printf 'caf\xe9\n'; printf '\033[31mred\033[0m\n'")
    assert out.text == "caf\ufffd\nred\n\nExit code: 0"


async def test_carriage_return_progress_collapsed(ctx: ToolContext) -> None:
    out = await bash(ctx, r"printf '10%%\r50%%\r100%%\ndone\r\n'")
    assert out.text == "100%\ndone\n\nExit code: 0"


async def test_killed_by_signal_exit_code(ctx: ToolContext) -> None:
    out = await bash(ctx, "kill -9 $$")
    assert out.text == "(no output)\n\nExit code: 137 (killed by SIGKILL)"


async def test_background_process_does_not_hold_the_call(ctx: ToolContext) -> None:
    start = time.monotonic()
    out = await bash(ctx, "sleep 1000 & echo started")
    assert time.monotonic() - start < 2
    assert out.text == (
        "started\n\n(background processes still running after the command were killed)\n"
        "Exit code: 0"
    )


async def test_output_of_background_child_before_exit_is_kept(ctx: ToolContext) -> None:
    out = await bash(ctx, "(sleep 0.05; echo from-child) & wait")
    assert out.text == "from-child\n\nExit code: 0"


async def test_flood_is_killed(ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bash_mod, "KILL_OUTPUT_BYTES", 4 * 1024 * 1024)
    monkeypatch.setattr(bash_mod, "FILE_CAP_BYTES", 1024 * 1024)
    start = time.monotonic()
    out = await bash(ctx, "yes")
    assert time.monotonic() - start < 5
    assert out.is_error
    assert "(command killed: output exceeded 4 MB; redirect large output to a file" in out.text
    assert "(first 1 MB kept)" in out.text
    assert Path(out.meta["output_file"]).stat().st_size == 1024 * 1024


async def test_cancellation_kills_the_group(ctx: ToolContext) -> None:
    task = asyncio.create_task(bash(ctx, "sleep 1000 & sleep 1000"))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if bash_mod.SPAWNED and bash_mod._scan({bash_mod.SPAWNED[-1][0]}, set()):
            break
    pgid = bash_mod.SPAWNED[-1][0]
    assert len(bash_mod._scan({pgid}, set())) >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bash_mod._scan({pgid}, set()) == []


async def test_term_ignored_gets_killed(ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bash_mod, "KILL_GRACE_S", 0.3)
    start = time.monotonic()
    out = await bash(ctx, "trap '' TERM; sleep 1000", timeout=300)
    assert time.monotonic() - start < 3
    assert out.text == "(no output)\n\n(timed out after 300 ms)\nExit code: 137 (killed by SIGKILL)"


async def test_description_goes_to_meta(ctx: ToolContext) -> None:
    out = await bash(ctx, "true", description="Does nothing")
    assert out.meta["description"] == "Does nothing"
    assert out.meta["duration_ms"] >= 0
