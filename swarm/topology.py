"""Topologies as networkx graphs: who may message whom."""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx


def build_topology(
    kind: str,
    agents: Sequence[tuple[str, str]],
    edges: Sequence[Sequence[str]] = (),
    hub: str | None = None,
) -> nx.Graph:
    """`agents` is [(name, role)] in config order. Edges are undirected."""
    g: nx.Graph = nx.Graph()
    names = [n for n, _ in agents]
    g.add_nodes_from(names)
    if kind == "mesh":
        g.add_edges_from((a, b) for i, a in enumerate(names) for b in names[i + 1 :])
    elif kind == "star":
        center = hub or names[0]
        g.add_edges_from((center, n) for n in names if n != center)
    elif kind == "ring":
        if len(names) > 1:
            g.add_edges_from(zip(names, names[1:] + names[:1], strict=True))
    elif kind == "hierarchical":
        # the hub leads; agents sharing a role form a team that talks among itself
        center = hub or names[0]
        g.add_edges_from((center, n) for n in names if n != center)
        by_role: dict[str, list[str]] = {}
        for name, role in agents:
            by_role.setdefault(role, []).append(name)
        for team in by_role.values():
            g.add_edges_from((a, b) for i, a in enumerate(team) for b in team[i + 1 :])
    elif kind == "custom":
        g.add_edges_from((a, b) for a, b in edges)
    else:
        raise ValueError(f"unknown topology kind {kind!r}")
    g.remove_edges_from(nx.selfloop_edges(g))
    return g


def neighbours(g: nx.Graph, name: str) -> list[str]:
    return sorted(g.neighbors(name)) if name in g else []
