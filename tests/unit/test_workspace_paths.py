"""Declared task paths: which globs may touch the same files (conservatively)."""

from __future__ import annotations

import pytest

from swarm.config import TaskSpec
from swarm.workspace.paths import globs_overlap, overlapping_pairs


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("src/a.py", "src/a.py", True),
        ("src/a.py", "src/*.py", True),
        ("./src/a.py", "src/a.py", True),
        ("src", "src/x/y.py", True),  # a directory covers what is under it
        ("docs", "docs/**/*.md", True),
        ("src/**", "src/parser/**", True),
        ("*.py", "lib/x.py", True),
        ("src/a.py", "docs/*.md", False),
        ("src/**", "lib/**", False),
        ("*.py", "docs/a.md", False),
        ("src/a.py", "src/b.py", False),
    ],
)
def test_globs_overlap(a: str, b: str, overlap: bool) -> None:
    assert globs_overlap(a, b) is overlap
    assert globs_overlap(b, a) is overlap


def test_overlapping_pairs_only_for_tasks_that_declare_paths() -> None:
    tasks = [
        TaskSpec(id="a", title="A", role="r", paths=["src/parser/**"]),
        TaskSpec(id="b", title="B", role="r", paths=["src/parser/lexer.py"]),
        TaskSpec(id="c", title="C", role="r", paths=["docs/**"]),
        TaskSpec(id="d", title="D", role="r"),
    ]
    assert overlapping_pairs(tasks) == [("a", "b")]
