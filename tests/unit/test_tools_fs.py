"""read, write, edit, multiedit: the exact texts the model sees."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarm.tools.base import ToolContext, ToolOutput
from swarm.tools.builtin import BUILTIN_TOOLS, MemoryLocks, MemoryState, local_context


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    w.mkdir()
    return w


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return local_context(ws)


async def call(ctx: ToolContext, name: str, **args: Any) -> ToolOutput:
    return await BUILTIN_TOOLS[name](args, ctx)


def numbered(lines: list[str], start: int = 1) -> str:
    return "\n".join(f"{i:>6}\t{line}" for i, line in enumerate(lines, start))


# ---------------------------------------------------------------- read


async def test_read_cat_n_format(ws: Path, ctx: ToolContext) -> None:
    (ws / "a.py").write_text("import os\n\ndef f():\n    return 1\n")
    out = await call(ctx, "read", file_path="a.py")
    assert not out.is_error
    assert out.text == numbered(["import os", "", "def f():", "    return 1"])
    assert out.meta == {"path": "a.py", "lines": 4, "total_lines": 4, "truncated": False}


async def test_read_without_trailing_newline_and_crlf(ws: Path, ctx: ToolContext) -> None:
    (ws / "a.txt").write_bytes(b"one\r\ntwo\r\nthree")
    out = await call(ctx, "read", file_path="a.txt")
    assert out.text == numbered(["one", "two", "three"])


async def test_read_default_limit_is_2000_lines(ws: Path, ctx: ToolContext) -> None:
    (ws / "big.txt").write_text("".join(f"l{i}\n" for i in range(1, 2501)))
    out = await call(ctx, "read", file_path="big.txt")
    body, footer = out.text.split("\n\n")
    assert body.splitlines()[-1] == f"{2000:>6}\tl2000"
    assert len(body.splitlines()) == 2000
    assert footer == "(Showing lines 1-2000 of 2500. Use offset=2001 to read more.)"
    assert out.meta["truncated"] is True


async def test_read_offset_and_limit(ws: Path, ctx: ToolContext) -> None:
    (ws / "f.txt").write_text("".join(f"l{i}\n" for i in range(1, 11)))
    out = await call(ctx, "read", file_path="f.txt", offset=4, limit=3)
    assert out.text == (
        numbered(["l4", "l5", "l6"], 4)
        + "\n\n(Showing lines 4-6 of 10. Use offset=7 to read more.)"
    )
    out = await call(ctx, "read", file_path="f.txt", offset=9)
    assert out.text == numbered(["l9", "l10"], 9) + "\n\n(End of file: 10 lines)"


async def test_read_offset_beyond_end(ws: Path, ctx: ToolContext) -> None:
    (ws / "f.txt").write_text("a\nb\nc\n")
    out = await call(ctx, "read", file_path="f.txt", offset=50)
    assert out.is_error
    assert out.text == "Offset 50 is beyond the end of f.txt: the file has 3 lines."


async def test_read_invalid_offset_is_a_validation_error(ws: Path, ctx: ToolContext) -> None:
    (ws / "f.txt").write_text("a\n")
    out = await call(ctx, "read", file_path="f.txt", offset=0)
    assert out.is_error
    assert out.text.startswith("Invalid arguments for read: offset:")


async def test_read_cuts_long_lines(ws: Path, ctx: ToolContext) -> None:
    (ws / "long.txt").write_text("short\n" + "x" * 5000 + "\nend\n")
    out = await call(ctx, "read", file_path="long.txt")
    lines = out.text.splitlines()
    assert lines[1] == f"{2:>6}\t" + "x" * 2000 + "... [line truncated: 5000 characters]"
    assert lines[2] == f"{3:>6}\tend"


async def test_read_output_capped_at_50kb(ws: Path, ctx: ToolContext) -> None:
    (ws / "wide.txt").write_text("".join("y" * 199 + "\n" for _ in range(1000)))
    out = await call(ctx, "read", file_path="wide.txt")
    assert len(out.text.encode()) <= 51 * 1024
    last = int(out.text.split("\n\n")[0].splitlines()[-1].split("\t")[0])
    assert out.text.endswith(
        f"(Output capped at 50 KB: showing lines 1-{last} of 1000. Use offset={last + 1} "
        "to continue.)"
    )
    assert 200 < last < 300


async def test_read_empty_file(ws: Path, ctx: ToolContext) -> None:
    (ws / "empty.txt").write_text("")
    out = await call(ctx, "read", file_path="empty.txt")
    assert not out.is_error
    assert out.text == "(empty file: empty.txt has 0 lines)"


async def test_read_missing_file_suggests_similar(ws: Path, ctx: ToolContext) -> None:
    (ws / "src").mkdir()
    (ws / "src" / "main.py").write_text("x\n")
    (ws / "src" / "mains.py").write_text("x\n")
    (ws / "README.md").write_text("x\n")
    out = await call(ctx, "read", file_path="src/mian.py")
    assert out.is_error
    lines = out.text.splitlines()
    assert lines[0] == "File not found: src/mian.py"
    assert lines[1] == "Did you mean one of these?"
    assert "src/main.py" in lines[2:]
    assert len(lines) <= 5


async def test_read_missing_file_same_name_elsewhere(ws: Path, ctx: ToolContext) -> None:
    (ws / "pkg" / "deep").mkdir(parents=True)
    (ws / "pkg" / "deep" / "config.yaml").write_text("x\n")
    out = await call(ctx, "read", file_path="config.yaml")
    assert (
        out.text == "File not found: config.yaml\nDid you mean one of these?\npkg/deep/config.yaml"
    )


async def test_read_missing_file_without_suggestion(ws: Path, ctx: ToolContext) -> None:
    out = await call(ctx, "read", file_path="nothing_like_it.rs")
    assert out.is_error
    assert out.text == "File not found: nothing_like_it.rs"


async def test_read_directory_lists_sorted_entries(ws: Path, ctx: ToolContext) -> None:
    (ws / "pkg" / "sub").mkdir(parents=True)
    (ws / "pkg" / "b.py").write_text("")
    (ws / "pkg" / "a.py").write_text("")
    out = await call(ctx, "read", file_path="pkg")
    assert not out.is_error
    assert out.text == "pkg is a directory with 3 entries:\na.py\nb.py\nsub/"
    out = await call(ctx, "read", file_path="pkg/sub")
    assert out.text == "pkg/sub is an empty directory."


async def test_read_binary_is_refused(ws: Path, ctx: ToolContext) -> None:
    (ws / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    out = await call(ctx, "read", file_path="img.png")
    assert out.is_error
    assert out.text == (
        "Cannot read img.png: it looks like a binary file (16 bytes). "
        "Inspect it with bash instead (e.g. `file`, `xxd | head`)."
    )


async def test_read_mostly_nonprintable_is_binary(ws: Path, ctx: ToolContext) -> None:
    (ws / "blob").write_bytes(bytes([1, 2, 3, 4, 5, 6, 0x7F, 65]) * 100)
    out = await call(ctx, "read", file_path="blob")
    assert out.is_error and "looks like a binary file" in out.text


async def test_read_utf8_text_with_accents_is_text(ws: Path, ctx: ToolContext) -> None:
    (ws / "fr.txt").write_text("élève à la fenêtre ünïcödé 日本語\n" * 50)
    out = await call(ctx, "read", file_path="fr.txt", limit=1)
    assert out.text.startswith(f"{1:>6}\télève à la fenêtre")


async def test_read_non_utf8_is_replaced(ws: Path, ctx: ToolContext) -> None:
    (ws / "latin1.txt").write_bytes("café\nnaïve\n".encode("latin-1"))
    out = await call(ctx, "read", file_path="latin1.txt")
    assert out.text == numbered(["caf\ufffd", "na\ufffdve"])


async def test_read_records_content_hash(ws: Path, ctx: ToolContext) -> None:
    data = b"hello\nworld\n"
    (ws / "h.txt").write_bytes(data)
    await call(ctx, "read", file_path="h.txt", limit=1)
    assert ctx.state is not None
    assert await ctx.state.get("read:h.txt") == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- write


async def test_write_creates_parents(ws: Path, ctx: ToolContext) -> None:
    out = await call(ctx, "write", file_path="a/b/c.txt", content="one\ntwo\n")
    assert not out.is_error
    assert out.text == "Created a/b/c.txt (2 lines, 8 bytes)."
    assert out.meta["files_touched"] == ["a/b/c.txt"]
    assert (ws / "a/b/c.txt").read_text() == "one\ntwo\n"


async def test_write_new_file_mode_respects_umask(ws: Path, ctx: ToolContext) -> None:
    await call(ctx, "write", file_path="new.txt", content="x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(ws / "new.txt").st_mode) == 0o666 & ~umask


async def test_write_refuses_unread_existing_file(ws: Path, ctx: ToolContext) -> None:
    (ws / "e.txt").write_text("old\n")
    out = await call(ctx, "write", file_path="e.txt", content="new\n")
    assert out.is_error
    assert (
        out.text
        == "You must read e.txt before overwriting it. Use the read tool first, then retry."
    )
    assert (ws / "e.txt").read_text() == "old\n"


async def test_write_after_read_then_again(ws: Path, ctx: ToolContext) -> None:
    (ws / "e.txt").write_text("old\n")
    await call(ctx, "read", file_path="e.txt")
    out = await call(ctx, "write", file_path="e.txt", content="new\n")
    assert out.text == "Wrote e.txt (1 lines, 4 bytes)."
    out = await call(ctx, "write", file_path="e.txt", content="newer\n")  # own write recorded
    assert not out.is_error
    assert (ws / "e.txt").read_text() == "newer\n"


async def test_write_refuses_file_modified_since_read(ws: Path, ctx: ToolContext) -> None:
    (ws / "e.txt").write_text("old\n")
    await call(ctx, "read", file_path="e.txt")
    (ws / "e.txt").write_text("changed by someone else\n")
    out = await call(ctx, "write", file_path="e.txt", content="new\n")
    assert out.is_error
    assert out.text == (
        "e.txt was modified since you last read it (by another agent or a command); "
        "read it again before editing."
    )


async def test_write_keeps_mode_and_leaves_no_temp(ws: Path, ctx: ToolContext) -> None:
    script = ws / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o750)
    await call(ctx, "read", file_path="run.sh")
    await call(ctx, "write", file_path="run.sh", content="#!/bin/sh\necho hi\n")
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o750
    assert sorted(p.name for p in ws.iterdir()) == ["run.sh"]


async def test_write_to_directory(ws: Path, ctx: ToolContext) -> None:
    (ws / "d").mkdir()
    out = await call(ctx, "write", file_path="d", content="x")
    assert out.text == "d is a directory; give the path of a file to write."


async def test_write_through_inner_symlink_keeps_link(ws: Path, ctx: ToolContext) -> None:
    (ws / "real.txt").write_text("a\n")
    (ws / "link.txt").symlink_to(ws / "real.txt")
    await call(ctx, "read", file_path="link.txt")
    out = await call(ctx, "write", file_path="link.txt", content="b\n")
    assert out.text == "Wrote real.txt (1 lines, 2 bytes)."
    assert (ws / "link.txt").is_symlink() and (ws / "real.txt").read_text() == "b\n"


async def test_without_state_store_no_staleness_check(ws: Path) -> None:
    ctx = ToolContext(workspace=ws)
    (ws / "e.txt").write_text("old\n")
    out = await call(ctx, "write", file_path="e.txt", content="new\n")
    assert not out.is_error


# ---------------------------------------------------------------- edit


async def _read(ctx: ToolContext, path: str) -> None:
    out = await call(ctx, "read", file_path=path)
    assert not out.is_error, out.text


async def test_edit_replaces_and_returns_diff(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    await _read(ctx, "m.py")
    out = await call(ctx, "edit", file_path="m.py", old_string="return 1", new_string="return 10")
    assert not out.is_error
    assert out.text == (
        "Edited m.py: 1 replacement.\n"
        "--- a/m.py\n+++ b/m.py\n"
        "@@ -1,5 +1,5 @@\n def f():\n-    return 1\n+    return 10\n \n \n def g():"
    )
    assert out.meta["files_touched"] == ["m.py"]
    assert (out.meta["added"], out.meta["removed"]) == (1, 1)
    assert (ws / "m.py").read_text().startswith("def f():\n    return 10\n")


async def test_edit_diff_line_numbers_deep_in_file(ws: Path, ctx: ToolContext) -> None:
    (ws / "n.txt").write_text("".join(f"line {i}\n" for i in range(1, 201)))
    await _read(ctx, "n.txt")
    out = await call(ctx, "edit", file_path="n.txt", old_string="line 150\n", new_string="")
    assert "@@ -147,7 +147,6 @@" in out.text
    assert "-line 150" in out.text


async def test_edit_identical_strings(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("x = 1\n")
    out = await call(ctx, "edit", file_path="m.py", old_string="x", new_string="x")
    assert out.is_error
    assert out.text == "No changes to apply: old_string and new_string are identical."


async def test_edit_not_found_shows_closest_region(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("a = 1\n\ndef compute(x):\n    y = x * 2\n    return y\n\nz = 3\n")
    await _read(ctx, "m.py")
    out = await call(
        ctx,
        "edit",
        file_path="m.py",
        old_string="def compute(x):\n    y = x * 3\n    return y",
        new_string="pass",
    )
    assert out.is_error
    assert out.text.startswith(
        "old_string was not found in m.py. The closest match is at lines 3-5"
    )
    assert f"{3:>6}\tdef compute(x):\n{4:>6}\t    y = x * 2\n{5:>6}\t    return y" in out.text
    assert out.text.endswith(
        "Re-read the file (it may have changed) and copy old_string exactly, including "
        "whitespace and indentation."
    )


async def test_edit_not_found_whitespace_hint(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("if x:\n        call()\n")
    await _read(ctx, "m.py")
    out = await call(ctx, "edit", file_path="m.py", old_string="if x:\n    call()", new_string="")
    assert "It differs only in whitespace or indentation." in out.text


async def test_edit_not_found_nothing_similar(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("alpha\nbeta\n")
    await _read(ctx, "m.py")
    out = await call(ctx, "edit", file_path="m.py", old_string="zzzzzzzzzzzz", new_string="q")
    assert out.text == (
        "old_string was not found in m.py. No similar text was found. Re-read the file (it "
        "may have changed) and copy old_string exactly, including whitespace and indentation."
    )


async def test_edit_several_matches(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("x = 1\ny = 2\nx = 1\n\nx = 1\n")
    await _read(ctx, "m.py")
    out = await call(ctx, "edit", file_path="m.py", old_string="x = 1", new_string="x = 9")
    assert out.is_error
    assert out.text == (
        "Found 3 matches of old_string in m.py (at lines 1, 3, 5). Add more surrounding "
        "context to old_string to make it unique, or set replace_all=true to replace every "
        "occurrence."
    )
    out = await call(
        ctx, "edit", file_path="m.py", old_string="x = 1", new_string="x = 9", replace_all=True
    )
    assert out.text.startswith("Edited m.py: 3 replacements.")
    assert (ws / "m.py").read_text() == "x = 9\ny = 2\nx = 9\n\nx = 9\n"


async def test_edit_requires_read_and_fresh_content(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("a\n")
    out = await call(ctx, "edit", file_path="m.py", old_string="a", new_string="b")
    assert out.text == "You must read m.py before editing it. Use the read tool first, then retry."
    await _read(ctx, "m.py")
    (ws / "m.py").write_text("a\nadded by a command\n")
    out = await call(ctx, "edit", file_path="m.py", old_string="a", new_string="b")
    assert out.text == (
        "m.py was modified since you last read it (by another agent or a command); "
        "read it again before editing."
    )


async def test_consecutive_edits_without_rereading(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("a\nb\nc\n")
    await _read(ctx, "m.py")
    for old, new in [("a", "A"), ("b", "B"), ("c", "C")]:
        out = await call(ctx, "edit", file_path="m.py", old_string=old, new_string=new)
        assert not out.is_error, out.text
    assert (ws / "m.py").read_text() == "A\nB\nC\n"


async def test_edit_empty_old_string_creates_missing_file(ws: Path, ctx: ToolContext) -> None:
    out = await call(ctx, "edit", file_path="pkg/new.py", old_string="", new_string="x = 1\n")
    assert not out.is_error
    assert out.text.startswith("Created pkg/new.py.\n--- a/pkg/new.py\n+++ b/pkg/new.py")
    assert (ws / "pkg/new.py").read_text() == "x = 1\n"
    out = await call(ctx, "edit", file_path="pkg/new.py", old_string="x = 1", new_string="x = 2")
    assert not out.is_error


async def test_edit_empty_old_string_on_existing_file(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("a\n")
    await _read(ctx, "m.py")
    out = await call(ctx, "edit", file_path="m.py", old_string="", new_string="b")
    assert out.text == (
        "old_string is empty but m.py already exists and is not empty. Give the exact text to "
        "replace, or use write to replace the whole file."
    )
    (ws / "empty.py").write_text("")
    await _read(ctx, "empty.py")
    out = await call(ctx, "edit", file_path="empty.py", old_string="", new_string="b\n")
    assert not out.is_error and (ws / "empty.py").read_text() == "b\n"


async def test_edit_missing_file(ws: Path, ctx: ToolContext) -> None:
    out = await call(ctx, "edit", file_path="nope.py", old_string="a", new_string="b")
    assert out.is_error
    assert out.text == (
        "File not found: nope.py\n(To create a file, use write or an empty old_string.)"
    )


async def test_edit_keeps_crlf(ws: Path, ctx: ToolContext) -> None:
    (ws / "w.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    await _read(ctx, "w.txt")
    out = await call(
        ctx, "edit", file_path="w.txt", old_string="one\ntwo\n", new_string="1\n2\n2.5\n"
    )
    assert not out.is_error, out.text
    assert (ws / "w.txt").read_bytes() == b"1\r\n2\r\n2.5\r\nthree\r\n"


async def test_edit_lf_file_with_crlf_old_string(ws: Path, ctx: ToolContext) -> None:
    (ws / "u.txt").write_bytes(b"a\nb\n")
    await _read(ctx, "u.txt")
    out = await call(ctx, "edit", file_path="u.txt", old_string="a\r\nb", new_string="c\r\nd")
    assert not out.is_error
    assert (ws / "u.txt").read_bytes() == b"c\nd\n"


async def test_edit_preserves_undecodable_bytes(ws: Path, ctx: ToolContext) -> None:
    (ws / "l1.txt").write_bytes(b"caf\xe9 = 1\nx = 2\n")
    await _read(ctx, "l1.txt")
    out = await call(ctx, "edit", file_path="l1.txt", old_string="x = 2", new_string="x = 3")
    assert not out.is_error
    assert (ws / "l1.txt").read_bytes() == b"caf\xe9 = 1\nx = 3\n"


async def test_edit_binary_refused(ws: Path, ctx: ToolContext) -> None:
    (ws / "b.bin").write_bytes(b"\x00\x01abc")
    out = await call(ctx, "edit", file_path="b.bin", old_string="abc", new_string="x")
    assert out.text == "b.bin looks like a binary file; it cannot be edited."


# ---------------------------------------------------------------- multiedit


async def test_multiedit_applies_in_order(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("alpha\nbeta\ngamma\n")
    await _read(ctx, "m.py")
    out = await call(
        ctx,
        "multiedit",
        file_path="m.py",
        edits=[
            {"old_string": "alpha", "new_string": "ALPHA"},
            {"old_string": "ALPHA\nbeta", "new_string": "ALPHA\nBETA"},  # sees edit 1
            {"old_string": "a", "new_string": "4", "replace_all": True},
        ],
    )
    assert not out.is_error, out.text
    assert out.text.startswith("Applied 3 edits to m.py: 4 replacements.")
    assert (ws / "m.py").read_text() == "ALPHA\nBETA\ng4mm4\n"
    assert out.meta["edits"] == 3


async def test_multiedit_all_or_nothing(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("alpha\nbeta\n")
    await _read(ctx, "m.py")
    out = await call(
        ctx,
        "multiedit",
        file_path="m.py",
        edits=[
            {"old_string": "alpha", "new_string": "ALPHA"},
            {"old_string": "delta", "new_string": "DELTA"},
        ],
    )
    assert out.is_error
    assert out.text.startswith("edits[1] (edit 2 of 2) failed: old_string was not found in m.py.")
    assert out.text.endswith("No changes were written (multiedit is all or nothing).")
    assert out.meta["failed_edit"] == 1
    assert (ws / "m.py").read_text() == "alpha\nbeta\n"


async def test_multiedit_identical_in_one_edit(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("alpha\n")
    await _read(ctx, "m.py")
    out = await call(
        ctx, "multiedit", file_path="m.py", edits=[{"old_string": "a", "new_string": "a"}]
    )
    assert out.text == (
        "edits[0] (edit 1 of 1) failed: No changes to apply: old_string and new_string are "
        "identical.\nNo changes were written (multiedit is all or nothing)."
    )


async def test_multiedit_creates_file(ws: Path, ctx: ToolContext) -> None:
    out = await call(
        ctx,
        "multiedit",
        file_path="new.py",
        edits=[
            {"old_string": "", "new_string": "x = 1\ny = 2\n"},
            {"old_string": "y = 2", "new_string": "y = 3"},
        ],
    )
    assert not out.is_error, out.text
    assert out.text.startswith("Created new.py.")
    assert (ws / "new.py").read_text() == "x = 1\ny = 3\n"


async def test_multiedit_needs_edits(ws: Path, ctx: ToolContext) -> None:
    out = await call(ctx, "multiedit", file_path="m.py", edits=[])
    assert out.is_error and out.text.startswith("Invalid arguments for multiedit: edits:")


async def test_multiedit_requires_read(ws: Path, ctx: ToolContext) -> None:
    (ws / "m.py").write_text("a\n")
    out = await call(
        ctx, "multiedit", file_path="m.py", edits=[{"old_string": "a", "new_string": "b"}]
    )
    assert out.text == "You must read m.py before editing it. Use the read tool first, then retry."


# ---------------------------------------------------------------- locks


class RecordingLocks:
    def __init__(self) -> None:
        self.paths: list[str] = []

    @contextlib.asynccontextmanager
    async def _lock(self, path: str) -> AsyncIterator[None]:
        self.paths.append(path)
        yield

    def lock(self, path: str) -> Any:
        return self._lock(path)


async def test_writes_take_the_path_lock(ws: Path) -> None:
    locks = RecordingLocks()
    ctx = ToolContext(workspace=ws, state=MemoryState(), locks=locks)
    await call(ctx, "write", file_path="d/f.txt", content="a\n")
    await call(ctx, "edit", file_path="d/f.txt", old_string="a", new_string="b")
    await call(
        ctx, "multiedit", file_path="d/f.txt", edits=[{"old_string": "b", "new_string": "c"}]
    )
    await call(ctx, "read", file_path="d/f.txt")
    assert locks.paths == ["d/f.txt", "d/f.txt", "d/f.txt"]


async def test_two_agents_editing_the_same_file_are_serialised(ws: Path) -> None:
    (ws / "shared.py").write_text("a = 1\nb = 2\n")
    locks = MemoryLocks()
    one, two = local_context(ws, "one", locks), local_context(ws, "two", locks)
    await _read(one, "shared.py")
    await _read(two, "shared.py")
    results = await asyncio.gather(
        call(one, "edit", file_path="shared.py", old_string="a = 1", new_string="a = 10"),
        call(two, "edit", file_path="shared.py", old_string="b = 2", new_string="b = 20"),
    )
    assert sorted(r.is_error for r in results) == [False, True]
    loser = next(r for r in results if r.is_error)
    assert loser.text == (
        "shared.py was modified since you last read it (by another agent or a command); "
        "read it again before editing."
    )
    assert (ws / "shared.py").read_text() in ("a = 10\nb = 2\n", "a = 1\nb = 20\n")


def test_schemas_use_design_field_names() -> None:
    props = {name: set(t.spec().input_schema["properties"]) for name, t in BUILTIN_TOOLS.items()}
    assert props["read"] == {"file_path", "offset", "limit"}
    assert props["write"] == {"file_path", "content"}
    assert props["edit"] == {"file_path", "old_string", "new_string", "replace_all"}
    assert props["multiedit"] == {"file_path", "edits"}
    assert props["bash"] == {"command", "timeout", "description"}
    assert props["grep"] == {"pattern", "path", "glob", "output_mode", "-i", "head_limit"}
    assert props["glob"] == {"pattern", "path"}
    assert props["todowrite"] == {"todos"}
    assert props["todoread"] == set()
    for tool in BUILTIN_TOOLS.values():
        assert len(tool.description) < 220
        dumped = json.dumps(tool.spec().input_schema)
        assert '"title"' not in dumped and "anyOf" not in dumped and "null" not in dumped
        required = tool.spec().input_schema.get("required", [])
        assert set(required) <= props[tool.name]


def test_open_regular_refuses_fifo_without_blocking(ws: Path) -> None:
    from swarm.tools.fs import open_regular

    os.mkfifo(ws / "late-fifo")
    with pytest.raises(OSError, match="not a regular file"):
        open_regular(ws / "late-fifo")
    (ws / "target.txt").write_text("x")
    (ws / "swapped").symlink_to(ws / "target.txt")
    with pytest.raises(OSError):
        open_regular(ws / "swapped")  # a symlink swapped in after resolution is not followed


async def test_large_file_fingerprint_and_staleness(ws: Path, ctx: ToolContext) -> None:
    big = ws / "big.log"
    big.write_bytes(b"".join(b"entry %07d\n" % i for i in range(700_000)))  # ~9.1 MB
    out = await call(ctx, "read", file_path="big.log", limit=2)
    assert out.text == (
        f"{1:>6}\tentry 0000000\n{2:>6}\tentry 0000001\n\n"
        "(Showing lines 1-2. Use offset=3 to read more.)"
    )
    edit = await call(
        ctx, "edit", file_path="big.log", old_string="entry 0000001\n", new_string="x\n"
    )
    assert not edit.is_error, edit.text
    again = await call(ctx, "edit", file_path="big.log", old_string="x\n", new_string="y\n")
    assert not again.is_error, again.text
    with open(big, "ab") as fh:
        fh.write(b"appended by a command\n")
    stale = await call(ctx, "edit", file_path="big.log", old_string="y\n", new_string="z\n")
    assert stale.text.startswith("big.log was modified since you last read it")
