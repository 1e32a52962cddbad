"""The CLI as a user drives it: bad input, missing credentials, tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import genai_prices
import pytest

pytestmark = pytest.mark.e2e


def swarm(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith(("_API_KEY", "_TOKEN")) and k != "REDIS_URL"
    }
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_mesh10_without_credentials_exits_2(tmp_path: Path, data_dir: Path) -> None:
    proc = swarm(
        "launch",
        str(data_dir / "configs" / "mesh10.yaml"),
        "--repo",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "ANTHROPIC_API_KEY" in proc.stderr
    assert "auth-specialist" in proc.stderr
    assert "make demo" in proc.stderr
    assert not (tmp_path / ".swarm").exists()


def test_missing_repo_is_bad_input(tmp_path: Path, data_dir: Path) -> None:
    proc = swarm(
        "launch",
        str(data_dir / "configs" / "demo.yaml"),
        "--repo",
        str(tmp_path / "nope"),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "--repo" in proc.stderr and "is not a directory" in proc.stderr


def test_status_without_runs(tmp_path: Path) -> None:
    proc = swarm("status", cwd=tmp_path)
    assert proc.returncode == 2
    assert "no runs yet" in proc.stderr


def test_tool_command_reads_a_file(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("one\ntwo\n")
    proc = swarm(
        "tool", "read", '{"file_path": "hello.txt"}', "--repo", str(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert "     1\tone" in proc.stdout and "     2\ttwo" in proc.stdout


def test_tool_command_bad_json(tmp_path: Path) -> None:
    proc = swarm("tool", "read", "{nope", "--repo", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "ARGS_JSON" in proc.stderr


def test_tool_refuses_escape(tmp_path: Path) -> None:
    proc = swarm(
        "tool", "read", '{"file_path": "../../etc/passwd"}', "--repo", str(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "root:" not in proc.stdout


def test_tool_command_edits_a_file(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\r\ny = 2\r\n")
    proc = swarm(
        "tool",
        "edit",
        '{"file_path": "a.py", "old_string": "y = 2", "new_string": "y = 3"}',
        "--repo",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "a.py").read_bytes() == b"x = 1\r\ny = 3\r\n"  # CRLF kept
    assert "-y = 2" in proc.stdout and "+y = 3" in proc.stdout


def test_unreachable_ray_address_is_bad_input(tmp_path: Path, data_dir: Path) -> None:
    proc = swarm(
        "launch",
        str(data_dir / "configs" / "demo.yaml"),
        "--repo",
        str(tmp_path),
        "--no-dashboard",
        cwd=tmp_path,
        env={"RAY_ADDRESS": "127.0.0.1:1", "ANTHROPIC_API_KEY": "k"},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "RAY_ADDRESS: nothing answers at 127.0.0.1:1" in proc.stderr
    status = swarm("status", "--json", cwd=tmp_path)
    assert '"state": "failed"' in status.stdout  # the run says why it never started


def test_models_says_which_price_each_model_gets_and_from_where(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: p\ngoal: g\nmodel: anthropic/claude-sonnet-5-5\n"
        "pricing:\n  openai/local-llama: {input: 0, output: 0}\n"
        "agents:\n  - {name: a, role: developer, model: openai/local-llama}\n"
        "  - {name: b, role: developer, model: mistral/brand-new}\n"
        "phases:\n  - name: one\n    tasks:\n      - {id: t, title: T, agent: a}\n"
    )
    proc = swarm("models", "--config", str(tmp_path / "s.yaml"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    prices = {
        f"{r['provider']}/{p['model']}": p
        for r in json.loads(proc.stdout)
        for p in [*r["prices"], r["unknown_price"]]
    }
    assert prices["anthropic/claude-sonnet-5-5"]["source"] == (
        f"genai-prices {genai_prices.__version__}"
    )
    assert prices["openai/local-llama"]["source"] == "config pricing"
    assert prices["openai/local-llama"]["output"] == 0
    assert prices["mistral/brand-new"]["source"] == "unknown model: highest mistral price"
    assert prices["mistral/brand-new"]["input"] == prices["mistral/*"]["input"]
    assert prices["copilot/*"]["input"] == 0
    table = swarm("models", cwd=tmp_path, env={"COLUMNS": "200"})
    assert table.returncode == 0, table.stderr
    assert "anthropic/claude-sonnet-5-5" in table.stdout and "genai-prices" in table.stdout
    assert "unknown model: highest openai price" in table.stdout
    assert "copilot subscription ($0 per token)" in table.stdout
