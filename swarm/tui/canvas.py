"""The topology drawn in characters: agents on a circle, their edges as dotted lines,
edges that carried messages drawn bold."""

from __future__ import annotations

import math

from rich.text import Text

from swarm.tui.model import Topology

STATUS_STYLE = {
    "working": "bold green",
    "idle": "dim",
    "done": "cyan",
    "dead": "bold red",
    "stopped": "red",
    "starting": "dim",
}


def _style(status: str) -> str:
    return "yellow" if status.startswith("waiting") else STATUS_STYLE.get(status, "")


def _line(x0: int, y0: int, x1: int, y1: int) -> list[tuple[int, int]]:
    points = []
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        points.append((x0, y0))
        if x0 == x1 and y0 == y1:
            return points
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def positions(nodes: list[str], width: int, height: int) -> dict[str, tuple[int, int]]:
    """Node centres on an ellipse filling the canvas (one node: the middle)."""
    cx, cy = width // 2, height // 2
    if len(nodes) == 1:
        return {nodes[0]: (cx, cy)}
    longest = max((len(n) for n in nodes), default=0)
    rx = max(1, cx - longest // 2 - 2)
    ry = max(1, cy - 1)
    out = {}
    for i, n in enumerate(nodes):
        angle = 2 * math.pi * i / len(nodes) - math.pi / 2
        out[n] = (cx + round(rx * math.cos(angle)), cy + round(ry * math.sin(angle)))
    return out


def draw(topo: Topology, width: int = 100, height: int = 24) -> Text:
    width, height = max(20, width), max(6, height)
    grid = [[" "] * width for _ in range(height)]
    styles: list[list[str]] = [[""] * width for _ in range(height)]
    pos = positions(topo.nodes, width, height)
    # quiet edges first, busy ones over them
    for e in sorted(topo.edges, key=lambda e: e.messages):
        if e.a not in pos or e.b not in pos:
            continue
        ch, st = ("•", "bold magenta") if e.messages else ("·", "dim")
        for x, y in _line(*pos[e.a], *pos[e.b])[1:-1]:
            if 0 <= x < width and 0 <= y < height:
                grid[y][x], styles[y][x] = ch, st
    for n, (x, y) in pos.items():
        label = f"[{n}]"
        start = max(0, min(width - len(label), x - len(label) // 2))
        for i, c in enumerate(label):
            grid[y][start + i], styles[y][start + i] = c, _style(topo.status.get(n, ""))
    text = Text()
    for y in range(height):
        row = grid[y]
        x = 0
        while x < width:
            st = styles[y][x]
            j = x
            while j < width and styles[y][j] == st:
                j += 1
            text.append("".join(row[x:j]).rstrip() if j == width else "".join(row[x:j]), st)
            x = j
        text.append("\n")
    return text
