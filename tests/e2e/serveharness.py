"""`swarm serve` as a subprocess on a free port, with real Redis and the scripted LLM
server; runs it starts are detached `swarm launch` processes, killed at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from swarm.llmstub import StubScript, StubServer
from swarm.paths import DATA_DIR
from tests.faults.harness import free_port, kill_tree, reap_strays

TOKEN = "test-server-token-0123456789abcdef"


@dataclass
class Frame:
    id: str
    event: str
    data: str


class Served:
    def __init__(self, tmp: Path, script: dict[str, Any], redis_url: str, config: str) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        self.repo.mkdir(exist_ok=True)
        (tmp / "swarm.yaml").write_text(config)
        if not (tmp / "agents").exists():
            shutil.copytree(DATA_DIR / "agents", tmp / "agents")
        self.stub = StubServer(
            StubScript.model_validate(script), record_path=tmp / "requests.jsonl"
        )
        self.redis_url = redis_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        # a file, not a pipe: nobody reads a pipe while the test runs, and a server
        # writing to a full one used to stop answering
        self.log_path = tmp / "serve.log"
        self.run_ids: list[str] = []
        self.auth = {"Authorization": f"Bearer {TOKEN}"}

    def start(self) -> None:
        self.stub.start()
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": self.stub.base_url,
            "ANTHROPIC_API_KEY": "k",
            "REDIS_URL": self.redis_url,
            "SWARM_SERVER_TOKEN": TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "swarm.cli", "serve", "--port", str(self.port)],
                cwd=self.tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"swarm serve did not start:\n{self.output()}")

    def output(self) -> str:
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            kill_tree(self.proc.pid)
        self.proc.wait(timeout=10)
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Everything goes, whatever failed: the server, the runs, the scripted server."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                kill_tree(self.proc.pid)  # the server and the runs it started
                self.proc.wait(timeout=10)
        finally:
            try:
                for run_id in self.run_ids:
                    reap_strays(run_id)
            finally:
                self.stub.stop()

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=self.auth, timeout=60, **kw)

    def start_run(self, run_id: str) -> dict[str, Any]:
        with self.client() as c:
            r = c.post("/runs", json={"config": "swarm.yaml", "repo": "repo", "run_id": run_id})
        assert r.status_code == 201, r.text
        self.run_ids.append(run_id)
        return dict(r.json())

    def wait_state(self, run_id: str, states: set[str], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                snap = c.get(f"/runs/{run_id}").json()
                if snap["state"] in states:
                    return dict(snap)
                time.sleep(0.2)
        raise AssertionError(f"run {run_id} never reached {states}")

    def requests_log(self) -> list[dict[str, Any]]:
        path = self.tmp / "requests.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def read_frames(
    client: httpx.Client, path: str, stop_after: int | None = None, **kw: Any
) -> tuple[list[Frame], list[str]]:
    """Read an SSE stream: its frames, and its comment lines; ``stop_after`` frames, then
    drop the connection (else read until the server ends the stream)."""
    frames: list[Frame] = []
    comments: list[str] = []
    with client.stream("GET", path, **kw) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in resp.iter_lines():
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            if line == "":
                if fields:
                    frames.append(Frame(fields["id"], fields["event"], fields["data"]))
                    fields = {}
                    if stop_after is not None and len(frames) >= stop_after:
                        break
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
    return frames, comments


@contextlib.contextmanager
def served(tmp: Path, script: dict[str, Any], redis_url: str, config: str) -> Iterator[Served]:
    s = Served(tmp, script, redis_url, config)
    try:
        s.start()
        yield s
    finally:
        s.stop()
