"""Search tools: grep (ripgrep) and glob (gitignore-aware file listing)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pathspec
from pydantic import ConfigDict, Field

from swarm.tools.base import Tool, ToolContext, ToolOutput, ToolParams
from swarm.tools.sandbox import (
    SandboxError,
    is_env_file,
    relpath,
    resolve_in_workspace,
    workspace_root,
)

MAX_RESULTS = 100
TRUNCATED = "(results truncated, narrow the search)"
RG_TIMEOUT_S = 30.0
#: files_with_matches sorts by mtime, so it reads up to this many paths before sorting.
MAX_FILES_SORTED = 20_000
GLOB_MAX_ENTRIES = 200_000
GLOB_TIME_BUDGET_S = 15.0


def rg_binary() -> str | None:
    """The ripgrep binary shipped by the `ripgrep` wheel, else one on PATH."""
    beside = Path(sys.executable).parent / "rg"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("rg")


def _search_root(ctx: ToolContext, path: str | None) -> tuple[Path, str]:
    """The resolved directory or file to search and its workspace-relative form."""
    real = resolve_in_workspace(ctx.workspace, path or ".")
    return real, relpath(ctx.workspace, real)


# ---------------------------------------------------------------- grep


class GrepParams(ToolParams):
    model_config = ConfigDict(populate_by_name=True)

    pattern: str
    path: str | None = Field(None, description="File or directory (default: root)")
    glob: str | None = Field(None, description='File filter, e.g. "*.py"')
    output_mode: Literal["content", "files_with_matches", "count"] = "files_with_matches"
    case_insensitive: bool | None = Field(None, alias="-i", description="Case insensitive")
    head_limit: int | None = Field(None, ge=1, description=f"Max results (at most {MAX_RESULTS})")


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    data = b""
    while chunk := await stream.read(65536):
        if len(data) < cap:
            data += chunk[: cap - len(data)]
    return data


@dataclass
class _RgResult:
    items: list[tuple[str, str]]  # (path, rest)
    more: bool
    timed_out: bool
    error: str | None


async def _run_rg(args: list[str], cwd: Path, mode: str, want: int, timeout: float) -> _RgResult:
    rg = rg_binary()
    if rg is None:
        return _RgResult([], False, False, "ripgrep (rg) is not installed.")
    proc = await asyncio.create_subprocess_exec(
        rg,
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        limit=1 << 20,
    )
    assert proc.stdout is not None and proc.stderr is not None
    items: list[tuple[str, str]] = []
    more = False
    timed_out = False
    finished = False
    stderr_task = asyncio.ensure_future(_read_capped(proc.stderr, 8192))
    separator = b"\0" if mode == "files_with_matches" else b"\n"
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    raw = await proc.stdout.readuntil(separator)
                except asyncio.IncompleteReadError as exc:
                    raw = exc.partial
                except asyncio.LimitOverrunError:
                    raw = await proc.stdout.read(1 << 20)
                if not raw:
                    finished = True
                    break
                text = raw.rstrip(separator).decode("utf-8", "replace")
                path, _, rest = text.partition("\0")
                if is_env_file(Path(path).name):
                    continue  # secrets stay unreadable through grep too
                if len(items) >= want:
                    more = True
                    break
                items.append((path, rest))
    except TimeoutError:
        timed_out = True
    finally:
        if not finished and proc.returncode is None:
            # os.killpg, not proc.kill(): Popen.kill() polls (reaps) first, racing the
            # asyncio child watcher
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5)
        stderr = b""
        with contextlib.suppress(TimeoutError):
            stderr = await asyncio.wait_for(stderr_task, 1)
    error = None
    if proc.returncode == 2 and not items and not more and not timed_out:
        error = stderr.decode("utf-8", "replace").strip() or "rg failed"
    return _RgResult(items, more, timed_out, error)


class Grep(Tool):
    name = "grep"
    read_only = True
    description = (
        "Search file contents with a ripgrep regex (respects .gitignore, skips binary files). "
        "output_mode content shows path:line:text; the default lists matching files."
    )
    Params = GrepParams

    async def run(self, params: GrepParams, ctx: ToolContext) -> ToolOutput:
        try:
            real, rel = _search_root(ctx, params.path)
        except SandboxError as exc:
            return ToolOutput.error(exc.message)
        if not real.exists():
            return ToolOutput.error(f"Path not found: {params.path}")
        mode = params.output_mode
        limit = min(params.head_limit or MAX_RESULTS, MAX_RESULTS)
        args = [
            "--no-config",
            "--no-require-git",
            "--hidden",
            "--glob",
            "!.git",
            "--color=never",
            "--null",
            "--no-messages",
        ]
        if mode == "content":
            args += ["-n", "--with-filename", "--no-heading", "--sort=path"]
            args += ["--max-columns=500", "--max-columns-preview"]
        elif mode == "count":
            args += ["--count", "--with-filename", "--sort=path"]
        else:
            args += ["--files-with-matches"]
        if params.case_insensitive:
            args.append("-i")
        if params.glob:
            args += ["--glob", params.glob]
        args += ["--regexp", params.pattern]
        if rel != ".":
            args += ["--", rel]
        want = MAX_FILES_SORTED if mode == "files_with_matches" else limit
        root = workspace_root(ctx.workspace)
        result = await _run_rg(args, root, mode, want, RG_TIMEOUT_S)
        if result.error:
            hint = ""
            if "regex parse error" in result.error:
                hint = (
                    "\n(The pattern is a regex: escape special characters such as ( [ { . with \\.)"
                )
            return ToolOutput.error(f"grep failed: {result.error}{hint}")
        items, more = result.items, result.more
        if mode == "files_with_matches":
            items.sort(key=lambda item: (-_mtime(root / item[0]), item[0]))
            more = more or len(items) > limit
            items = items[:limit]
            lines = [path for path, _ in items]
        elif mode == "count":
            lines = [f"{path}:{count}" for path, count in items]
        else:
            lines = [f"{path}:{rest}" for path, rest in items]
        meta = {"results": len(lines), "truncated": more, "timed_out": result.timed_out}
        if not lines:
            text = "No matches found"
            if result.timed_out:
                text += f" (search timed out after {RG_TIMEOUT_S:g} s; narrow the search)"
            return ToolOutput(text=text, meta=meta)
        if more:
            lines.append(TRUNCATED)
        if result.timed_out:
            lines.append(f"(search timed out after {RG_TIMEOUT_S:g} s; results are incomplete)")
        return ToolOutput(text="\n".join(lines), meta=meta)


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


# ---------------------------------------------------------------- glob

_GLOB_CHARS = re.compile(r"[*?\[{]")


def expand_braces(pattern: str) -> list[str]:
    """``a.{py,pyi}`` -> ``[a.py, a.pyi]`` (nested braces too)."""
    depth = 0
    start = -1
    for i, c in enumerate(pattern):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                options, level, current = [], 0, ""
                for ch in pattern[start + 1 : i]:
                    if ch == "," and level == 0:
                        options.append(current)
                        current = ""
                        continue
                    level += ch == "{"
                    level -= ch == "}"
                    current += ch
                options.append(current)
                head, tail = pattern[:start], pattern[i + 1 :]
                return [x for opt in options for x in expand_braces(head + opt + tail)]
    return [pattern]


def glob_to_regex(pattern: str) -> str:
    """Translate a path glob (``**``, ``*``, ``?``, ``[...]``) to a regex over posix paths."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i):
            at_start = i == 0 or pattern[i - 1] == "/"
            if at_start and pattern.startswith("**/", i):
                out.append("(?:[^/]+/)*")
                i += 3
                continue
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
                continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class _Ignores:
    """Stacked .gitignore specs: deeper files override shallower ones."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, pathspec.PathSpec | None] = {}

    def spec_for(self, dir_rel: str) -> pathspec.PathSpec | None:
        if dir_rel not in self.cache:
            spec = None
            file = self.root / dir_rel / ".gitignore"
            with contextlib.suppress(OSError):
                if file.is_file():
                    spec = pathspec.GitIgnoreSpec.from_lines(
                        file.read_text("utf-8", errors="replace").splitlines()
                    )
            self.cache[dir_rel] = spec
        return self.cache[dir_rel]

    def ignored(self, rel: str, is_dir: bool) -> bool:
        parts = rel.split("/")
        verdict = False
        for depth in range(len(parts)):
            dir_rel = "/".join(parts[:depth]) or "."
            spec = self.spec_for(dir_rel)
            if spec is None:
                continue
            sub = "/".join(parts[depth:]) + ("/" if is_dir else "")
            res = spec.check_file(sub)
            if res.include is not None:
                verdict = bool(res.include)
        return verdict


class GlobParams(ToolParams):
    pattern: str
    path: str | None = Field(None, description="Directory (default: root)")


def _split_pattern(pattern: str) -> tuple[str, str]:
    """(literal directory prefix, glob rest): ``src/**/*.py`` -> (``src``, ``**/*.py``)."""
    parts = pattern.split("/")
    literal: list[str] = []
    for part in parts[:-1]:
        if _GLOB_CHARS.search(part):
            break
        literal.append(part)
    rest = parts[len(literal) :]
    prefix = "/".join(literal)
    if pattern.startswith("/") and not prefix:
        prefix = "/"
    return prefix, "/".join(rest)


def _glob_walk(
    root: Path, base: Path, regexes: list[re.Pattern[str]], anchored: bool
) -> tuple[list[tuple[float, str]], bool]:
    ignores = _Ignores(root)
    base_rel = base.relative_to(root).as_posix()
    base_rel = "" if base_rel == "." else base_rel
    found: list[tuple[float, str]] = []
    visited = 0
    deadline = time.monotonic() + GLOB_TIME_BUDGET_S
    stack = [base]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            visited += 1
            if visited > GLOB_MAX_ENTRIES or time.monotonic() > deadline:
                return found, True
            if entry.name == ".git":
                continue
            rel = Path(entry.path).relative_to(root).as_posix()
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if ignores.ignored(rel, is_dir):
                continue
            if is_dir:
                stack.append(Path(entry.path))
                continue
            sub = rel[len(base_rel) + 1 :] if base_rel else rel
            target = sub if anchored else entry.name
            if any(r.fullmatch(target) for r in regexes):
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    mtime = 0.0
                found.append((mtime, rel))
    return found, False


class Glob(Tool):
    name = "glob"
    read_only = True
    description = (
        "Find files by name pattern (respects .gitignore), newest first. "
        'A pattern without "/" matches at any depth; "src/**/*.ts" is anchored.'
    )
    Params = GlobParams

    async def run(self, params: GlobParams, ctx: ToolContext) -> ToolOutput:
        pattern = params.pattern.strip()
        if not pattern:
            return ToolOutput.error("The glob pattern is empty.")
        prefix, rest = _split_pattern(pattern)
        if ".." in rest.split("/"):
            return ToolOutput.error(
                "Glob patterns cannot use '..' after a wildcard; search from a directory "
                "inside the workspace with the path parameter instead."
            )
        anchored = "/" in pattern.strip("/") or pattern.startswith("/")
        target = os.path.join(params.path, prefix) if params.path else prefix
        try:
            base = resolve_in_workspace(ctx.workspace, target or ".")
        except SandboxError as exc:
            return ToolOutput.error(f"{exc.message} (glob pattern {pattern!r})")
        root = workspace_root(ctx.workspace)
        if not base.is_dir():
            where = relpath(ctx.workspace, base)
            return ToolOutput(text=f"No files found (directory {where} does not exist)")
        regexes = [re.compile(glob_to_regex(p)) for p in expand_braces(rest) if p]
        found, stopped = await asyncio.to_thread(_glob_walk, root, base, regexes, anchored)
        found.sort(key=lambda item: (-item[0], item[1]))
        meta = {"results": len(found), "truncated": len(found) > MAX_RESULTS or stopped}
        if not found:
            return ToolOutput(text="No files found", meta=meta)
        lines = [rel for _, rel in found[:MAX_RESULTS]]
        if len(found) > MAX_RESULTS:
            lines.append(
                f"(results truncated: showing {MAX_RESULTS} of {len(found)} files, newest "
                "first; use a more specific pattern or path)"
            )
        if stopped:
            lines.append("(search stopped early: too many files; narrow the pattern or path)")
        return ToolOutput(text="\n".join(lines), meta=meta)
