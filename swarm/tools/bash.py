"""The bash tool: one shell command in the workspace, bounded in time, output and processes.

The command runs as ``bash -c`` in its own session (so its own process group), with
stdin from /dev/null and stdout+stderr interleaved in one pipe, inside a PID namespace of
its own when the OS allows (:mod:`swarm.tools.isolation`: it sees only its own
processes, not the agent's environment). Whatever happens (exit, timeout, output flood,
cancellation) every process it started is killed afterwards: the process group, plus
any descendant that left the group (``setsid``), found through a per-run marker in its
environment; in a namespace, the end of its init also ends every process in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import IO

from pydantic import Field

from swarm.secrets import scrubbed_env
from swarm.tools import isolation
from swarm.tools.base import Tool, ToolContext, ToolOutput, ToolParams
from swarm.tools.sandbox import workspace_root

DEFAULT_TIMEOUT_MS = 120_000
MAX_TIMEOUT_MS = 600_000
#: Seconds between SIGTERM and SIGKILL.
KILL_GRACE_S = 2.0
#: After the command exits, how long to wait for output still in flight (pipe EOF).
DRAIN_AFTER_EXIT_S = 0.2
DISPLAY_MAX_LINES = 2000
DISPLAY_MAX_BYTES = 30 * 1024
#: At most this much output is kept in the output file.
FILE_CAP_BYTES = 10 * 1024 * 1024
#: A command printing more than this in total is killed.
KILL_OUTPUT_BYTES = 64 * 1024 * 1024
#: Environment variable carrying the per-run marker used to find escaped descendants.
MARKER_ENV = "SWARM_BASH_RUN"

_HEAD_CAP = DISPLAY_MAX_BYTES + 2048
_HALF_BYTES = DISPLAY_MAX_BYTES // 2
_HALF_LINES = DISPLAY_MAX_LINES // 2
_TAIL_CAP = _HALF_BYTES + 1024
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")

#: (process group id, marker) of every command started, for tests and diagnostics.
SPAWNED: deque[tuple[int, str]] = deque(maxlen=4096)


# ---------------------------------------------------------------- processes


def _scan(pgids: set[int], markers: set[str]) -> list[int]:
    """Live (non-zombie) processes in one of ``pgids`` or carrying one of ``markers``."""
    needles = [f"{MARKER_ENV}={m}\x00".encode() for m in markers]
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no procfs: fall back to the process groups alone
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, 0)
                found.append(pgid)
        return found
    me = os.getpid()
    for name in entries:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            fields = stat[stat.rfind(b")") + 2 :].split()
            if fields[0] in (b"Z", b"X"):
                continue
            if int(fields[2]) in pgids:
                found.append(int(name))
                continue
            if needles:
                with open(f"/proc/{name}/environ", "rb") as fh:
                    env = fh.read()
                if any(n in env for n in needles):
                    found.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def live_spawned_pids() -> list[int]:
    """Processes still alive that a bash tool call started (should always be empty)."""
    return _scan({p for p, _ in SPAWNED}, {m for _, m in SPAWNED})


def _signal_all(pgid: int, pids: list[int], sig: signal.Signals) -> None:
    """Send ``sig`` to the group and to each pid; SIGTERM also wakes stopped processes."""
    sigs = [sig, signal.SIGCONT] if sig == signal.SIGTERM else [sig]
    for s in sigs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, s)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, s)


async def kill_tree(pgid: int, marker: str, grace: float | None = None) -> bool:
    """SIGTERM the group and marked escapees, SIGKILL what survives ``grace`` seconds.

    Returns True when something was still running.
    """
    grace = KILL_GRACE_S if grace is None else grace
    pids = await asyncio.to_thread(_scan, {pgid}, {marker})
    if not pids:
        return False
    _signal_all(pgid, pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        pids = await asyncio.to_thread(_scan, {pgid}, {marker})
    for _ in range(20):
        if not pids:
            break
        _signal_all(pgid, pids, signal.SIGKILL)
        await asyncio.sleep(0.05)
        pids = await asyncio.to_thread(_scan, {pgid}, {marker})
    return True


# ---------------------------------------------------------------- output


def _clean(text: str) -> str:
    """Drop ANSI escapes and keep what a terminal would show of ``\\r``-rewritten lines."""
    text = _ANSI.sub("", text)
    if "\r" not in text:
        return text
    out = []
    for line in text.split("\n"):
        line = line.rstrip("\r")
        out.append(line.rsplit("\r", 1)[-1])
    return "\n".join(out)


class _Collector:
    """Keeps the head and tail of the output in memory and up to 10 MB in a file."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.newlines = 0
        self.last = b""
        self.file: IO[bytes] | None = None
        self.path: Path | None = None
        self.file_bytes = 0

    def _open(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"bash-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}.log"
        self.path = self.out_dir / name
        self.file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._write(bytes(self.head))

    def _write(self, data: bytes) -> None:
        if self.file is None or self.file_bytes >= FILE_CAP_BYTES:
            return
        data = data[: FILE_CAP_BYTES - self.file_bytes]
        self.file.write(data)
        self.file_bytes += len(data)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if self.file is None and self.total + len(data) > _HEAD_CAP:
            self._open()
            self._write(data)
        elif self.file is not None:
            self._write(data)
        self.total += len(data)
        self.newlines += data.count(b"\n")
        self.last = data[-1:]
        if len(self.head) < _HEAD_CAP:
            self.head += data[: _HEAD_CAP - len(self.head)]
        self.tail += data[-_TAIL_CAP:]
        if len(self.tail) > 2 * _TAIL_CAP:
            del self.tail[:-_TAIL_CAP]

    @property
    def lines(self) -> int:
        return self.newlines + (1 if self.last and self.last != b"\n" else 0)

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()

    def render(self) -> tuple[str, bool]:
        """(text for the model, truncated?)."""
        if self.total <= DISPLAY_MAX_BYTES and self.lines <= DISPLAY_MAX_LINES:
            return _clean(self.head.decode("utf-8", "replace")), False
        if self.file is None:  # few bytes but too many lines: keep them all in the file
            self._open()
        head = bytes(self.head[:_HALF_BYTES])
        cut = _nth_index(head, b"\n", _HALF_LINES)
        if cut >= 0:
            head = head[: cut + 1]
        elif head.rfind(b"\n") >= _HALF_BYTES // 2:  # end on a line break when one is near
            head = head[: head.rfind(b"\n") + 1]
        tail = bytes(self.tail[-_HALF_BYTES:])
        tail_start = self.total - len(tail)
        if tail_start < len(head):  # overlapping: start the tail after the head
            tail = tail[len(head) - tail_start :]
            tail_start = len(head)
        first_break = tail.find(b"\n")
        if (
            0 <= first_break < len(tail) // 2
            and first_break < len(tail) - 1
            and self._byte_before_tail(tail_start) != b"\n"
        ):  # start on a line start when one is near
            tail, tail_start = tail[first_break + 1 :], tail_start + first_break + 1
        keep = _nth_index_from_end(tail, b"\n", _HALF_LINES + (1 if tail.endswith(b"\n") else 0))
        if keep >= 0:
            tail_start += keep + 1
            tail = tail[keep + 1 :]
        omitted_bytes = tail_start - len(head)
        omitted_lines = self.newlines - head.count(b"\n") - tail.count(b"\n")
        aligned = head.endswith(b"\n") and self._byte_before_tail(tail_start) == b"\n"
        if aligned:
            gap = f"... {omitted_lines} lines truncated ..."
        else:
            gap = f"... {omitted_bytes} bytes truncated ..."
            if omitted_lines > 0:
                gap = f"... {omitted_bytes} bytes ({omitted_lines} line breaks) truncated ..."
        head_text = _clean(head.decode("utf-8", "replace"))
        text = head_text.rstrip("\n") + f"\n\n{gap}\n\n" + _clean(tail.decode("utf-8", "replace"))
        return text, True

    def _byte_before_tail(self, tail_start: int) -> bytes:
        if tail_start <= len(self.head):
            return bytes(self.head[tail_start - 1 : tail_start])
        offset = tail_start - (self.total - len(self.tail))
        return bytes(self.tail[offset - 1 : offset]) if offset > 0 else b""


def _nth_index(data: bytes, sep: bytes, n: int) -> int:
    pos = -1
    for _ in range(n):
        pos = data.find(sep, pos + 1)
        if pos < 0:
            return -1
    return pos


def _nth_index_from_end(data: bytes, sep: bytes, n: int) -> int:
    pos = len(data)
    for _ in range(n):
        pos = data.rfind(sep, 0, pos)
        if pos < 0:
            return -1
    return pos


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, collector: _Collector) -> None:
        self.collector = collector
        self.exited = asyncio.Event()
        self.eof = asyncio.Event()
        self.stop = asyncio.Event()  # exited or flooded
        self.flooded = False

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.collector.feed(data)
        if self.collector.total > KILL_OUTPUT_BYTES and not self.flooded:
            self.flooded = True
            self.stop.set()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.eof.set()

    def process_exited(self) -> None:
        self.exited.set()
        self.stop.set()


def default_output_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"swarm-bash-outputs-{os.getuid()}"


def _exit_text(code: int | None) -> str:
    if code is None:
        return "Exit code: unknown (the process could not be reaped)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"Exit code: {128 - code} (killed by {name})"
    return f"Exit code: {code}"


# ---------------------------------------------------------------- tool


class BashParams(ToolParams):
    command: str
    timeout: int | None = Field(DEFAULT_TIMEOUT_MS, ge=1, description=f"ms, max {MAX_TIMEOUT_MS}")
    description: str | None = Field(None, description="What it does, in 5-10 words")


class Bash(Tool):
    name = "bash"
    description = (
        "Run a bash command in the workspace. Stdin is empty; background processes are "
        "killed when it ends."
    )
    Params = BashParams

    async def run(self, params: BashParams, ctx: ToolContext) -> ToolOutput:
        if not params.command.strip():
            return ToolOutput.error("The command is empty.")
        cwd = workspace_root(ctx.workspace)
        if not cwd.is_dir():
            return ToolOutput.error(f"The workspace {cwd} does not exist.")
        requested = params.timeout or DEFAULT_TIMEOUT_MS
        timeout_ms = min(requested, MAX_TIMEOUT_MS)
        marker = secrets.token_hex(8)
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", "PAGER": "cat"}
        # agents' commands never see the swarm's credentials nor the user's agent sockets
        env.update(scrubbed_env(allow=ctx.pass_env))
        env.update(ctx.env)
        env[MARKER_ENV] = marker
        iso = await isolation.acurrent()
        argv = [shutil.which("bash") or "/bin/bash", "-c", params.command]
        status_r, status_w = os.pipe() if iso.isolated else (-1, -1)
        if iso.isolated:
            argv = isolation.wrap(argv, grace_s=KILL_GRACE_S, status_fd=status_w)
        collector = _Collector(ctx.output_dir or default_output_dir())
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        transport: asyncio.SubprocessTransport | None = None
        proto: _Protocol | None = None
        timed_out = False
        leftovers = False
        status = isolation.CommandStatus(None, False)
        try:
            try:
                transport, proto = await loop.subprocess_exec(
                    lambda: _Protocol(collector),
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                    pass_fds=(status_w,) if iso.isolated else (),
                )
            finally:
                if status_w >= 0:
                    os.close(status_w)  # the init holds the write end now
            pgid = transport.get_pid()
            SPAWNED.append((pgid, marker))
            try:
                await asyncio.wait_for(proto.stop.wait(), timeout_ms / 1000)
            except TimeoutError:
                timed_out = True
            if proto.exited.is_set() and not proto.flooded:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proto.eof.wait(), DRAIN_AFTER_EXIT_S)
        finally:
            if transport is not None and proto is not None:
                pgid = transport.get_pid()
                if not proto.exited.is_set():  # still running: TERM now, even if cancelled
                    _signal_all(pgid, [], signal.SIGTERM)
                cleanup = asyncio.ensure_future(_cleanup(transport, proto, pgid, marker))
                try:
                    leftovers = await asyncio.shield(cleanup)
                finally:
                    collector.close()
                    if status_r >= 0:  # written before the init exited
                        status = isolation.read_status(status_r)
                        os.close(status_r)
            else:
                collector.close()
                if status_r >= 0:
                    os.close(status_r)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        code = transport.get_returncode() if transport is not None else None
        if status.returncode is not None:  # the command's own status, not unshare's
            code = status.returncode
        leftovers = leftovers or status.leftovers
        text, truncated = collector.render()
        collector.close()
        lines = [text.rstrip("\n") if text.strip() else "(no output)", ""]
        if truncated and collector.path is not None:
            lines.append(self._where(ctx, collector))
        if timed_out:
            lines.append(f"(timed out after {timeout_ms} ms)")
        if proto is not None and proto.flooded:
            lines.append(
                f"(command killed: output exceeded {KILL_OUTPUT_BYTES // (1024 * 1024)} MB; "
                "redirect large output to a file and inspect it with grep/head)"
            )
        elif leftovers and not timed_out:
            lines.append("(background processes still running after the command were killed)")
        if requested > MAX_TIMEOUT_MS:
            lines.append(
                f"(timeout {requested} ms exceeds the maximum; clamped to {MAX_TIMEOUT_MS} ms)"
            )
        lines.append(_exit_text(code))
        return ToolOutput(
            text="\n".join(lines),
            is_error=timed_out or (proto is not None and proto.flooded),
            meta={
                "exit_code": code,
                "timed_out": timed_out,
                "truncated": truncated,
                "output_file": str(collector.path) if collector.path else None,
                "bytes": collector.total,
                "duration_ms": elapsed_ms,
                "description": params.description,
            },
        )

    @staticmethod
    def _where(ctx: ToolContext, collector: _Collector) -> str:
        path = collector.path
        assert path is not None
        size = f"{collector.lines} lines, {collector.total} bytes"
        kept = ""
        if collector.total > FILE_CAP_BYTES:
            kept = f" (first {FILE_CAP_BYTES // (1024 * 1024)} MB kept)"
        root = workspace_root(ctx.workspace)
        real = Path(os.path.realpath(path))
        if real == root or root in real.parents:
            rel = real.relative_to(root).as_posix()
            return (
                f"(Output truncated: {size}. Full output saved to {rel}{kept}; "
                "read it with the read tool using offset/limit.)"
            )
        return (
            f"(Output truncated: {size}. Full output saved to {path}{kept}; it is outside the "
            f"workspace: view parts of it with bash, e.g. `sed -n '1,200p' {path}` or "
            f"`grep -n PATTERN {path}`.)"
        )


async def _cleanup(
    transport: asyncio.SubprocessTransport, proto: _Protocol, pgid: int, marker: str
) -> bool:
    """Kill whatever is left, collect the last output, close the pipes. Never hangs."""
    leftovers = False
    try:
        leftovers = await kill_tree(pgid, marker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proto.exited.wait(), 1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proto.eof.wait(), 0.5)
    finally:
        transport.close()
    return leftovers
