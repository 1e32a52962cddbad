"""Role cards and topologies."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.errors import ConfigError
from swarm.roles import load_roles, parse_role_card
from swarm.topology import build_topology, neighbours

AGENTS = [("lead", "cli"), ("t1", "tool"), ("t2", "tool"), ("doc", "doc")]


def edges(kind: str, **kw: object) -> set[frozenset[str]]:
    return {frozenset(e) for e in build_topology(kind, AGENTS, **kw).edges()}  # type: ignore[arg-type]


def test_topologies() -> None:
    assert len(edges("mesh")) == 6
    assert edges("star") == {frozenset(("lead", n)) for n in ("t1", "t2", "doc")}
    assert edges("star", hub="doc") == {frozenset(("doc", n)) for n in ("lead", "t1", "t2")}
    assert edges("ring") == {
        frozenset(p) for p in (("lead", "t1"), ("t1", "t2"), ("t2", "doc"), ("doc", "lead"))
    }
    assert edges("hierarchical") == edges("star") | {frozenset(("t1", "t2"))}
    custom = build_topology("custom", AGENTS, edges=[["t1", "doc"]])
    assert neighbours(custom, "doc") == ["t1"] and neighbours(custom, "lead") == []
    with pytest.raises(ValueError, match="unknown topology kind"):
        build_topology("blob", AGENTS)


def test_shipped_role_cards() -> None:
    roles = load_roles()
    for name in (
        "auth",
        "tool",
        "provider",
        "session",
        "cli",
        "tui",
        "test",
        "doc",
        "analyst",
        "developer",
    ):
        assert name in roles and roles[name].prompt.startswith("You are")
        assert "read" in roles[name].tools


def test_claude_code_style_card(tmp_path: Path) -> None:
    card = tmp_path / "reviewer.md"
    card.write_text(
        "---\nname: reviewer\ndescription: Reviews code\ntools: Read, Grep, Glob\n"
        "---\nYou review.\n"
    )
    parsed = parse_role_card(card)
    assert parsed.tools == ["read", "grep", "glob"]
    assert parsed.prompt == "You review.\n"


def test_card_beside_the_config_overrides(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "doc.md").write_text("---\nname: doc\ntools: [read]\n---\nMine.\n")
    assert load_roles(tmp_path)["doc"].prompt == "Mine.\n"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("no front matter\n", 1, "must start with YAML front matter"),
        ("---\nname: x\n", 1, "not closed"),
        ("---\nname: x\ndescription: a: b\n---\n", 3, "invalid YAML"),
        ("---\nname: Bad Name\n---\n", 2, "name"),
        ("---\nname: x\ntools: 7\n---\n", 3, "tools"),
    ],
)
def test_bad_cards(tmp_path: Path, text: str, line: int, words: str) -> None:
    card = tmp_path / "x.md"
    card.write_text(text)
    with pytest.raises(ConfigError) as info:
        parse_role_card(card)
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)


def test_topology_preset_file(tmp_path: Path) -> None:
    from swarm.config import load_config
    from swarm.paths import DATA_DIR

    text = (DATA_DIR / "configs" / "mesh10.yaml").read_text()
    cfg = tmp_path / "mesh10.yaml"
    cfg.write_text(text.replace("topology: mesh", "topology: mesh10-teams"))
    loaded = load_config(cfg)
    assert loaded.topology_kind == "custom"
    assert len(loaded.topology_edges) == 15
    assert ("tool-developer-1", "tool-developer-2") in loaded.topology_edges
