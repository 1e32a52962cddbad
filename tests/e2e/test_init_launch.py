"""A repository set up by `swarm init` runs as it is: its generated config launched on
the scripted server, an agent using a detected command tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer

pytestmark = pytest.mark.e2e

FILES = {
    "pyproject.toml": '[project]\nname = "tiny"\nversion = "0.1"\n',
    "tiny/__init__.py": "def add(a, b):\n    return a + b\n",
    "tests/__init__.py": "",
    "tests/test_tiny.py": (
        "import unittest\nfrom tiny import add\n\n\nclass T(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
    ),
    "README.md": "# tiny\n",
}


def test_init_then_launch(tmp_path: Path, redis_handle: RedisHandle) -> None:
    repo = tmp_path / "tiny"
    for rel, text in FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    cli = [sys.executable, "-m", "swarm.cli"]
    for _ in range(2):
        init = subprocess.run([*cli, "init"], cwd=repo, capture_output=True, text=True, timeout=60)
        assert init.returncode == 0, init.stdout + init.stderr
    assert "nothing changed" in init.stdout
    script = StubScript.model_validate(
        {
            "conversations": [
                {
                    "task": "test",
                    "turns": [
                        {"tool_calls": [{"name": "unittest", "input": {}}]},
                        {"text": "1 test, OK", "expect": {"last_tool_result_contains": "OK"}},
                    ],
                },
                {"turns": [{"text": "done"}]},
            ]
        }
    )
    with StubServer(script) as stub:
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": stub.base_url,
            "ANTHROPIC_API_KEY": "k",
            "REDIS_URL": redis_handle.url,
        }
        run_id = f"init-{os.getpid()}"
        launch = subprocess.run(
            [*cli, "launch", "configs/swarm.yaml", "--run-id", run_id, "--no-dashboard"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert launch.returncode == 0, launch.stdout + launch.stderr
        status = subprocess.run(
            [*cli, "status", run_id, "--json"], cwd=repo, env=env, capture_output=True, text=True
        )
        snap = json.loads(status.stdout)
        assert snap["state"] == "completed"
        assert {t["id"] for t in snap["tasks"]} == {"implement", "test", "document"}
        assert {a["name"] for a in snap["agents"]} == {"developer", "tester", "writer"}
        tester = [r for r in stub.requests.snapshot() if r.task == "test"]
        tools = {t["name"] for t in tester[0].body["tools"]}
        assert "unittest" in tools  # the detected command, offered as a tool
        assert "OK" in json.dumps(tester[-1].body["messages"][-1])
