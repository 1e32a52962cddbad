"""The context view's pure parts: pruning, shrinking, output caps, the inbox note."""

from __future__ import annotations

from swarm.context import (
    ContextPolicy,
    Conversation,
    apply_prune,
    cap_tool_output,
    compacted_message,
    files_written,
    inbox_block,
    shrink,
    summary_request,
)
from swarm.providers.convert import to_chat_messages
from swarm.providers.types import (
    Message,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    ToolResult,
)


def turn(n: int, size: int = 2000) -> list[Message]:
    call = ToolCall(id=f"c{n}", name="read", input={"file_path": f"f{n}.py"})
    return [
        Message(role="assistant", content=[call]),
        Message(role="user", content=[ToolResult(tool_call_id=f"c{n}", content="x" * size)]),
    ]


def conversation(turns: int) -> list[Message]:
    out = [Message.user_text("Task a: A")]
    for n in range(1, turns + 1):
        out += turn(n)
    return out


def results(messages: list[Message]) -> list[str]:
    return [r.content for m in messages for r in m.tool_results]


def test_prune_replaces_old_output_and_keeps_recent_turns() -> None:
    view = apply_prune(conversation(6), pruned=4, turns_before=0)
    texts = results(view)
    assert all(t.startswith("[output pruned") for t in texts[:4])
    assert texts[4:] == ["x" * 2000, "x" * 2000]
    assert 'read {"file_path": "f2.py"}' in texts[1]  # says how to get it again
    assert "2000 characters" in texts[1]


def test_prune_is_stable_and_idempotent() -> None:
    once = apply_prune(conversation(6), pruned=4, turns_before=0)
    again = apply_prune(once, pruned=5, turns_before=0)
    assert results(again)[:4] == results(once)[:4]  # the same text: the cache holds
    assert apply_prune(conversation(6), 4, 0) == once


def test_prune_counts_turns_from_the_view_start() -> None:
    view = conversation(3)  # after a compaction that summarised 10 turns
    assert results(apply_prune(view, pruned=10, turns_before=10)) == ["x" * 2000] * 3
    assert results(apply_prune(view, pruned=11, turns_before=10))[0].startswith("[output")


def test_short_results_are_kept() -> None:
    msgs = [Message.user_text("Task a: A"), *turn(1, size=100), *turn(2)]
    assert results(apply_prune(msgs, 2, 0))[0] == "x" * 100


def test_conversation_counts_turns_and_chars() -> None:
    convo = Conversation(conversation(3), turns_before=7)
    assert convo.turns == 10
    before = convo.chars
    convo.append(Message.user_text("more"))
    assert convo.chars > before


def test_shrink_prunes_then_drops_the_oldest_turns() -> None:
    msgs = conversation(20)

    def fits(m: list[Message]) -> bool:
        return sum(len(x.model_dump_json()) for x in m) < 3000

    out = shrink(msgs, 0, fits)
    assert fits(out)
    assert out[0] == msgs[0]  # the task stays
    assert out[-1].tool_results[0].content == "x" * 2000  # the last output stays whole
    assert [m.role for m in out[:2]] == ["user", "assistant"]


def test_summary_request_adds_to_the_last_user_message() -> None:
    msgs = conversation(2)
    req = summary_request(msgs)
    assert req[:-1] == msgs[:-1]  # the same prefix: the prompt cache holds
    assert req[-1].tool_results == msgs[-1].tool_results
    assert "[swarm: context compaction]" in req[-1].text
    assert msgs[-1].text == ""  # the view itself is untouched


def test_compacted_message_keeps_the_task_and_files() -> None:
    msgs = conversation(1) + [
        Message(
            role="assistant",
            content=[ToolCall(id="w", name="write", input={"file_path": "a.py", "content": ""})],
        )
    ]
    files = files_written(msgs)
    assert files == ["a.py"]
    text = compacted_message("Task a: A\nDo it.", "I did half.", 12, files).text
    assert text.startswith("Task a: A\nDo it.")
    assert "[Conversation compacted after 12 turns" in text and "I did half." in text
    assert "a.py" in text


def test_output_cap_is_shared_fairly_and_says_what_was_cut() -> None:
    texts = ["a" * 100, "b" * 50_000, "c" * 50_000]
    out = cap_tool_output(texts, 20_000)
    assert out[0] == "a" * 100  # a short one whole
    assert out[1].startswith("b" * 9_950) and "[cut: 9950 of 50000 characters" in out[1]
    assert sum(len(t.split("\n[cut:")[0]) for t in out) <= 20_000
    assert cap_tool_output(["x" * 10], 20_000) == ["x" * 10]


def test_policy_limits_leave_room_for_the_reply() -> None:
    p = ContextPolicy(window=16_000, max_output=4_000)
    assert p.usable == 16_000 - 4_000 - 320
    assert p.prune_limit < p.compact_limit < p.usable


def test_inbox_block_shows_messages_and_counts_what_it_shows() -> None:
    text, n = inbox_block([{"from": "lead", "body": "hi"}, {"from": "qa", "body": "x" * 20_000}])
    assert n == 1 and "From lead: hi" in text  # the long one waits for the next turn
    assert inbox_block([]) == ("", 0)


def test_thinking_is_dropped_for_another_provider() -> None:
    msg = Message(
        role="assistant",
        content=[
            ThinkingBlock(thinking="hmm", signature="sig"),
            RedactedThinkingBlock(data="abc"),
            TextBlock(text="Answer"),
        ],
    )
    wire = to_chat_messages("", [Message.user_text("q"), msg])
    assert wire[-1] == {"role": "assistant", "content": "Answer"}
    assert "hmm" not in str(wire) and "abc" not in str(wire)
