"""grep (ripgrep) and glob."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.tools import search
from swarm.tools.base import ToolContext, ToolOutput
from swarm.tools.builtin import BUILTIN_TOOLS, local_context
from swarm.tools.search import expand_braces, glob_to_regex


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    (w / "src" / "pkg").mkdir(parents=True)
    (w / "build").mkdir()
    (w / "src" / "main.py").write_text("import os\n\ndef main():\n    print('Hello')\n")
    (w / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'hello'\n")
    (w / "README.md").write_text("# Hello project\n")
    (w / "build" / "gen.py").write_text("print('hello from build')\n")
    (w / ".gitignore").write_text("build/\n*.log\n")
    (w / "debug.log").write_text("hello log\n")
    (w / "blob.bin").write_bytes(b"hello\x00\x01\x02")
    (w / ".env").write_text("TOKEN=hello-secret\n")
    (w / ".env.example").write_text("TOKEN=hello-placeholder\n")
    return w


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return local_context(ws)


async def call(ctx: ToolContext, name: str, **args: Any) -> ToolOutput:
    return await BUILTIN_TOOLS[name](args, ctx)


def set_mtimes(ws: Path, order: list[str]) -> None:
    """Oldest first."""
    for i, rel in enumerate(order):
        os.utime(ws / rel, (1_000_000 + i * 100, 1_000_000 + i * 100))


def test_rg_binary_is_the_wheel_one() -> None:
    rg = search.rg_binary()
    assert rg is not None
    assert Path(rg) == Path(sys.executable).parent / "rg"


# ---------------------------------------------------------------- grep


async def test_grep_files_with_matches_default_newest_first(ws: Path, ctx: ToolContext) -> None:
    set_mtimes(ws, ["src/main.py", "src/pkg/util.py", ".env.example", "README.md"])
    out = await call(ctx, "grep", pattern="hello", **{"-i": True})
    assert not out.is_error
    # .gitignore'd build/ and *.log, the binary file and .env are skipped
    assert out.text == "README.md\n.env.example\nsrc/pkg/util.py\nsrc/main.py"
    assert out.meta == {"results": 4, "truncated": False, "timed_out": False}


async def test_grep_is_case_sensitive_by_default(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern="Hello", output_mode="content")
    assert out.text == "README.md:1:# Hello project\nsrc/main.py:4:    print('Hello')"


async def test_grep_content_mode(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern=r"def \w+", output_mode="content")
    assert out.text == "src/main.py:3:def main():\nsrc/pkg/util.py:1:def helper():"


async def test_grep_count_mode(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern="(?i)hello|import", output_mode="count")
    assert out.text == ".env.example:1\nREADME.md:1\nsrc/main.py:2\nsrc/pkg/util.py:1"


async def test_grep_path_and_glob(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern="def", path="src/pkg", output_mode="content")
    assert out.text == "src/pkg/util.py:1:def helper():"
    out = await call(ctx, "grep", pattern="(?i)hello", glob="*.md")
    assert out.text == "README.md"
    out = await call(ctx, "grep", pattern="main", path="src/main.py", output_mode="content")
    assert out.text == "src/main.py:3:def main():"


async def test_grep_no_matches(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern="nothing-matches-this")
    assert not out.is_error
    assert out.text == "No matches found"


async def test_grep_truncates_at_100(ws: Path, ctx: ToolContext) -> None:
    (ws / "many.txt").write_text("".join(f"match {i}\n" for i in range(150)))
    out = await call(ctx, "grep", pattern="match", output_mode="content")
    lines = out.text.splitlines()
    assert len(lines) == 101
    assert lines[0] == "many.txt:1:match 0"
    assert lines[-1] == "(results truncated, narrow the search)"
    assert out.meta["truncated"] is True


async def test_grep_head_limit(ws: Path, ctx: ToolContext) -> None:
    (ws / "many.txt").write_text("".join(f"match {i}\n" for i in range(10)))
    out = await call(ctx, "grep", pattern="match", output_mode="content", head_limit=3)
    assert out.text == (
        "many.txt:1:match 0\nmany.txt:2:match 1\nmany.txt:3:match 2\n"
        "(results truncated, narrow the search)"
    )
    out = await call(ctx, "grep", pattern="match", output_mode="content", head_limit=500)
    assert len(out.text.splitlines()) == 10


async def test_grep_many_files_truncated(ws: Path, ctx: ToolContext) -> None:
    (ws / "gen").mkdir()
    for i in range(120):
        (ws / "gen" / f"f{i:03}.txt").write_text("needle\n")
    out = await call(ctx, "grep", pattern="needle")
    lines = out.text.splitlines()
    assert len(lines) == 101 and lines[-1] == "(results truncated, narrow the search)"


async def test_grep_invalid_regex(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern="foo(")
    assert out.is_error
    assert out.text.startswith("grep failed: rg: regex parse error:")


async def test_grep_pattern_starting_with_dash(ws: Path, ctx: ToolContext) -> None:
    (ws / "flags.txt").write_text("use --force here\n")
    out = await call(ctx, "grep", pattern="--force", output_mode="content")
    assert out.text == "flags.txt:1:use --force here"


async def test_grep_long_lines_are_cut(ws: Path, ctx: ToolContext) -> None:
    (ws / "min.js").write_text("var a='needle';" + "x" * 5000 + "\n")
    out = await call(ctx, "grep", pattern="needle", output_mode="content")
    assert len(out.text) < 1000


async def test_grep_missing_path(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern="x", path="nope")
    assert out.is_error and out.text == "Path not found: nope"


async def test_grep_env_file_is_never_searched(ctx: ToolContext) -> None:
    out = await call(ctx, "grep", pattern="secret", glob=".env*", output_mode="content")
    assert out.text == "No matches found"
    out = await call(ctx, "grep", pattern="secret", path=".env")
    assert out.is_error and "environment file" in out.text


async def test_grep_timeout_kills_rg(tmp_path: Path, ctx: ToolContext, monkeypatch: Any) -> None:
    slow = tmp_path / "slow-rg"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(search, "rg_binary", lambda: str(slow))
    monkeypatch.setattr(search, "RG_TIMEOUT_S", 0.3)
    start = time.monotonic()
    out = await call(ctx, "grep", pattern="hello")
    assert time.monotonic() - start < 2  # killed, not waited for
    assert not out.is_error
    assert out.text == "No matches found (search timed out after 0.3 s; narrow the search)"
    assert out.meta["timed_out"] is True


def test_grep_alias_field_in_schema() -> None:
    schema = BUILTIN_TOOLS["grep"].spec().input_schema
    assert "-i" in schema["properties"]
    assert "case_insensitive" not in schema["properties"]
    assert schema["required"] == ["pattern"]


# ---------------------------------------------------------------- glob


async def test_glob_recursive_newest_first(ws: Path, ctx: ToolContext) -> None:
    set_mtimes(ws, ["src/pkg/util.py", "src/main.py"])
    out = await call(ctx, "glob", pattern="**/*.py")
    assert out.text == "src/main.py\nsrc/pkg/util.py"  # build/ is gitignored


async def test_glob_without_slash_matches_any_depth(ws: Path, ctx: ToolContext) -> None:
    set_mtimes(ws, ["src/pkg/util.py", "src/main.py"])
    out = await call(ctx, "glob", pattern="*.py")
    assert out.text == "src/main.py\nsrc/pkg/util.py"


async def test_glob_anchored_pattern(ctx: ToolContext) -> None:
    assert (await call(ctx, "glob", pattern="src/*.py")).text == "src/main.py"
    assert (await call(ctx, "glob", pattern="*.py", path="src/pkg")).text == "src/pkg/util.py"
    assert (await call(ctx, "glob", pattern="src/main.py")).text == "src/main.py"


async def test_glob_braces_and_classes(ws: Path, ctx: ToolContext) -> None:
    set_mtimes(ws, ["README.md", "src/main.py"])
    out = await call(ctx, "glob", pattern="**/*.{md,py}", path="src")
    assert out.text == "src/main.py\nsrc/pkg/util.py" or out.text == "src/pkg/util.py\nsrc/main.py"
    out = await call(ctx, "glob", pattern="[RX]*.md")
    assert out.text == "README.md"


async def test_glob_nested_gitignore_and_negation(ws: Path, ctx: ToolContext) -> None:
    (ws / "src" / ".gitignore").write_text("*.tmp\n!keep.tmp\n")
    (ws / "src" / "a.tmp").write_text("")
    (ws / "src" / "keep.tmp").write_text("")
    (ws / "top.tmp").write_text("")  # the nested .gitignore does not apply here
    out = await call(ctx, "glob", pattern="**/*.tmp")
    assert sorted(out.text.splitlines()) == ["src/keep.tmp", "top.tmp"]


async def test_glob_skips_git_dir_and_ignored(ws: Path, ctx: ToolContext) -> None:
    (ws / ".git").mkdir()
    (ws / ".git" / "config").write_text("")
    out = await call(ctx, "glob", pattern="**/*")
    names = out.text.splitlines()
    assert ".git/config" not in names
    assert "debug.log" not in names and "build/gen.py" not in names
    assert ".env" in names and ".gitignore" in names  # names are listed, contents stay denied


async def test_glob_no_files(ctx: ToolContext) -> None:
    out = await call(ctx, "glob", pattern="**/*.rs")
    assert not out.is_error and out.text == "No files found"
    out = await call(ctx, "glob", pattern="nope/**/*.rs")
    assert out.text == "No files found (directory nope does not exist)"


async def test_glob_truncates_at_100(ws: Path, ctx: ToolContext) -> None:
    (ws / "gen").mkdir()
    for i in range(130):
        (ws / "gen" / f"f{i:03}.txt").write_text("")
        os.utime(ws / "gen" / f"f{i:03}.txt", (1_000_000 + i, 1_000_000 + i))
    out = await call(ctx, "glob", pattern="gen/*.txt")
    lines = out.text.splitlines()
    assert len(lines) == 101
    assert lines[0] == "gen/f129.txt"  # newest first
    assert lines[-1] == (
        "(results truncated: showing 100 of 130 files, newest first; use a more specific "
        "pattern or path)"
    )
    assert out.meta["truncated"] is True


async def test_glob_does_not_follow_directory_symlinks(tmp_path: Path, ws: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.py").write_text("")
    (ws / "linkdir").symlink_to(outside)
    out = await call(local_context(ws), "glob", pattern="**/secret.py")
    assert out.text == "No files found"


@pytest.mark.parametrize(
    ("pattern", "path", "matches", "misses"),
    [
        ("**/*.py", "", ["a.py", "x/y/a.py"], ["a.pyc", "x/a.txt"]),
        ("*.py", "", ["a.py"], ["x/a.py"]),
        ("src/**", "", ["src/a", "src/x/y"], ["lib/a"]),
        ("a?c", "", ["abc"], ["ac", "a/c"]),
        ("[!a]b", "", ["bb"], ["ab"]),
    ],
)
def test_glob_to_regex(pattern: str, path: str, matches: list[str], misses: list[str]) -> None:
    import re

    regex = re.compile(glob_to_regex(pattern))
    for m in matches:
        assert regex.fullmatch(m), m
    for m in misses:
        assert not regex.fullmatch(m), m


def test_expand_braces() -> None:
    assert expand_braces("*.{ts,tsx}") == ["*.ts", "*.tsx"]
    assert expand_braces("{a,b{c,d}}") == ["a", "bc", "bd"]
    assert expand_braces("plain") == ["plain"]
