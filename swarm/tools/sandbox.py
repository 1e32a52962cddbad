"""Workspace confinement and permission rules.

Every path a tool touches goes through :func:`resolve_in_workspace`; every tool call
goes through :func:`check_permission` (in the :class:`~swarm.tools.runner.ToolRunner`).
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import RootModel

Permission = Literal["allow", "ask", "deny"]

#: .env variants that document variables without holding secrets: readable.
ENV_ALLOWED = frozenset({".env.example", ".env.sample", ".env.template"})
#: Pseudo file systems that are never part of a workspace.
_FORBIDDEN_ROOTS = ("/proc", "/sys", "/dev")


class SandboxError(Exception):
    """A path the tool refuses to touch. ``str(exc)`` is the message for the model."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def is_env_file(name: str) -> bool:
    """True for ``.env`` and ``.env.*`` except the documented templates (.env.example...)."""
    return name == ".env" or (name.startswith(".env.") and name not in ENV_ALLOWED)


def workspace_root(workspace: Path) -> Path:
    """The workspace with every symlink resolved."""
    return Path(os.path.realpath(workspace))


def _inside(root: Path | str, path: Path | str) -> bool:
    """``path`` is ``root`` or below it (both absolute and normalised; compared as strings,
    which is what Path.parents would say, without building every parent)."""
    r, p = os.fspath(root), os.fspath(path)
    return p == r or p.startswith(r if r.endswith(os.sep) else r + os.sep)


def relpath(workspace: Path, path: Path) -> str:
    """``path`` (already resolved) relative to the workspace, posix style; ``.`` for the root."""
    real, root = os.path.realpath(path), os.path.realpath(workspace)
    if not _inside(root, real):
        raise ValueError(f"{real} is not inside {root}")
    if real == root:
        return "."
    rel = real[len(root) :].lstrip(os.sep)
    return rel.replace(os.sep, "/")


def resolve_in_workspace(
    workspace: Path, file_path: str, *, allow_env: bool = False, allow_special: bool = False
) -> Path:
    """Resolve ``file_path`` to a real path inside ``workspace`` or raise :class:`SandboxError`.

    Relative paths resolve against the workspace; absolute ones must lie inside it once
    symlinks are resolved (on both sides). Device files, fifos, sockets and /proc are
    refused, and so are ``.env`` files unless ``allow_env``.
    """
    if not file_path or not file_path.strip():
        raise SandboxError("The path is empty. Give a path relative to the workspace root.")
    if "\x00" in file_path:
        raise SandboxError(f"Invalid path {file_path!r}: it contains a NUL byte.")
    root = workspace_root(workspace)
    raw = Path(os.path.expanduser(file_path)) if file_path.startswith("~") else Path(file_path)
    candidate = raw if raw.is_absolute() else root / raw
    real_s = os.path.realpath(candidate)
    real = Path(real_s)
    if not _inside(root, real_s):
        lexical = Path(os.path.normpath(candidate))
        if _inside(root, lexical) or _inside(Path(os.path.abspath(workspace)), lexical):
            # lexically inside, really outside: a symlink somewhere on the way points out
            raise SandboxError(
                f"Access denied: {file_path} resolves through a symlink to {real}, which is "
                f"outside the workspace ({root}). Only files inside the workspace can be used."
            )
        raise SandboxError(
            f"Access denied: {file_path} is outside the workspace ({root}). "
            "Use a path inside the workspace (relative paths resolve against its root)."
        )
    for forbidden in _FORBIDDEN_ROOTS:
        if _inside(forbidden, real_s):
            raise SandboxError(f"Access denied: {file_path} is a system path ({forbidden}).")
    if not allow_special:
        try:
            st = os.stat(real)
        except OSError:
            st = None
        if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            kind = (
                "a fifo (named pipe)"
                if stat.S_ISFIFO(st.st_mode)
                else "a socket"
                if stat.S_ISSOCK(st.st_mode)
                else "a device file"
                if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "not a regular file"
            )
            raise SandboxError(
                f"Access denied: {file_path} is {kind}; only regular files and directories "
                "can be used."
            )
    if not allow_env and (is_env_file(real.name) or is_env_file(candidate.name)):
        raise SandboxError(
            f"Access denied: {file_path} is an environment file that may hold secrets "
            "(.env and .env.* are denied by default). Use .env.example to document variables."
        )
    return real


# ---------------------------------------------------------------- permissions


class PermissionRules(RootModel[dict[str, Permission | dict[str, Permission]]]):
    """Per-tool permissions, OpenCode style: last matching rule wins; default allow.

    ``{"bash": {"*": "allow", "rm -rf *": "deny", "git push*": "ask"}, "write": "deny"}``.
    Keys are tool names (wildcards allowed, ``"*"`` for every tool); ``edit`` also covers
    ``write`` and ``multiedit``. For file tools patterns match the workspace-relative
    path, for bash the command, for other tools the JSON of the arguments.
    """

    root: dict[str, Permission | dict[str, Permission]] = {}


#: Rules under the key ``edit`` also govern these tools (as in OpenCode).
_ALIASES: dict[str, tuple[str, ...]] = {"write": ("edit",), "multiedit": ("edit",)}


@lru_cache(maxsize=512)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """``*`` matches anything (also ``/`` and spaces), ``?`` one character.

    A trailing `` *`` is optional, so ``git push *`` also matches ``git push``.
    """
    optional_tail = pattern.endswith(" *")
    body = pattern[:-2] if optional_tail else pattern
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in body)
    if optional_tail:
        regex += "(?: .*)?"
    return re.compile(regex, re.DOTALL)


def wildcard_match(pattern: str, text: str) -> bool:
    return _wildcard(pattern).fullmatch(text) is not None


def check_permission(
    rules: PermissionRules | None, tool_name: str, subject: str
) -> tuple[Permission, str | None]:
    """The permission for ``tool_name`` on ``subject`` and the rule that decided it.

    Rules are scanned in order; the last match wins; no match means ``allow``.
    """
    if rules is None:
        return "allow", None
    names = (tool_name, *_ALIASES.get(tool_name, ()))
    decision: Permission = "allow"
    rule: str | None = None
    for key, value in rules.root.items():
        if not any(wildcard_match(key, n) for n in names):
            continue
        if isinstance(value, str):
            decision, rule = value, key
            continue
        for pattern, perm in value.items():
            if wildcard_match(pattern, subject):
                decision, rule = perm, pattern
    return decision, rule


def permission_message(
    tool_name: str,
    subject: str,
    permission: Permission,
    rule: str | None,
    *,
    approver: bool,
    note: str | None = None,
) -> str:
    """The text the model sees when a call is not allowed (``note``: why an ``ask`` was
    not approved, from the approver)."""
    shown = subject if len(subject) <= 200 else subject[:200] + "..."
    what = f"Permission to run {tool_name} `{shown}`"
    why = f"(rule '{rule}': {permission})"
    if permission == "ask" and note:
        return f"{what} was not approved {why}: {note} Try another approach."
    if permission == "ask":
        if approver:
            return f"{what} was refused by the human approver {why}. Try another approach."
        return (
            f"{what} requires human approval {why}; no approver is attached to this swarm, "
            "so it was denied. Try another approach."
        )
    return f"{what} is denied {why}. Try another approach."
