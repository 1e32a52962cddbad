"""`swarm run` (one agent, in-process) and `swarm session ...` against the scripted
server, in both wire formats, on a real Redis; continuing a swarm task's session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from tests.e2e.swarmrun import run_swarm

pytestmark = pytest.mark.e2e


def _env(stub: StubServer, redis_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "ANTHROPIC_BASE_URL": stub.base_url,
        "ANTHROPIC_API_KEY": "k",
        "OPENAI_BASE_URL": f"{stub.base_url}/openai/v1",
        "OPENAI_API_KEY": "k",
        "REDIS_URL": redis_url,
    }


def swarm(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def ndjson(text: str) -> list[dict[str, Any]]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]  # every line must be one JSON object


def texts_of(request: Any) -> str:
    """Every text the request carried (messages and tool results), in either format."""
    return json.dumps(request.body.get("messages", []))


SCRIPT = {
    "conversations": [
        {
            "turns": [
                {
                    "text": "Writing the file.",
                    "tool_calls": [
                        {"name": "bash", "input": {"command": "echo hello > made.txt && ls"}}
                    ],
                },
                {
                    "text": "First answer: made.txt written.",
                    "expect": {"last_tool_result_contains": "made.txt"},
                },
                {"text": "Second answer.", "expect": {"last_user_text_contains": "second prompt"}},
                {"text": "Third answer.", "expect": {"last_user_text_contains": "third prompt"}},
            ]
        }
    ]
}


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-5-5", "openai/gpt-5"])
def test_run_then_continue_and_session(
    tmp_path: Path, redis_handle: RedisHandle, model: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        env = _env(stub, redis_handle.url)
        first = swarm(tmp_path, env, "run", "make a file", "--model", model, "--repo", "repo")
        assert first.returncode == 0, first.stdout + first.stderr
        # the model's text and the tool call as lines, on stdout; the summary on stderr
        assert "Writing the file." in first.stdout
        assert '→ bash {"command": "echo hello > made.txt && ls"}' in first.stdout
        assert "First answer: made.txt written." in first.stdout
        assert (repo / "made.txt").read_text() == "hello\n"
        sid = first.stderr.split("continue with: swarm run --session ")[1].split()[0]
        assert sid.endswith("/run")

        second = swarm(
            tmp_path,
            env,
            "run",
            "the second prompt",
            "--continue",
            "--repo",
            "repo",
            "--format",
            "json",
        )
        assert second.returncode == 0, second.stdout + second.stderr
        events = ndjson(second.stdout)
        assert events[0] == {
            "type": "session",
            "id": sid,
            "model": model,
            "repo": str(repo),
            "continued": True,
        }
        assert {"type": "text", "text": "Second answer."} in events
        # the text came as it arrived, before the stored message, and adds up to it
        deltas = [e for e in events if e["type"] == "text_delta"]
        stored = events.index({"type": "text", "text": "Second answer."})
        assert deltas and all(events.index(d) < stored for d in deltas)
        assert "".join(d["text"] for d in deltas) == "Second answer."
        assert events[-1]["type"] == "result"
        assert events[-1]["exit_code"] == 0 and events[-1]["result"] == "Second answer."
        assert events[-1]["usage"]["turns"] == 3

        third = swarm(tmp_path, env, "run", "the third prompt", "--session", sid)
        assert third.returncode == 0, third.stdout + third.stderr
        assert third.stdout.count("Third answer.") == 1  # streamed, not printed again

        requests = stub.requests.snapshot()
        assert len(requests) == 4
        wire = "/v1/messages" if model.startswith("anthropic") else "/chat/completions"
        assert all(r.path.endswith(wire) for r in requests)
        # the continuations sent the whole stored conversation before the new prompt
        sent = texts_of(requests[2])
        for earlier in ("make a file", "Writing the file.", "made.txt", "First answer"):
            assert earlier in sent
        assert sent.index("First answer") < sent.index("the second prompt")
        last = texts_of(requests[3])
        assert "Second answer." in last and "the second prompt" in last
        assert last.index("Second answer.") < last.index("the third prompt")


def test_run_failed_task_exits_1_and_json_is_ndjson(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    (tmp_path / "repo").mkdir()
    script = StubScript.model_validate(
        {
            "conversations": [
                {
                    "turns": [
                        {"tool_calls": [{"name": "task_fail", "input": {"reason": "cannot do it"}}]}
                    ]
                }
            ]
        }
    )
    with StubServer(script) as stub:
        out = swarm(
            tmp_path,
            _env(stub, redis_handle.url),
            "run",
            "impossible",
            "--repo",
            "repo",
            "--format",
            "json",
        )
    assert out.returncode == 1, out.stdout + out.stderr
    events = ndjson(out.stdout)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "session" and kinds[-1] == "result"
    assert any(e["type"] == "tool_call" and e["name"] == "task_fail" for e in events)
    assert events[-1]["status"] == "failed" and "cannot do it" in events[-1]["error"]


def test_session_commands(tmp_path: Path, redis_handle: RedisHandle) -> None:
    (tmp_path / "repo").mkdir()
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        env = _env(stub, redis_handle.url)
        first = swarm(tmp_path, env, "run", "make a file", "--repo", "repo")
        assert first.returncode == 0, first.stdout + first.stderr
        sid = first.stderr.split("continue with: swarm run --session ")[1].split()[0]
        run_id = sid.split("/")[0]

        listed = swarm(tmp_path, env, "session", "list", "--run", run_id, "--json")
        assert listed.returncode == 0, listed.stderr
        (row,) = json.loads(listed.stdout)
        assert row["id"] == sid and row["kind"] == "run" and row["status"] == "completed"
        assert row["messages"] == 4  # prompt, call, result, answer
        assert row["model"] == "anthropic/claude-sonnet-5-5"
        recent = json.loads(swarm(tmp_path, env, "session", "list", "--json").stdout)
        assert recent[0]["id"] == sid  # the latest update comes first

        shown = swarm(tmp_path, env, "session", "show", run_id)  # RUN alone: its one task
        assert shown.returncode == 0, shown.stderr
        assert "> Task run: make a file" in shown.stdout
        assert '→ bash {"command": "echo hello > made.txt && ls"}' in shown.stdout
        assert "← made.txt Exit code: 0" in shown.stdout
        assert "First answer: made.txt written." in shown.stdout

        exported = swarm(tmp_path, env, "session", "export", sid, "--format", "json")
        data = json.loads(exported.stdout)
        assert data["id"] == sid and len(data["messages"]) == 4
        assert data["messages"][1]["content"][1]["name"] == "bash"
        md = swarm(tmp_path, env, "session", "export", sid, "--format", "md", "-o", "s.md")
        assert md.returncode == 0
        text = (tmp_path / "s.md").read_text()
        assert text.startswith(f"# Session {sid}")
        assert "<details><summary>tool call: bash</summary>" in text

        cont = swarm(tmp_path, env, "session", "continue", sid, "the second prompt")
        assert cont.returncode == 0, cont.stdout + cont.stderr
        assert "Second answer." in cont.stdout
        assert "the second prompt" in texts_of(stub.requests.snapshot()[-1])

        bad = swarm(tmp_path, env, "session", "show", "no-such-run/x")
        assert bad.returncode == 2 and "no run 'no-such-run'" in bad.stderr

        gone = swarm(tmp_path, env, "session", "delete", sid)
        assert gone.returncode == 0 and "deleted session" in gone.stdout
        after = swarm(tmp_path, env, "session", "show", sid)
        assert after.returncode == 2
        ids = [
            r["id"] for r in json.loads(swarm(tmp_path, env, "session", "list", "--json").stdout)
        ]
        assert sid not in ids


SWARM_CONFIG = """\
name: two-tasks
goal: write two files
workspace: shared
agents:
  - {name: maker, role: developer}
phases:
  - name: one
    tasks:
      - {id: a, title: Write a, role: developer}
      - {id: b, title: Write b, role: developer, needs: [a]}
"""


def test_swarm_task_session_continued_by_hand(tmp_path: Path, redis_handle: RedisHandle) -> None:
    script = StubScript.model_validate(
        {
            "conversations": [
                {
                    "task": "a",
                    "turns": [
                        {"tool_calls": [{"name": "bash", "input": {"command": "echo a > a.txt"}}]},
                        {"text": "a is written"},
                        {
                            "text": "a is finished now",
                            "expect": {"last_user_text_contains": "finish"},
                        },
                    ],
                },
                {"task": "b", "turns": [{"text": "b done"}]},
            ]
        }
    )
    with StubServer(script) as stub:
        run_id, proc = run_swarm(tmp_path, SWARM_CONFIG, stub, redis_handle.url)
        assert proc.returncode == 0, proc.stdout
        env = _env(stub, redis_handle.url)
        listed = json.loads(
            swarm(tmp_path, env, "session", "list", "--run", run_id, "--json").stdout
        )
        assert [(r["id"], r["kind"], r["agent"]) for r in listed] == [
            (f"{run_id}/a", "swarm", "maker"),
            (f"{run_id}/b", "swarm", "maker"),
        ]
        before = len(stub.requests.snapshot())
        out = swarm(tmp_path, env, "run", "please finish it", "--session", f"{run_id}/a")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "a is finished now" in out.stdout
        (req,) = stub.requests.snapshot()[before:]
        sent = texts_of(req)
        # the agent's own conversation went out first, then the person's message
        assert "Task a: Write a" in sent and "echo a > a.txt" in sent and "a is written" in sent
        assert sent.index("a is written") < sent.index("please finish it")
        assert "Agent: maker" in json.dumps(req.body.get("system", req.body.get("messages")))
        shown = swarm(tmp_path, env, "session", "show", f"{run_id}/a").stdout
        assert "> please finish it" in shown and "a is finished now" in shown
        status = json.loads(swarm(tmp_path, env, "status", run_id, "--json").stdout)
        assert status["state"] == "completed"
        assert {t["id"]: t["status"] for t in status["tasks"]} == {
            "a": "completed",
            "b": "completed",
        }


def test_bad_input_and_budget_exit_codes(tmp_path: Path, redis_handle: RedisHandle) -> None:
    (tmp_path / "fresh").mkdir()
    script = StubScript.model_validate({"conversations": [{"turns": [{"text": "never sent"}]}]})
    with StubServer(script) as stub:
        env = _env(stub, redis_handle.url)
        none_yet = swarm(tmp_path, env, "run", "go on", "--continue", "--repo", "fresh")
        assert none_yet.returncode == 2 and "no `swarm run` session" in none_yet.stderr
        both = swarm(tmp_path, env, "run", "x", "--continue", "--session", "a/b")
        assert both.returncode == 2 and "--continue and --session" in both.stderr
        model = swarm(tmp_path, env, "run", "x", "--model", "nobody/x", "--repo", "fresh")
        assert model.returncode == 2 and "--model" in model.stderr
        broke = swarm(
            tmp_path,
            env,
            "run",
            "x",
            "--repo",
            "fresh",
            "--max-usd",
            "0.000001",
            "--format",
            "json",
        )
        assert broke.returncode == 3, broke.stdout + broke.stderr
        result = ndjson(broke.stdout)[-1]
        assert result["state"] == "budget" and "max_usd" in result["error"]
        assert stub.requests.snapshot() == []  # refused before anything was sent


def test_run_never_starts_ray(tmp_path: Path, redis_handle: RedisHandle) -> None:
    (tmp_path / "repo").mkdir()
    code = (
        "import sys\n"
        "from swarm.cli import app\n"
        "try:\n"
        "    app(['run', 'say hi', '--repo', 'repo'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print('no ray')\n"
    )
    script = StubScript.model_validate({"conversations": [{"turns": [{"text": "hi"}]}]})
    with StubServer(script) as stub:
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=_env(stub, redis_handle.url),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "no ray" and "hi" in out.stdout
