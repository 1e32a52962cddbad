"""Pure pieces of `swarm run` and sessions: the generated config, the readable and the
Markdown renderings, and the transcript repair a continuation relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.errors import BadInput
from swarm.providers.repair import repair
from swarm.providers.types import Message, TextBlock, ToolCall, ToolResult
from swarm.sessions import SessionRow, SessionView, render_md, render_text
from swarm.single import RunOptions, generated_config, new_plan


def _view() -> SessionView:
    long_output = "\n".join(f"line {i}" for i in range(50))
    return SessionView(
        row=SessionRow(id="r/t", run="r", task="t", kind="run", title="do it", status="completed"),
        messages=[
            Message.user_text("Task t: do it").model_dump(),
            Message(
                role="assistant",
                content=[
                    TextBlock(text="Looking."),
                    ToolCall(id="c1", name="bash", input={"command": "seq 50"}),
                ],
            ).model_dump(),
            Message(
                role="user", content=[ToolResult(tool_call_id="c1", content=long_output)]
            ).model_dump(),
            Message(role="assistant", content=[TextBlock(text="All done.")]).model_dump(),
        ],
        usage={"input_tokens": 10, "output_tokens": 5, "turns": 2, "usd": 0.01},
    )


def test_render_text_folds_tool_calls_and_results() -> None:
    text = render_text(_view())
    assert "> Task t: do it" in text
    assert '→ bash {"command": "seq 50"}' in text
    (result,) = [ln for ln in text.splitlines() if ln.startswith("  ←")]
    assert result.endswith("[50 lines]") and "line 49" not in result  # folded to one line
    assert "All done." in text and "2 turns, $0.0100" in text


def test_render_md_puts_tools_in_details() -> None:
    md = render_md(_view())
    assert md.startswith("# Session r/t\n")
    assert "<details><summary>tool call: bash</summary>" in md
    assert "line 49" in md  # Markdown keeps the whole result
    assert md.index("## assistant") < md.index("All done.")


def test_generated_config_is_one_agent_one_task(tmp_path: Path) -> None:
    cfg = generated_config(RunOptions(prompt="fix it\nplease, with care", max_usd=1.5), tmp_path)
    assert [a["name"] for a in cfg["agents"]] == ["agent"]
    (phase,) = cfg["phases"]
    (task,) = phase["tasks"]
    assert task["id"] == "run" and task["title"] == "fix it"
    assert task["description"] == "fix it\nplease, with care"
    assert cfg["workspace"] == "shared" and cfg["budget"] == {"max_usd": 1.5}


def test_new_plan_goes_through_config_and_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    repo = tmp_path / "repo"
    (repo / "agents").mkdir(parents=True)
    (repo / "agents" / "developer.md").write_text(
        "---\nname: developer\ntools: [read, grep]\n---\nYou are this repo's developer.\n"
    )
    plan = new_plan(RunOptions(prompt="look around", repo=repo), tmp_path)
    (agent,) = plan.loaded.agents
    assert agent.tools == ["read", "grep"]  # the repository's own card wins
    assert plan.workspace.mode == "shared" and plan.repo == repo.resolve()
    assert (tmp_path / ".swarm" / "runs" / plan.run_id / "swarm.yaml").is_file()
    with pytest.raises(BadInput, match="--model"):
        new_plan(RunOptions(prompt="x", model="nope", repo=repo), tmp_path)
    with pytest.raises(BadInput, match="PROMPT"):
        new_plan(RunOptions(prompt="  ", repo=repo), tmp_path)
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(BadInput, match="ANTHROPIC_API_KEY"):
        new_plan(RunOptions(prompt="x", repo=repo), tmp_path)


def test_repair_merges_a_message_added_after_tool_results() -> None:
    call = Message(role="assistant", content=[ToolCall(id="c1", name="bash", input={})])
    results = Message(role="user", content=[ToolResult(tool_call_id="c1", content="ok")])
    fixed = repair([Message.user_text("task"), call, results, Message.user_text("go on")])
    assert [m.role for m in fixed] == ["user", "assistant", "user"]
    assert isinstance(fixed[2].content[0], ToolResult)
    assert fixed[2].content[-1] == TextBlock(text="go on")
