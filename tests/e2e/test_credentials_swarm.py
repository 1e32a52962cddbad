"""A real swarm (CLI, local Ray, Redis) on a stored OAuth login whose access token has
expired: its agents, in their actors, share one refresh, and a command that prints the
credential file shows the model only [redacted]."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm.blackboard.connection import RedisHandle
from swarm.credentials import Credential, open_store
from swarm.llmstub import StubScript, StubServer
from tests.authfakes.server import CLIENT_ID, FakeAuthServer
from tests.e2e.swarmrun import AGENTS_DIR, new_run_id

pytestmark = pytest.mark.e2e

AGENTS = ("dev-a", "dev-b", "dev-c")
CONFIG = (
    "name: stored-oauth\n"
    "goal: work on a stored login\n"
    "model: anthropic/claude-sonnet-5-5\n"
    "agents:\n"
    + "".join(f"  - {{name: {a}, role: developer}}\n" for a in AGENTS)
    + "phases:\n  - name: one\n    tasks:\n"
    + "".join(f"      - {{id: t-{a}, title: Task of {a}, agent: {a}}}\n" for a in AGENTS)
)


def script() -> StubScript:
    return StubScript.model_validate(
        {
            "conversations": [
                {
                    "agent": a,
                    "task": f"t-{a}",
                    "turns": [
                        {
                            "tool_calls": [
                                {
                                    "name": "bash",
                                    "input": {"command": 'cat "$XDG_CONFIG_HOME/swarm/auth.json"'},
                                }
                            ]
                        },
                        {
                            "text": f"{a} done",
                            "expect": {"last_tool_result_contains": "[redacted]"},
                        },
                    ],
                }
                for a in AGENTS
            ]
        }
    )


def test_agents_share_one_refresh_of_a_stored_token(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    shutil.copytree(AGENTS_DIR, tmp_path / "agents")
    record = tmp_path / "requests.jsonl"
    with FakeAuthServer() as fake, StubServer(script(), record_path=record) as stub:
        fake.state.refresh_delay_s = 0.3
        issued = fake.state.issue()
        old = Credential(
            kind="oauth",
            access_token=issued["access_token"],
            refresh_token=issued["refresh_token"],
            expires_at=time.time() - 5,
            token_url=f"{fake.url}/token",
            client_id=CLIENT_ID,
            token_format="json",
        )
        open_store().put("anthropic", old)
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
        }
        env.update({"ANTHROPIC_BASE_URL": stub.base_url, "REDIS_URL": redis_handle.url})
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "swarm.cli",
                "launch",
                "swarm.yaml",
                "--repo",
                str(repo),
                "--run-id",
                new_run_id("cred"),
                "--no-dashboard",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        refreshes = fake.state.refresh_requests
        reused = list(fake.state.reused_refresh)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert refreshes == 1 and reused == []
    new = open_store().get("anthropic")
    assert new is not None and new.access_token != old.access_token
    sent = record.read_text()
    assert len([line for line in sent.splitlines() if line.strip()]) >= 2 * len(AGENTS)
    for value in (*old.secrets(), *new.secrets()):
        assert value not in sent  # not in any request the model received
        assert value not in proc.stdout + proc.stderr
    assert json.loads(sent.splitlines()[0])  # the record is what the stub saw
