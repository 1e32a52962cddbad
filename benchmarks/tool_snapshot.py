"""The fixed part of every request, as JSON: each tool's spec, each built-in role's tool
list and the system prompt of each agent of ``configs/mesh10.yaml``.

    python benchmarks/tool_snapshot.py   # prints the snapshot of the code on PYTHONPATH

``benchmarks.freeze_tool_specs`` runs this file inside an old checkout of the repository
to freeze that commit's text, so it uses only APIs that commit has too (role cards, the
tool registries, ``make_plan``, ``agent_specs``, ``system_prompt``); keep it that way.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import fields
from pathlib import Path
from typing import Any


def role_tool_names() -> dict[str, list[str]]:
    """Every built-in role card's tools in the order the agent loop sends them: the card's
    built-in tools, then the swarm tools (``coordinator.build_loop``, ``AgentLoop``)."""
    from swarm.paths import DATA_DIR
    from swarm.roles import parse_role_card
    from swarm.tools.builtin import BUILTIN_TOOLS
    from swarm.tools.swarm_tools import SWARM_TOOLS

    roles = {}
    for path in sorted((DATA_DIR / "agents").glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        card = parse_role_card(path)
        builtin = [n for n in dict.fromkeys(card.tools) if n in BUILTIN_TOOLS]
        roles[card.name] = list(dict.fromkeys([*builtin, *SWARM_TOOLS]))
    return roles


def tool_specs() -> dict[str, dict[str, Any]]:
    """Each built-in and swarm tool's entry in the Anthropic Messages ``tools`` array."""
    from swarm.tools.builtin import BUILTIN_TOOLS
    from swarm.tools.swarm_tools import SWARM_TOOLS

    return {t.name: t.spec().model_dump() for t in {**BUILTIN_TOOLS, **SWARM_TOOLS}.values()}


def mesh_agents(config: Path | None = None) -> list[tuple[str, str, str]]:
    """(name, role, system prompt) of each agent of a config (configs/mesh10.yaml by
    default), the prompt built as the agent loop builds it; the repository is an empty
    folder."""
    from swarm.agent import SwarmInfo, system_prompt
    from swarm.hosting import agent_specs
    from swarm.paths import DATA_DIR
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
    out = []
    for spec in specs:
        info: Any = spec.swarm  # AgentSpec holds it as a dict (it is sent as JSON)
        if isinstance(info, dict):
            info = SwarmInfo(**{k: v for k, v in info.items() if k in names})
        out.append((spec.agent.name, spec.agent.role, system_prompt(spec.agent, info)))
    return out


def snapshot() -> dict[str, Any]:
    agents = mesh_agents()
    return {
        "tools": tool_specs(),
        "roles": role_tool_names(),
        "agent_roles": {name: role for name, role, _ in agents},
        "system_prompts": {name: prompt for name, _, prompt in agents},
    }


if __name__ == "__main__":
    json.dump(snapshot(), sys.stdout, ensure_ascii=False)
