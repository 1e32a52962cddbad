"""`swarm serve` keeps answering while nobody reads its output: uvicorn writes an access
line per request, and a write to a full pipe used to block the event loop (the
schemathesis run stopped getting answers once 64 KiB of log lines were unread)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from swarm.blackboard.connection import RedisHandle
from tests.e2e.serveharness import TOKEN
from tests.faults.harness import free_port, kill_tree

pytestmark = pytest.mark.e2e

F_SETPIPE_SZ = 1031  # Linux fcntl: a pipe's capacity
F_GETPIPE_SZ = 1032
REQUESTS = 300  # 404 lines of about 80 bytes each: several times the pipe's capacity


def test_a_full_output_pipe_does_not_stop_the_server(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, 4096)
    capacity = fcntl.fcntl(write_end, F_GETPIPE_SZ)
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_handle.url,
        "SWARM_SERVER_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=write_end,
        stderr=write_end,
    )
    os.close(write_end)
    out = bytearray()
    reader: threading.Thread | None = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:  # the startup lines and these /health lines stay unread too
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        # the pipe is full long before the last request
        assert REQUESTS * len('127.0.0.1:55555 - "GET /runs/no-such-run-0000"') > 2 * capacity
        answered = 0
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as c:
            for i in range(REQUESTS):
                try:
                    r = c.get(f"/runs/no-such-run-{i:04d}")
                except httpx.TimeoutException:
                    break
                assert r.status_code == 404, r.text
                answered += 1
        assert answered == REQUESTS, (
            f"the server stopped answering after {answered} requests with its output unread"
        )

        # the lines were kept, not lost: once read, the pipe delivers them
        def drain() -> None:
            while chunk := os.read(read_end, 65536):
                out.extend(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        last = f"GET /runs/no-such-run-{REQUESTS - 1:04d}".encode()
        deadline = time.monotonic() + 20
        while last not in out and time.monotonic() < deadline:
            time.sleep(0.1)
        assert last in out, out[-500:].decode(errors="replace")
        assert out.count(b" 404 ") == REQUESTS
    finally:
        kill_tree(proc.pid)
        proc.wait(timeout=10)
        if reader is not None:
            reader.join(timeout=10)
        os.close(read_end)
