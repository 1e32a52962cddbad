"""File tools: read, write, edit, multiedit.

Reads record a content hash per agent (``read:<relpath>`` in ``ctx.state``); writes to an
existing file require a read of the current content. Writes are atomic and serialised
per path through ``ctx.locks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import hashlib
import io
import os
import re
import secrets
import stat
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from swarm.tools.base import Tool, ToolContext, ToolOutput, ToolParams
from swarm.tools.sandbox import SandboxError, relpath, resolve_in_workspace, workspace_root

DEFAULT_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_OUTPUT_BYTES = 50 * 1024
MAX_DIR_ENTRIES = 1000
BINARY_SNIFF_BYTES = 4096
#: Larger files are fingerprinted by size+mtime+inode instead of a sha256 of their content
#: (and their line count is not computed), so reading their first lines stays fast.
FULL_HASH_MAX_BYTES = 8 * 1024 * 1024
#: Files up to this size are read whole, in the event loop, without a thread.
INLINE_READ_BYTES = 256 * 1024
#: Larger files are not loaded into memory for edit/multiedit.
MAX_EDIT_BYTES = 32 * 1024 * 1024
MAX_DIFF_LINES = 80
MAX_DIFF_CHARS = 6000
_SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "venv", "__pycache__", ".swarm"})
_CONT_BYTES = bytes(range(0x80, 0xC0))


def state_key(rel: str) -> str:
    return f"read:{rel}"


# ---------------------------------------------------------------- helpers


def looks_binary(head: bytes) -> bool:
    """NUL byte, or more than 30 % non-printable characters in the sample."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    bad = len(text) - len(text.translate(_DROP_NON_PRINTABLE))  # in C, not per character
    return bad > 0.3 * len(text)


_DROP_NON_PRINTABLE = dict.fromkeys(
    [0xFFFD, 0x7F, *(c for c in range(32) if chr(c) not in "\t\n\r\f\v\b\x1b")]
)


def open_regular(path: Path) -> IO[bytes]:
    """Open a regular file for reading; never blocks on a fifo swapped in after the
    sandbox check, never follows a symlink swapped in for the last component."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path.name} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _stat_fingerprint(st: os.stat_result) -> str:
    return f"stat:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def fingerprint(path: Path) -> tuple[str, int | None]:
    """(content fingerprint, line count) of a file, streamed; large files: stat, no count."""
    st = os.stat(path)
    if st.st_size > FULL_HASH_MAX_BYTES:
        return _stat_fingerprint(st), None
    digest = hashlib.sha256()
    newlines = 0
    last = b""
    with open_regular(path) as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    lines = newlines + (1 if last and last != b"\n" else 0)
    return digest.hexdigest(), lines


def fingerprint_of(path: Path, data: bytes) -> str:
    """The fingerprint of ``path`` whose content ``data`` was just read or written."""
    if len(data) > FULL_HASH_MAX_BYTES:
        return _stat_fingerprint(os.stat(path))
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temp file in the same directory and os.replace; keep the mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _lock(ctx: ToolContext, rel: str) -> Any:
    return ctx.locks.lock(rel) if ctx.locks is not None else contextlib.nullcontext()


def _display(text: str) -> str:
    """Text safe to send to a model (lone surrogates from undecodable bytes replaced)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _workspace_files(root: Path, cap: int = 20000) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        base = Path(dirpath).relative_to(root)
        for name in filenames:
            found.append((base / name).as_posix())
            if len(found) >= cap:
                return found
    return found


def similar_paths(root: Path, wanted: str, n: int = 3) -> list[str]:
    """Up to ``n`` workspace files whose path or name resembles ``wanted``."""
    files = _workspace_files(root)
    name = Path(wanted).name
    picks = [f for f in files if Path(f).name == name]
    picks += difflib.get_close_matches(wanted, files, n=n, cutoff=0.6)
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(Path(f).name, []).append(f)
    for close in difflib.get_close_matches(name, list(by_name), n=n, cutoff=0.7):
        picks += by_name[close]
    out: list[str] = []
    for p in picks:
        if p not in out and p != wanted:
            out.append(p)
    return out[:n]


def not_found_message(ctx: ToolContext, file_path: str) -> str:
    root = workspace_root(ctx.workspace)
    wanted = file_path
    with contextlib.suppress(ValueError):
        wanted = Path(os.path.normpath(root / file_path)).relative_to(root).as_posix()
    msg = f"File not found: {file_path}"
    similar = similar_paths(root, wanted)
    if similar:
        msg += "\nDid you mean one of these?\n" + "\n".join(similar)
    return msg


def _resolve(ctx: ToolContext, file_path: str) -> tuple[Path, str]:
    real = resolve_in_workspace(ctx.workspace, file_path)
    return real, relpath(ctx.workspace, real)


# ---------------------------------------------------------------- read


class ReadParams(ToolParams):
    # paths are relative to the workspace root: the system prompt says so once for all tools
    file_path: str
    offset: int | None = Field(None, ge=1, description="First line to read")
    limit: int | None = Field(DEFAULT_LIMIT, ge=1)


def _list_dir(real: Path, rel: str) -> ToolOutput:
    entries = []
    with os.scandir(real) as it:
        for entry in it:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            entries.append(entry.name + ("/" if is_dir else ""))
    entries.sort()
    shown = entries[:MAX_DIR_ENTRIES]
    head = f"{rel} is a directory with {len(entries)} entries:"
    if not entries:
        head = f"{rel} is an empty directory."
    text = "\n".join([head, *shown])
    if len(entries) > len(shown):
        text += f"\n... ({len(entries) - len(shown)} more entries; use glob to narrow)"
    return ToolOutput(text=text, meta={"path": rel, "directory": True, "entries": len(entries)})


def _cut_line(raw: bytes, rest_chars: int) -> str:
    text = raw.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    total = len(text) + rest_chars
    if total > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + f"... [line truncated: {total} characters]"
    return text


def _whole_if_small(real: Path) -> bytes | None:
    """The content of a file of at most INLINE_READ_BYTES, read in one go (None: larger)."""
    with open_regular(real) as fh:
        if os.fstat(fh.fileno()).st_size > INLINE_READ_BYTES:
            return None
        return fh.read(INLINE_READ_BYTES + 1)


def _lines_of(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _read_sync(
    real: Path, rel: str, offset: int, limit: int, data: bytes | None = None
) -> tuple[ToolOutput, str]:
    """One read call's output and the file's fingerprint; ``data``: the whole file, read
    already (a small file is opened once, not three times)."""
    total: int | None
    if data is not None:
        head = data[:BINARY_SNIFF_BYTES]
        digest, total = hashlib.sha256(data).hexdigest(), _lines_of(data)
    else:
        with open_regular(real) as fh:
            head = fh.read(BINARY_SNIFF_BYTES)
        digest, total = fingerprint(real)
    if looks_binary(head):
        size = os.path.getsize(real)
        return (
            ToolOutput.error(
                f"Cannot read {rel}: it looks like a binary file ({size} bytes). "
                "Inspect it with bash instead (e.g. `file`, `xxd | head`).",
                path=rel,
                binary=True,
            ),
            digest,
        )
    if total == 0:
        return ToolOutput(text=f"(empty file: {rel} has 0 lines)", meta={"path": rel}), digest
    chunk = MAX_LINE_CHARS * 4 + 4
    out: list[str] = []
    size = 0
    number = 0
    capped = False
    more = False
    with io.BytesIO(data) if data is not None else open_regular(real) as fh:
        while True:
            raw = fh.readline(chunk)
            if not raw:
                break
            number += 1
            rest = 0
            if len(raw) == chunk and not raw.endswith(b"\n"):
                # a very long line: skip the rest of it without holding it in memory
                while part := fh.readline(1 << 16):
                    if number >= offset:
                        body = part[:-1] if part.endswith(b"\n") else part
                        rest += len(body.translate(None, _CONT_BYTES))
                    if part.endswith(b"\n"):
                        break
            if number < offset:
                continue
            if len(out) >= limit:
                more = True
                break
            line = f"{number:>6}\t{_cut_line(raw, rest)}"
            cost = len(line.encode("utf-8", errors="replace")) + 1
            if out and size + cost > MAX_OUTPUT_BYTES:
                capped = True
                break
            out.append(line)
            size += cost
    if not out:
        count = total if total is not None else number
        return (
            ToolOutput.error(
                f"Offset {offset} is beyond the end of {rel}: the file has {count} lines.",
                path=rel,
                total_lines=count,
            ),
            digest,
        )
    first, last = offset, offset + len(out) - 1
    of_total = f" of {total}" if total is not None else ""
    text = "\n".join(out)
    if capped:
        text += (
            f"\n\n(Output capped at 50 KB: showing lines {first}-{last}{of_total}. "
            f"Use offset={last + 1} to continue.)"
        )
    elif more or (total is not None and last < total):
        text += f"\n\n(Showing lines {first}-{last}{of_total}. Use offset={last + 1} to read more.)"
    elif first > 1:
        text += f"\n\n(End of file: {last} lines)"
    meta = {
        "path": rel,
        "lines": len(out),
        "total_lines": total,
        "truncated": capped or more or (total is not None and last < total),
    }
    return ToolOutput(text=text, meta=meta), digest


class Read(Tool):
    name = "read"
    read_only = True
    description = (
        "Read a file with cat -n line numbers, 2000 lines at a time (offset/limit for more). "
        "A directory lists its entries."
    )
    Params = ReadParams

    async def run(self, params: ReadParams, ctx: ToolContext) -> ToolOutput:
        try:
            real, rel = _resolve(ctx, params.file_path)
        except SandboxError as exc:
            return ToolOutput.error(exc.message)
        if not real.exists():
            return ToolOutput.error(
                await asyncio.to_thread(not_found_message, ctx, params.file_path)
            )
        if real.is_dir():
            return await asyncio.to_thread(_list_dir, real, rel)
        offset, limit = params.offset or 1, params.limit or DEFAULT_LIMIT
        # a small regular file is read in the loop: a thread hand-off costs more than the
        # read (the open is non-blocking and refuses anything but a regular file)
        data = _whole_if_small(real)
        if data is not None:
            out, digest = _read_sync(real, rel, offset, limit, data)
        else:
            out, digest = await asyncio.to_thread(_read_sync, real, rel, offset, limit)
        if ctx.state is not None:
            await ctx.state.set(state_key(rel), digest)
        return out


# ---------------------------------------------------------------- staleness


async def _stale_message(
    ctx: ToolContext, rel: str, current: str, verb: str = "overwriting"
) -> str | None:
    """Why this agent may not overwrite ``rel`` (hash ``current``), or None if it may."""
    if ctx.state is None:
        return None
    recorded = await ctx.state.get(state_key(rel))
    if recorded is None:
        return f"You must read {rel} before {verb} it. Use the read tool first, then retry."
    if recorded != current:
        return (
            f"{rel} was modified since you last read it (by another agent or a command); "
            "read it again before editing."
        )
    return None


def _count_lines(text: str) -> int:
    return text.count("\n") + (1 if text and not text.endswith("\n") else 0)


# ---------------------------------------------------------------- write


class WriteParams(ToolParams):
    file_path: str
    content: str


class Write(Tool):
    name = "write"
    description = (
        "Create or overwrite a file (parent directories are created). Overwriting requires "
        "reading the file first; prefer edit for changes."
    )
    Params = WriteParams

    async def run(self, params: WriteParams, ctx: ToolContext) -> ToolOutput:
        try:
            real, rel = _resolve(ctx, params.file_path)
        except SandboxError as exc:
            return ToolOutput.error(exc.message)
        if real.is_dir():
            return ToolOutput.error(f"{rel} is a directory; give the path of a file to write.")
        data = params.content.encode("utf-8", errors="surrogateescape")
        async with _lock(ctx, rel):
            created = not real.exists()
            if not created:
                current, _ = await asyncio.to_thread(fingerprint, real)
                problem = await _stale_message(ctx, rel, current)
                if problem:
                    return ToolOutput.error(problem, path=rel)
            await asyncio.to_thread(atomic_write, real, data)
            if ctx.state is not None:
                await ctx.state.set(state_key(rel), fingerprint_of(real, data))
        lines = _count_lines(params.content)
        verb = "Created" if created else "Wrote"
        return ToolOutput(
            text=f"{verb} {rel} ({lines} lines, {len(data)} bytes).",
            meta={"path": rel, "files_touched": [rel], "created": created, "bytes": len(data)},
        )


# ---------------------------------------------------------------- edit core


class EditFailure(Exception):
    """An edit that cannot apply; the message tells the model how to fix it."""


def _uses_crlf(text: str) -> bool:
    crlf = text.count("\r\n")
    return crlf > 0 and crlf >= text.count("\n") - crlf


def _with_endings(text: str, crlf: bool) -> str:
    lf = text.replace("\r\n", "\n")
    return lf.replace("\n", "\r\n") if crlf else lf


def _norm_ws(text: str) -> str:
    return " ".join(text.split())


def _closest_region(lines: list[str], old_lines: list[str]) -> tuple[int, int, float] | None:
    """(start, end, similarity) of the window of ``lines`` most like ``old_lines``."""
    if not lines or not old_lines:
        return None
    width = min(len(old_lines), len(lines))
    target = "\n".join(old_lines)
    # 1) line-level: windows where most lines match exactly once stripped
    where: dict[str, list[int]] = {}
    for j, line in enumerate(old_lines):
        key = line.strip()
        if key:
            where.setdefault(key, []).append(j)
    scores: dict[int, int] = {}
    for k, line in enumerate(lines):
        for j in where.get(line.strip(), ()):
            start = k - j
            if 0 <= start <= len(lines) - width:
                scores[start] = scores.get(start, 0) + 1
    best_start: int | None = None
    if scores:
        best_start = max(scores, key=lambda s: (scores[s], -s))
    else:
        # 2) character-level over windows, within a budget; 3) else the first line alone
        matcher = difflib.SequenceMatcher(None, autojunk=False)
        matcher.set_seq2(target)
        windows = len(lines) - width + 1
        if windows * (len(target) + 1) <= 3_000_000:
            best = 0.0
            for start in range(windows):
                matcher.set_seq1("\n".join(lines[start : start + width]))
                if matcher.real_quick_ratio() <= best or matcher.quick_ratio() <= best:
                    continue
                ratio = matcher.ratio()
                if ratio > best:
                    best, best_start = ratio, start
        else:
            stripped = [line.strip() for line in lines]
            close = difflib.get_close_matches(old_lines[0].strip(), stripped, n=1, cutoff=0.5)
            if close:
                best_start = min(stripped.index(close[0]), len(lines) - width)
    if best_start is None:
        return None
    region = "\n".join(lines[best_start : best_start + width])
    ratio = difflib.SequenceMatcher(None, region, target, autojunk=False).ratio()
    if ratio < 0.5 and not scores:
        return None
    return best_start, best_start + width, ratio


def _not_found(content: str, old: str, rel: str) -> str:
    lines = content.splitlines()
    old_lines = old.replace("\r\n", "\n").strip("\n").split("\n")
    msg = f"old_string was not found in {rel}."
    found = _closest_region(lines, old_lines)
    if found:
        start, end, ratio = found
        shown = [
            f"{i + 1:>6}\t{_display(lines[i])[:300]}" for i in range(start, min(end, start + 30))
        ]
        msg += (
            f" The closest match is at lines {start + 1}-{end} ({ratio:.0%} similar):\n"
            + "\n".join(shown)
        )
        if _norm_ws("\n".join(lines[start:end])) == _norm_ws(old):
            msg += "\nIt differs only in whitespace or indentation."
        msg += "\n"
    else:
        msg += " No similar text was found. "
    return msg + (
        "Re-read the file (it may have changed) and copy old_string exactly, "
        "including whitespace and indentation."
    )


def _line_numbers(content: str, needle: str) -> list[int]:
    out: list[int] = []
    pos = content.find(needle)
    while pos != -1:
        out.append(content.count("\n", 0, pos) + 1)
        pos = content.find(needle, pos + len(needle))
    return out


def apply_edit(content: str, old: str, new: str, replace_all: bool, rel: str) -> tuple[str, int]:
    """Apply one exact-match replacement; return (new content, replacements)."""
    if old == new:
        raise EditFailure("No changes to apply: old_string and new_string are identical.")
    if old == "":
        raise EditFailure(
            f"old_string is empty but {rel} already exists and is not empty. Give the exact "
            "text to replace, or use write to replace the whole file."
        )
    crlf = _uses_crlf(content)
    old_n, new_n = _with_endings(old, crlf), _with_endings(new, crlf)
    count = content.count(old_n)
    if count == 0 and old_n != old and old in content:
        old_n, new_n, count = old, new, content.count(old)
    if count == 0:
        raise EditFailure(_not_found(content, old, rel))
    if count > 1 and not replace_all:
        numbers = _line_numbers(content, old_n)
        listed = ", ".join(str(n) for n in numbers[:20]) + (", ..." if len(numbers) > 20 else "")
        raise EditFailure(
            f"Found {count} matches of old_string in {rel} (at lines {listed}). Add more "
            "surrounding context to old_string to make it unique, or set replace_all=true "
            "to replace every occurrence."
        )
    if replace_all:
        return content.replace(old_n, new_n), count
    return content.replace(old_n, new_n, 1), 1


_HUNK = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, compared block-wise at C speed."""
    n = min(len(a), len(b))
    i, block = 0, 1 << 16
    while block:
        while i + block <= n and a[i : i + block] == b[i : i + block]:
            i += block
        block //= 16
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _changed_region(a: str, b: str) -> tuple[int, int, int]:
    """(start, end in a, end in b): the differing middle widened to whole lines plus
    three lines of context on each side."""
    prefix = _common_prefix(a, b)
    limit = min(len(a), len(b)) - prefix
    suffix = min(_common_prefix(a[::-1], b[::-1]), limit)
    start = a.rfind("\n", 0, prefix) + 1
    for _ in range(3):
        if start == 0:
            break
        start = a.rfind("\n", 0, start - 1) + 1

    def forward(text: str, pos: int) -> int:
        end = pos
        for _ in range(4):
            nxt = text.find("\n", end)
            if nxt == -1:
                return len(text)
            end = nxt + 1
        return end

    return start, forward(a, len(a) - suffix), forward(b, len(b) - suffix)


def short_diff(before: str, after: str, rel: str) -> tuple[str, int, int]:
    """A unified diff (capped) and the numbers of added and removed lines."""
    before = _display(before).replace("\r\n", "\n")
    after = _display(after).replace("\r\n", "\n")
    # diff only the changed middle (plus context): cheap on big files
    start, end_a, end_b = _changed_region(before, after)
    lo = before.count("\n", 0, start)
    a_mid = before[start:end_a].splitlines()
    b_mid = after[start:end_b].splitlines()
    if len(a_mid) + len(b_mid) > 40_000:
        header = f"--- a/{rel}\n+++ b/{rel}\n"
        note = f"(diff omitted: the changed region spans {len(a_mid)} lines)"
        return header + note, len(b_mid), len(a_mid)
    lines: list[str] = [f"--- a/{rel}", f"+++ b/{rel}"]
    added = removed = 0
    for line in difflib.unified_diff(a_mid, b_mid, n=3, lineterm=""):
        if line.startswith(("---", "+++")):
            continue
        m = _HUNK.match(line)
        if m:
            line = (
                f"@@ -{int(m.group(1)) + lo}{m.group(2) or ''} "
                f"+{int(m.group(3)) + lo}{m.group(4) or ''} @@"
            )
        elif line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
        lines.append(line)
    shown: list[str] = []
    size = 0
    for line in lines:
        if len(shown) >= MAX_DIFF_LINES or size + len(line) > MAX_DIFF_CHARS:
            shown.append(f"... (diff truncated: {len(lines) - len(shown)} more lines)")
            break
        shown.append(line if len(line) <= 500 else line[:500] + "...")
        size += len(line) + 1
    return "\n".join(shown), added, removed


def _read_all(path: Path) -> bytes:
    with open_regular(path) as fh:
        return fh.read()


async def _load_for_edit(
    ctx: ToolContext, real: Path, rel: str
) -> tuple[str | None, ToolOutput | None]:
    """Current text of an existing file, or the error that forbids editing it."""
    size = os.path.getsize(real)
    if size > MAX_EDIT_BYTES:
        return None, ToolOutput.error(
            f"{rel} is too large to edit in memory ({size} bytes); use bash (e.g. sed) instead."
        )
    data = await asyncio.to_thread(_read_all, real)
    if looks_binary(data[:BINARY_SNIFF_BYTES]):
        return None, ToolOutput.error(f"{rel} looks like a binary file; it cannot be edited.")
    problem = await _stale_message(ctx, rel, fingerprint_of(real, data), "editing")
    if problem:
        return None, ToolOutput.error(problem, path=rel)
    return data.decode("utf-8", errors="surrogateescape"), None


async def _save(ctx: ToolContext, real: Path, rel: str, text: str) -> None:
    data = text.encode("utf-8", errors="surrogateescape")
    await asyncio.to_thread(atomic_write, real, data)
    if ctx.state is not None:
        await ctx.state.set(state_key(rel), fingerprint_of(real, data))


def _edited(rel: str, before: str, after: str, replacements: int, created: bool) -> ToolOutput:
    diff, added, removed = short_diff(before, after, rel)
    head = (
        f"Created {rel}."
        if created
        else f"Edited {rel}: {replacements} replacement{'s' if replacements != 1 else ''}."
    )
    return ToolOutput(
        text=f"{head}\n{diff}",
        meta={
            "path": rel,
            "files_touched": [rel],
            "created": created,
            "replacements": replacements,
            "added": added,
            "removed": removed,
        },
    )


# ---------------------------------------------------------------- edit


class EditParams(ToolParams):
    file_path: str
    old_string: str
    new_string: str
    replace_all: bool = False


class Edit(Tool):
    name = "edit"
    description = (
        "Replace an exact string in a file you have read. old_string must be unique unless "
        "replace_all is set; an empty old_string creates a new file."
    )
    Params = EditParams

    async def run(self, params: EditParams, ctx: ToolContext) -> ToolOutput:
        if params.old_string == params.new_string:
            return ToolOutput.error("No changes to apply: old_string and new_string are identical.")
        try:
            real, rel = _resolve(ctx, params.file_path)
        except SandboxError as exc:
            return ToolOutput.error(exc.message)
        if real.is_dir():
            return ToolOutput.error(f"{rel} is a directory; give the path of a file to edit.")
        async with _lock(ctx, rel):
            if not real.exists():
                if params.old_string != "":
                    return ToolOutput.error(
                        await asyncio.to_thread(not_found_message, ctx, params.file_path)
                        + "\n(To create a file, use write or an empty old_string.)"
                    )
                await _save(ctx, real, rel, params.new_string)
                return _edited(rel, "", params.new_string, 1, True)
            content, error = await _load_for_edit(ctx, real, rel)
            if error is not None or content is None:
                return error or ToolOutput.error(f"Cannot edit {rel}.")
            if params.old_string == "" and content == "":
                updated, count = params.new_string, 1
            else:
                try:
                    updated, count = await asyncio.to_thread(
                        apply_edit,
                        content,
                        params.old_string,
                        params.new_string,
                        params.replace_all,
                        rel,
                    )
                except EditFailure as exc:
                    return ToolOutput.error(str(exc), path=rel)
            await _save(ctx, real, rel, updated)
        return _edited(rel, content, updated, count, False)


# ---------------------------------------------------------------- multiedit


class EditItem(ToolParams):
    old_string: str
    new_string: str
    replace_all: bool = False


class MultiEditParams(ToolParams):
    file_path: str
    edits: list[EditItem] = Field(min_length=1)


class MultiEdit(Tool):
    name = "multiedit"
    description = (
        "Apply several exact-string edits (as edit does) to one file you have read, in "
        "order, each on the result of the previous ones; all or nothing."
    )
    Params = MultiEditParams

    async def run(self, params: MultiEditParams, ctx: ToolContext) -> ToolOutput:
        try:
            real, rel = _resolve(ctx, params.file_path)
        except SandboxError as exc:
            return ToolOutput.error(exc.message)
        if real.is_dir():
            return ToolOutput.error(f"{rel} is a directory; give the path of a file to edit.")
        edits = params.edits
        total = len(edits)
        async with _lock(ctx, rel):
            created = not real.exists()
            if created:
                if edits[0].old_string != "":
                    return ToolOutput.error(
                        await asyncio.to_thread(not_found_message, ctx, params.file_path)
                        + "\n(To create a file, make the first edit's old_string empty.)"
                    )
                before, content, start, count = "", edits[0].new_string, 1, 1
            else:
                loaded, error = await _load_for_edit(ctx, real, rel)
                if error is not None or loaded is None:
                    return error or ToolOutput.error(f"Cannot edit {rel}.")
                before, content, start, count = loaded, loaded, 0, 0
            for index in range(start, total):
                item = edits[index]
                try:
                    content, n = await asyncio.to_thread(
                        apply_edit,
                        content,
                        item.old_string,
                        item.new_string,
                        item.replace_all,
                        rel,
                    )
                except EditFailure as exc:
                    return ToolOutput.error(
                        f"edits[{index}] (edit {index + 1} of {total}) failed: {exc}\n"
                        "No changes were written (multiedit is all or nothing).",
                        path=rel,
                        failed_edit=index,
                    )
                count += n
            await _save(ctx, real, rel, content)
        out = _edited(rel, before, content, count, created)
        out.meta["edits"] = total
        if not created:
            out.text = out.text.replace(
                f"Edited {rel}:", f"Applied {total} edit{'s' if total != 1 else ''} to {rel}:", 1
            )
        return out
