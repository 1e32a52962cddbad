"""`swarm serve` over real HTTP: auth, runs started through the API on the scripted
server, SSE resumed with Last-Event-ID, stop and resume, approvals, located errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from tests.e2e.serveharness import TOKEN, read_frames, served
from tests.e2e.swarmrun import new_run_id
from tests.faults.harness import free_port, kill_tree

pytestmark = pytest.mark.e2e


def config(n_tasks: int, extra: str = "") -> str:
    lines = [
        "name: served",
        "goal: serve",
        "model: anthropic/claude-sonnet-5-5",
        "workspace: shared",
        "lease_s: 6",
        extra,
        "agents:",
        "  - {name: dev, role: developer, count: 2}",
        "phases:",
        "  - name: only",
        "    tasks:",
    ]
    lines += [f"      - {{id: t{i}, title: Task {i}, role: developer}}" for i in range(n_tasks)]
    return "\n".join(ln for ln in lines if ln) + "\n"


def script(n_tasks: int, delay_s: float) -> dict[str, object]:
    return {
        "conversations": [
            {
                "task": f"t{i}",
                "turns": [
                    {
                        "delay_s": delay_s,
                        "tool_calls": [
                            {"name": "bash", "input": {"command": f"echo t{i} >> done.log"}}
                        ],
                    },
                    {"delay_s": delay_s, "text": f"t{i} done"},
                ],
            }
            for i in range(n_tasks)
        ]
    }


def test_auth(tmp_path: Path, redis_handle: RedisHandle) -> None:
    with served(tmp_path, script(1, 0), redis_handle.url, config(1)) as s:
        assert httpx.get(f"{s.base}/health").status_code == 200
        for headers in (
            {},
            {"Authorization": "Bearer wrong-token"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
        ):
            for path in ("/runs", "/openapi.json", "/runs/x/events", "/nowhere"):
                r = httpx.get(f"{s.base}{path}", headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.json() == {
                    "error": {"code": "unauthorized", "message": "authentication required"}
                }
        r = httpx.get(f"{s.base}/runs", headers=s.auth)
        assert r.status_code == 200 and "runs" in r.json()
        assert TOKEN not in s.output()  # never logged


def test_bad_config_is_a_located_422(tmp_path: Path, redis_handle: RedisHandle) -> None:
    (tmp_path / "bad.yaml").write_text("name: bad\ngoal: g\nagents:\n  - {name: a}\nphases: []\n")
    with served(tmp_path, script(1, 0), redis_handle.url, config(1)) as s, s.client() as c:
        r = c.post("/runs", json={"config": "bad.yaml"})
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "bad_input"
        assert err["message"].startswith("bad.yaml:4: agents[0].role: field required")
        inline = {"name": "x", "goal": "g", "agents": [{"name": "a", "role": "r"}], "phases": []}
        r = c.post("/runs", json={"config": inline})
        assert r.status_code == 422 and r.json()["error"]["message"].startswith("config:")
        r = c.post("/runs", json={"config": "missing.yaml"})
        assert r.status_code == 422 and "missing.yaml" in r.json()["error"]["message"]
        r = c.post("/runs", json={"nope": 1})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
        assert c.get("/runs/no-such-run").status_code == 404
        assert c.get("/runs/no-such-run").json()["error"]["code"] == "not_found"


def test_sse_resumes_after_last_event_id(tmp_path: Path, redis_handle: RedisHandle) -> None:
    n = 4
    with served(tmp_path, script(n, 0.3), redis_handle.url, config(n)) as s:
        run_id = new_run_id("sse")
        assert s.start_run(run_id) == {"run_id": run_id, "state": "running"}
        with s.client() as c:
            first, _ = read_frames(c, f"/runs/{run_id}/events", stop_after=12)
            assert len(first) == 12
            snap = c.get(f"/runs/{run_id}").json()
            assert snap["state"] == "running"  # dropped half-way through the run
            rest, _ = read_frames(
                c, f"/runs/{run_id}/events", headers={"Last-Event-ID": first[-1].id}
            )
            full, _ = read_frames(c, f"/runs/{run_id}/events")
            # the query form resumes the same way
            tail, _ = read_frames(c, f"/runs/{run_id}/events?last_event_id={first[5].id}")
            again, _ = read_frames(
                c, f"/runs/{run_id}/events", headers={"Last-Event-ID": full[-1].id}
            )
            assert c.get(f"/runs/{run_id}").json()["state"] == "completed"
        assert first + rest == full
        assert tail == full[6:]
        assert again == []  # after the final run_finished: nothing more
        assert full[-1].event == "run_finished"
        ids = [f.id for f in full]
        assert len(set(ids)) == len(ids)
        for f in full:
            data = json.loads(f.data)
            assert data["id"] == f.id and data["type"] == f.event
        stored = asyncio.run(_events_until_finished(redis_handle.url, run_id))
        assert [(f.id, f.event, json.loads(f.data)) for f in full] == stored
        assert sum(f.event == "task_completed" for f in full) == n


async def _events_until_finished(url: str, run_id: str) -> list[tuple[str, str, dict]]:
    board = Blackboard(url, run_id)
    try:
        out = []
        for e in await board.events(count=100_000):
            out.append((e.id, e.type, json.loads(e.model_dump_json())))
            if e.type == "run_finished":
                break
        return out
    finally:
        await board.close()


def test_heartbeat_comment(tmp_path: Path, redis_handle: RedisHandle) -> None:
    """The stream of a quiet run carries a heartbeat comment every 15 s."""
    cfg = config(1).replace("phases:", "budget: {max_wall_s: 60}\nphases:")
    slow = {"conversations": [{"task": "t0", "turns": [{"delay_s": 17, "text": "slow"}]}]}
    with served(tmp_path, slow, redis_handle.url, cfg) as s:
        run_id = new_run_id("hb")
        s.start_run(run_id)
        with s.client() as c:
            frames, comments = read_frames(c, f"/runs/{run_id}/events")
        assert "heartbeat" in comments
        assert frames[-1].event == "run_finished"


def test_stop_and_resume_through_the_api(tmp_path: Path, redis_handle: RedisHandle) -> None:
    n = 6
    with served(tmp_path, script(n, 0.4), redis_handle.url, config(n)) as s:
        run_id = new_run_id("stop")
        s.start_run(run_id)
        with s.client() as c:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                snap = c.get(f"/runs/{run_id}").json()
                if any(t["status"] == "completed" for t in snap["tasks"]):
                    break
                time.sleep(0.1)
            r = c.post(f"/runs/{run_id}/stop")
            assert r.status_code == 200 and r.json() == {"run_id": run_id, "state": "stopping"}
            snap = s.wait_state(run_id, {"interrupted"})
            assert sum(t["status"] == "completed" for t in snap["tasks"]) < n
            deadline = time.monotonic() + 60
            while True:  # 409 while the stopped coordinator is still shutting down
                r = c.post(f"/runs/{run_id}/resume")
                if r.status_code != 409 or time.monotonic() > deadline:
                    break
                assert "stopping" in r.json()["error"]["message"]
                time.sleep(0.5)
            assert r.status_code == 200, r.text
            assert r.json() == {"run_id": run_id, "state": "running"}
            frames, _ = read_frames(c, f"/runs/{run_id}/events")
            snap = c.get(f"/runs/{run_id}").json()
            r = c.post(f"/runs/{run_id}/resume")
            assert r.status_code == 409  # completed: nothing to resume
        kinds = [f.event for f in frames]
        assert kinds.count("run_finished") == 2 and "run_resumed" in kinds
        assert snap["state"] == "completed"
        assert all(t["status"] == "completed" for t in snap["tasks"])
        assert sorted((s.repo / "done.log").read_text().split()) == sorted(
            f"t{i}" for i in range(n)
        )


APPROVALS = """\
permissions:
  bash: {"*": allow, "touch approved*": ask, "touch denied*": ask}
"""


def test_approve_one_deny_another(tmp_path: Path, redis_handle: RedisHandle) -> None:
    turns = [
        {"tool_calls": [{"name": "bash", "input": {"command": "touch approved && echo made-it"}}]},
        {"tool_calls": [{"name": "bash", "input": {"command": "touch denied"}}]},
        {"text": "done"},
    ]
    one = {"conversations": [{"task": "t0", "turns": turns}]}
    cfg = config(1, APPROVALS).replace("count: 2", "count: 1")
    with served(tmp_path, one, redis_handle.url, cfg) as s:
        run_id = new_run_id("ask")
        s.start_run(run_id)
        answered: list[dict[str, object]] = []
        with s.client() as c:
            deadline = time.monotonic() + 120
            while len(answered) < 2 and time.monotonic() < deadline:
                pending = c.get(f"/runs/{run_id}/approvals").json()["approvals"]
                for ap in pending:
                    if "approved" in ap["summary"]:
                        body = {"decision": "allow"}
                    else:
                        body = {"decision": "deny", "message": "not on my watch"}
                    r = c.post(f"/runs/{run_id}/approvals/{ap['id']}", json=body)
                    assert r.status_code == 200, r.text
                    again = c.post(f"/runs/{run_id}/approvals/{ap['id']}", json=body)
                    assert again.status_code == 409  # answered once only
                    answered.append(ap)
                time.sleep(0.1)
            snap = s.wait_state(run_id, {"completed", "failed"})
            assert c.get(f"/runs/{run_id}/approvals").json() == {"approvals": []}
            session = c.get(f"/runs/{run_id}/sessions/t0").json()
        assert snap["state"] == "completed"
        assert [a["summary"] for a in answered] == [
            "touch approved && echo made-it",
            "touch denied",
        ]
        assert answered[0]["rule"] == "touch approved*" and answered[0]["agent"] == "dev"
        assert (s.repo / "approved").exists() and not (s.repo / "denied").exists()
        last = s.requests_log()[-1]["body"]  # what the model saw at the end
        results = [
            b
            for m in last["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b.get("type") == "tool_result"
        ]
        texts = [json.dumps(b["content"]) for b in results]
        assert "made-it" in texts[0]
        assert "not approved" in texts[1] and "not on my watch" in texts[1]
        assert results[1].get("is_error") is True
        assert len(session["messages"]) == 6  # the same conversation, as stored


def test_report_and_listing(tmp_path: Path, redis_handle: RedisHandle) -> None:
    with served(tmp_path, script(2, 0), redis_handle.url, config(2)) as s:
        ids = [new_run_id(f"ls{i}") for i in range(3)]
        for run_id in ids:
            s.start_run(run_id)
        for run_id in ids:
            s.wait_state(run_id, {"completed"})
        with s.client() as c:
            seen: list[str] = []
            cursor = None
            while True:
                params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
                page = c.get("/runs", params=params).json()
                seen += [r["run_id"] for r in page["runs"]]
                assert len(page["runs"]) <= 2
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert len(seen) == len(set(seen))
            assert [i for i in seen if i in ids] == list(reversed(ids))  # newest first
            md = c.get(f"/runs/{ids[0]}/report")
            assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
            assert ids[0] in md.text
            js = c.get(f"/runs/{ids[0]}/report", params={"format": "json"}).json()
            assert js["run_id"] == ids[0]
            junit = c.get(f"/runs/{ids[0]}/report", params={"format": "junit"})
            assert junit.text.startswith("<?xml") and "testsuite" in junit.text
            assert c.get(f"/runs/{ids[0]}/report", params={"format": "pdf"}).status_code == 422
            diff = c.get(f"/runs/{ids[0]}/diff")
            assert diff.status_code == 409 and diff.json()["error"]["code"] == "not_worktree"
            assert c.get(f"/runs/{ids[0]}/sessions/nope").status_code == 404
            api_status = c.get(f"/runs/{ids[0]}").json()
        cli = subprocess.run(
            [sys.executable, "-m", "swarm.cli", "status", ids[0], "--json"],
            cwd=tmp_path,
            env={**os.environ, "REDIS_URL": redis_handle.url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout) == api_status  # the same JSON as `swarm status --json`


def test_remote_bind_with_the_flag_warns(tmp_path: Path, redis_handle: RedisHandle) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.cli", "serve", "--host", "0.0.0.0", "--port", str(port)]
        + ["--allow-remote"],
        cwd=tmp_path,
        env={**os.environ, "REDIS_URL": redis_handle.url, "SWARM_SERVER_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and not status:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code
            except httpx.HTTPError:
                time.sleep(0.1)
        assert status == 200
    finally:
        kill_tree(proc.pid)
        out, _ = proc.communicate(timeout=10)
    assert "warning: swarm serve listens on 0.0.0.0" in out
    assert TOKEN not in out  # a token from the environment is never printed


def test_stop_while_a_call_waits_then_resume_asks_again(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    calls = [
        {"name": "bash", "input": {"command": "echo once >> ran.log"}},
        {"name": "bash", "input": {"command": "touch approved"}},
    ]
    one = {"conversations": [{"task": "t0", "turns": [{"tool_calls": calls}, {"text": "done"}]}]}
    cfg = config(1, APPROVALS).replace("count: 2", "count: 1")
    with served(tmp_path, one, redis_handle.url, cfg) as s:
        run_id = new_run_id("askstop")
        s.start_run(run_id)
        with s.client() as c:
            first = _pending(c, run_id)
            assert c.post(f"/runs/{run_id}/stop").json()["state"] == "stopping"
            s.wait_state(run_id, {"interrupted"})
            deadline = time.monotonic() + 60
            while c.get(f"/runs/{run_id}/approvals").json()["approvals"]:
                assert time.monotonic() < deadline, "the question was not withdrawn"
                time.sleep(0.2)
            assert not (s.repo / "approved").exists()
            while (r := c.post(f"/runs/{run_id}/resume")).status_code == 409:
                assert time.monotonic() < deadline + 60, r.text
                time.sleep(0.5)
            assert r.status_code == 200, r.text
            second = _pending(c, run_id)  # asked again after the resume
            assert second["id"] != first["id"] and second["summary"] == first["summary"]
            r = c.post(f"/runs/{run_id}/approvals/{second['id']}", json={"decision": "allow"})
            assert r.status_code == 200
            snap = s.wait_state(run_id, {"completed", "failed"})
        assert snap["state"] == "completed"
        assert (s.repo / "approved").exists()
        assert (s.repo / "ran.log").read_text() == "once\n"  # the call before it ran once
        texts = [json.dumps(m) for m in s.requests_log()[-1]["body"]["messages"]]
        assert not any("interrupted" in t for t in texts)


def _pending(c: httpx.Client, run_id: str, timeout: float = 120) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = c.get(f"/runs/{run_id}/approvals").json()["approvals"]
        if found:
            assert len(found) == 1
            return dict(found[0])
        time.sleep(0.1)
    raise AssertionError("no approval was requested")
