"""The merge gate: the repository's own check (a shell command) run on a merged result
before the run's branch may move. Bounded in time; its whole process group dies with it.
It runs code the agents wrote, so like their commands: in a PID namespace of its own
when available (:mod:`swarm.tools.isolation`), without credentials or agent sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from swarm.secrets import redact, scrubbed_env, secret_values
from swarm.tools import isolation

TAIL_CHARS = 4000


@dataclass
class GateResult:
    passed: bool
    exit_code: int | None  # None: timed out
    tail: str  # the last lines of its output (stdout and stderr together)
    seconds: float


async def run_gate(command: str, cwd: Path, timeout_s: float) -> GateResult:
    started = time.monotonic()
    await isolation.acurrent()  # probed off the event loop
    argv = isolation.wrap(["bash", "-c", command], grace_s=2.0)  # leftovers end with it
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, killed as a whole
        env={**scrubbed_env(), "GIT_TERMINAL_PROMPT": "0"},  # no credentials
    )
    chunks: list[bytes] = []
    kept = 0

    async def read() -> None:
        nonlocal kept
        assert proc.stdout is not None
        while data := await proc.stdout.read(65536):
            chunks.append(data)
            kept += len(data)
            while kept > 4 * TAIL_CHARS and len(chunks) > 1:
                kept -= len(chunks.pop(0))

    code: int | None
    try:
        await asyncio.wait_for(asyncio.gather(read(), proc.wait()), timeout_s)
        code = proc.returncode
    except TimeoutError:
        code = None
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the gate's leftovers too (a test server)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), 5)
    text = b"".join(chunks).decode("utf-8", "replace")
    tail = redact(text[-TAIL_CHARS:], secret_values()).strip() or "(no output)"
    return GateResult(code == 0, code, tail, time.monotonic() - started)
