"""The peers benchmark's pieces that can be checked without running the peers: the
request-log check (on synthetic logs and on a real log of the scripted server), the
ratios and tables, the venv stamp, the chart."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import peers_cpu, swarm_cpu
from benchmarks.peers import PEERS, Peer
from benchmarks.peers import env as peer_env
from benchmarks.peers_cpu import Outcome, WorkloadMismatch, check_log, ratio


def _file_text(turn: int) -> str:
    i = turn % swarm_cpu.FILES
    return "".join(f"value_{i}_{n} = {n}\n" for n in range(60))


def _request(task: str, turn: int, seq: int = 0, status: int = 200) -> dict[str, Any]:
    """A record as the stub writes it: the conversation so far, `turn` tool rounds."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Agent: dev-0\nYou read files."},
        {"role": "user", "content": f"Task {task}: read the files"},
    ]
    for t in range(turn):
        call = {"id": f"c{t}", "type": "function", "function": {"name": "read", "arguments": "{}"}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{t}", "content": _file_text(t)})
    return {
        "seq": seq,
        "path": "/openai/v1/chat/completions",
        "status": status,
        "task": task,
        "turn": turn,
        "error": None if status == 200 else "stub: no scripted turn",
        "body": {"model": "m", "messages": messages},
    }


def _log(agents: int, turns: int) -> list[dict[str, Any]]:
    return [_request(f"t{a}", k) for k in range(turns + 1) for a in range(agents)]


def test_a_complete_log_passes_and_counts_the_calls() -> None:
    assert check_log(_log(3, 4), agents=3, turns=4) == 15


def test_a_conversation_short_of_a_turn_fails() -> None:
    records = [r for r in _log(2, 3) if not (r["task"] == "t1" and r["turn"] == 3)]
    with pytest.raises(WorkloadMismatch, match="t1: 3 requests"):
        check_log(records, agents=2, turns=3)


def test_a_missing_conversation_fails() -> None:
    records = [r for r in _log(3, 2) if r["task"] != "t2"]
    with pytest.raises(WorkloadMismatch, match="expected"):
        check_log(records, agents=3, turns=2)


def test_an_error_answer_fails_naming_its_status() -> None:
    records = [*_log(1, 2), _request("t0", 3, seq=9, status=400)]
    with pytest.raises(WorkloadMismatch, match="answered 400: stub: no scripted turn"):
        check_log(records, agents=1, turns=2)


def test_a_turn_without_the_read_result_fails() -> None:
    records = _log(1, 3)
    records[2]["body"]["messages"][-1]["content"] = "I could not read it"
    with pytest.raises(WorkloadMismatch, match="turn 2: the request does not carry"):
        check_log(records, agents=1, turns=3)


def test_a_summary_request_is_no_turn_of_the_workload() -> None:
    records = [*_log(1, 2), {**_request("t0", 1), "purpose": "summary", "turn": None}]
    with pytest.raises(WorkloadMismatch, match="no turn of the script"):
        check_log(records, agents=1, turns=2)


def test_an_uninstallable_peer_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = Path("/venv/ok/bin/python")

    def venv_python(peer: Peer) -> Path:
        if peer.name == "autogen":
            raise peer_env.PeerUnavailable("autogen-agentchat==0.7.5: ERROR: No matching dist")
        return ok

    monkeypatch.setattr(peers_cpu, "venv_python", venv_python)
    monkeypatch.setattr(peers_cpu, "installed_versions", lambda peer, py: {"x": "1.0"})
    got = peers_cpu.prepare_peers(PEERS)
    assert got["autogen"] == (
        None,
        "autogen-agentchat==0.7.5, autogen-ext[openai]==0.7.5",
        "autogen-agentchat==0.7.5: ERROR: No matching dist",
    )
    assert got["langgraph"] == (ok, "x 1.0", None)


def test_tool_results_are_read_after_the_last_assistant_message_only() -> None:
    body = _request("t0", 2)["body"]
    assert peers_cpu.last_tool_results(body) == [_file_text(1)]
    # content as a list of text parts, as some clients send it
    body["messages"][-1]["content"] = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert peers_cpu.last_tool_results(body) == ["ab"]
    body["messages"].append({"role": "assistant", "content": "done"})
    assert peers_cpu.last_tool_results(body) == []


def test_read_log_keeps_chat_completions_requests_only(tmp_path: Path) -> None:
    record = tmp_path / "log.jsonl"
    lines = [_request("t0", 0), {**_request("t0", 0), "path": "/v1/models"}, _request("t0", 1)]
    record.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    assert [r["turn"] for r in peers_cpu.read_log(record)] == [0, 1]


def test_the_check_reads_a_real_log_of_the_scripted_server(tmp_path: Path) -> None:
    """The plain loop against the real stub: its log passes; the same log with one request
    taken out does not."""
    script = swarm_cpu.write_workload(tmp_path, agents=2, turns=3)
    record = tmp_path / "requests.jsonl"
    stub, url = swarm_cpu._stub(script, record)
    try:
        asyncio.run(swarm_cpu.plain_loop(f"{url}/openai/v1", tmp_path / "repo", 2))
    finally:
        stub.terminate()
        stub.wait()
    records = peers_cpu.read_log(record)
    assert check_log(records, agents=2, turns=3) == 8
    with pytest.raises(WorkloadMismatch):
        check_log(records[:-1], agents=2, turns=3)
    with pytest.raises(WorkloadMismatch):
        check_log(records, agents=2, turns=4)


def _result(steady_cpu_s: float, total_cpu_s: float, requests: int = 11) -> swarm_cpu.Result:
    return swarm_cpu.Result("x", requests, steady_cpu_s, total_cpu_s, 0.1, 1.0, 2**20)


def test_ratio() -> None:
    assert ratio(30.0, 20.0) == 1.5
    assert ratio(None, 20.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None


def test_an_outcome_reports_the_median_of_its_runs() -> None:
    o = Outcome("p", runs=[_result(0.1, 1.1), _result(0.3, 0.0), _result(0.2, 2.2)])
    assert o.steady_ms == pytest.approx(20.0)  # 0.2 s over 10 calls after the first
    assert o.total_ms == pytest.approx(100.0)  # 1.1 s over 11 calls


def test_the_table_gives_ratios_to_the_plain_loop_and_marks_the_unavailable() -> None:
    outcomes = [
        Outcome(peers_cpu.PLAIN, "openai 1", runs=[_result(0.1, 0.22)]),
        Outcome("LangGraph", "langgraph 1", runs=[_result(0.25, 0.11)]),
        Outcome("AutoGen", "autogen-agentchat==0.7.5", unavailable="ERROR: No matching | dist"),
    ]
    lines = peers_cpu.table(10, outcomes)
    assert lines[0].startswith("**K = 10** (11 model calls")
    plain, lg, ag = lines[4:7]
    assert "| 10.0 | 1.00× | 20.0 | 1.00× |" in plain
    assert "| 25.0 | 2.50× | 10.0 | 0.50× |" in lg
    assert "| unavailable: ERROR: No matching \\| dist | | | | |" in ag


def test_the_section_names_run_machine_commit_and_links_the_chart() -> None:
    where = {"machine": "x86_64, 2 cores (CPU X)", "run at": "2026-01-01", "commit": "abc123"}
    outcomes = [Outcome(peers_cpu.PLAIN, "openai 1", runs=[_result(0.1, 0.2)])]
    text = peers_cpu.section(4, {10: outcomes}, where, 1, "auto")
    assert "on x86_64, 2 cores (CPU X), 2026-01-01, at commit abc123." in text
    assert "(benchmarks-cpu.png)" in text
    assert "**K = 10**" in text


def test_the_chart_is_a_png_even_with_a_peer_unavailable(tmp_path: Path) -> None:
    by_k = {
        k: [
            Outcome(peers_cpu.PLAIN, runs=[_result(0.1 * k, 0.2 * k)]),
            Outcome("AutoGen", unavailable="ERROR: no"),
            Outcome(peers_cpu.SWARM, runs=[_result(0.3, 2.0)]),
        ]
        for k in (10, 30)
    }
    out = tmp_path / "c.png"
    peers_cpu.write_chart(by_k, out, {"run at": "now", "commit": "abc", "machine": "m"})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_first_error_line_of_pip() -> None:
    out = "Collecting x\n  Downloading\nERROR: Could not find a version\nERROR: No matching\n"
    assert peer_env.first_error_line(out) == "ERROR: Could not find a version"
    assert peer_env.first_error_line("a\nlast words\n\n") == "last words"
    assert peer_env.first_error_line("") == "pip failed with no output"


PEER = Peer("fake", "Fake", "fake.py", ("fake==1.0",), ("fake",))


def test_a_venv_whose_stamp_matches_its_pins_is_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fake" / "bin").mkdir(parents=True)
    (tmp_path / "fake" / "bin" / "python").write_text("")
    (tmp_path / "fake" / peer_env.STAMP).write_text(json.dumps(["fake==1.0"]))
    monkeypatch.setattr(peer_env, "_run", lambda *a: pytest.fail("made anew"))
    assert peer_env.venv_python(PEER, tmp_path) == tmp_path / "fake" / "bin" / "python"


def test_a_venv_with_other_pins_is_made_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fake" / "bin").mkdir(parents=True)
    (tmp_path / "fake" / "bin" / "python").write_text("")
    (tmp_path / "fake" / peer_env.STAMP).write_text(json.dumps(["fake==0.9"]))
    ran: list[list[str]] = []

    def run(argv: list[str], peer: Peer) -> None:
        ran.append(argv)
        if argv[1:3] == ["-m", "venv"]:
            (Path(argv[3]) / "bin").mkdir(parents=True)

    monkeypatch.setattr(peer_env, "_run", run)
    peer_env.venv_python(PEER, tmp_path)
    assert ran[0][1:] == ["-m", "venv", str(tmp_path / "fake")]
    assert ran[1][-1] == "fake==1.0" and "install" in ran[1]
    assert json.loads((tmp_path / "fake" / peer_env.STAMP).read_text()) == ["fake==1.0"]


def test_a_failed_install_says_pip_s_first_error_line(tmp_path: Path) -> None:
    """A real failing command: the message is its first ERROR line, with the pins."""
    argv = [sys.executable, "-c", "import sys; print('noise'); print('ERROR: bad pin'); exit(1)"]
    with pytest.raises(peer_env.PeerUnavailable, match=r"^fake==1.0: ERROR: bad pin$"):
        peer_env._run(argv, PEER)


def test_every_peer_pins_exact_versions_and_has_its_script() -> None:
    for peer in PEERS:
        assert peer.path.exists(), peer.script
        assert peer.pins and all("==" in pin for pin in peer.pins), peer.pins
        # the peer scripts run in the peer's venv: they never import swarm or benchmarks
        source = peer.path.read_text()
        assert "import swarm" not in source and "from benchmarks" not in source
        compile(source, str(peer.path), "exec")


def test_the_doc_header_names_machine_run_and_commit_and_keeps_markdown_sections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import run as bench_run

    monkeypatch.setattr(bench_run, "DOC", tmp_path / "benchmarks.md")
    where = bench_run.provenance()
    assert set(where) == {"machine", "run at", "commit"}
    assert f"{os.cpu_count()} cores (" in where["machine"]
    text = bench_run.write_doc({"Rows": [("a", "1")], "Peers": "**K = 10**\n\n| x |\n"}, where)
    assert f"- commit: {where['commit']}" in text and f"- machine: {where['machine']}" in text
    assert "## Peers\n\n**K = 10**\n\n| x |\n" in text
    assert "| a | 1 |" in text
    bench_run.replace_markdown("Peers", "new body")
    after = (tmp_path / "benchmarks.md").read_text()
    assert "## Peers\n\nnew body\n" in after and "**K = 10**" not in after
    assert "| a | 1 |" in after
