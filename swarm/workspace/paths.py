"""Declared task paths (``paths: [glob, ...]``): which tasks may change the same files.

Whether two globs can match a common path is decided conservatively: a false "overlap"
only serialises two tasks, a missed one would let them conflict."""

from __future__ import annotations

from itertools import combinations
from typing import Protocol

import pathspec

WILDCARDS = "*?["


class HasPaths(Protocol):
    id: str
    paths: list[str]


def _norm(pattern: str) -> str:
    p = pattern.strip()
    while p.startswith("./"):
        p = p[2:]
    return p.lstrip("/")


def _literal_prefix(pattern: str) -> str:
    cut = min((pattern.find(c) for c in WILDCARDS if c in pattern), default=len(pattern))
    return pattern[:cut]


def _matches(literal: str, pattern: str) -> bool:
    """Whether the glob matches the literal path, or a path under it (a directory)."""
    if _literal_prefix(pattern).startswith(literal.rstrip("/") + "/"):
        return True  # the glob lies inside the literal (a directory)
    spec = pathspec.PathSpec.from_lines("gitignore", [pattern])
    return bool(spec.match_file(literal) or spec.match_file(literal.rstrip("/") + "/x"))


def globs_overlap(a: str, b: str) -> bool:
    a, b = _norm(a), _norm(b)
    a_lit, b_lit = _literal_prefix(a) == a, _literal_prefix(b) == b
    if a_lit and b_lit:
        return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")
    if a_lit:
        return _matches(a, b)
    if b_lit:
        return _matches(b, a)
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    if "/" not in pa or "/" not in pb:  # a pattern like *.py can match at any depth
        return True
    return pa.startswith(pb) or pb.startswith(pa)


def overlapping_pairs(tasks: list[HasPaths]) -> list[tuple[str, str]]:
    out = []
    for x, y in combinations([t for t in tasks if t.paths], 2):
        if any(globs_overlap(a, b) for a in x.paths for b in y.paths):
            out.append((x.id, y.id))
    return out
