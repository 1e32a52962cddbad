"""Path confinement and permission rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from swarm.tools.sandbox import (
    PermissionRules,
    SandboxError,
    check_permission,
    is_env_file,
    permission_message,
    relpath,
    resolve_in_workspace,
    wildcard_match,
)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    w = tmp_path / "ws"
    (w / "src").mkdir(parents=True)
    (w / "src" / "a.py").write_text("x\n")
    return w


def test_relative_path_resolves_against_workspace(ws: Path) -> None:
    assert resolve_in_workspace(ws, "src/a.py") == Path(os.path.realpath(ws / "src/a.py"))
    assert resolve_in_workspace(ws, "./src/../src/a.py").name == "a.py"
    assert resolve_in_workspace(ws, "new/dir/file.txt").name == "file.txt"  # may not exist


def test_absolute_path_inside_is_accepted(ws: Path) -> None:
    assert resolve_in_workspace(ws, str(ws / "src" / "a.py")).name == "a.py"


def test_workspace_given_through_a_symlink(tmp_path: Path, ws: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(ws)
    # both the symlinked and the real spelling of the workspace are accepted
    assert resolve_in_workspace(link, str(link / "src/a.py")).name == "a.py"
    assert resolve_in_workspace(link, str(ws / "src/a.py")).name == "a.py"


@pytest.mark.parametrize("path", ["../outside.txt", "src/../../x", "/etc/passwd", "~/x"])
def test_escapes_are_refused(ws: Path, path: str) -> None:
    with pytest.raises(SandboxError) as err:
        resolve_in_workspace(ws, path)
    assert str(err.value).startswith(f"Access denied: {path} is outside the workspace")
    assert "Use a path inside the workspace" in str(err.value)


def test_symlink_out_is_refused(tmp_path: Path, ws: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    (ws / "link").symlink_to(secret)
    with pytest.raises(SandboxError) as err:
        resolve_in_workspace(ws, "link")
    assert "resolves through a symlink to" in str(err.value)
    assert "outside the workspace" in str(err.value)


def test_symlink_inside_is_followed(ws: Path) -> None:
    (ws / "alias.py").symlink_to(ws / "src" / "a.py")
    assert resolve_in_workspace(ws, "alias.py") == Path(os.path.realpath(ws / "src/a.py"))


def test_fifo_is_refused(ws: Path) -> None:
    os.mkfifo(ws / "pipe")
    with pytest.raises(SandboxError) as err:
        resolve_in_workspace(ws, "pipe")
    assert str(err.value) == (
        "Access denied: pipe is a fifo (named pipe); only regular files and directories "
        "can be used."
    )


def test_proc_is_refused_even_as_workspace_member(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="system path"):
        resolve_in_workspace(Path("/"), "/proc/self/environ")


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        (".env", True),
        (".env.local", True),
        (".env.production", True),
        (".env.example", False),
        (".env.sample", False),
        (".env.template", False),
        ("env", False),
        ("x.env", False),
    ],
)
def test_env_files(ws: Path, name: str, secret: bool) -> None:
    (ws / name).write_text("K=V\n")
    assert is_env_file(name) is secret
    if secret:
        with pytest.raises(SandboxError) as err:
            resolve_in_workspace(ws, name)
        assert str(err.value) == (
            f"Access denied: {name} is an environment file that may hold secrets "
            "(.env and .env.* are denied by default). Use .env.example to document variables."
        )
        assert resolve_in_workspace(ws, name, allow_env=True).name == name
    else:
        assert resolve_in_workspace(ws, name).name == name


def test_symlink_to_env_inside_is_refused(ws: Path) -> None:
    (ws / ".env").write_text("K=V\n")
    (ws / "config.txt").symlink_to(ws / ".env")
    with pytest.raises(SandboxError, match="environment file"):
        resolve_in_workspace(ws, "config.txt")


def test_empty_and_nul_paths(ws: Path) -> None:
    with pytest.raises(SandboxError, match="The path is empty"):
        resolve_in_workspace(ws, "  ")
    with pytest.raises(SandboxError, match="NUL byte"):
        resolve_in_workspace(ws, "a\x00b")


def test_relpath(ws: Path) -> None:
    assert relpath(ws, ws) == "."
    assert relpath(ws, ws / "src" / "a.py") == "src/a.py"


# ---------------------------------------------------------------- permissions


BASH_RULES = PermissionRules({"bash": {"*": "allow", "rm -rf *": "deny", "git push*": "ask"}})


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ls -la", ("allow", "*")),
        ("rm -rf /", ("deny", "rm -rf *")),
        ("git push origin main", ("ask", "git push*")),
        ("git status", ("allow", "*")),
    ],
)
def test_bash_rules_last_match_wins(command: str, expected: tuple[str, str]) -> None:
    assert check_permission(BASH_RULES, "bash", command) == expected


def test_later_rule_overrides_earlier() -> None:
    rules = PermissionRules({"bash": {"git *": "deny", "git status": "allow"}})
    assert check_permission(rules, "bash", "git status") == ("allow", "git status")
    assert check_permission(rules, "bash", "git push") == ("deny", "git *")
    rules = PermissionRules({"bash": {"git status": "allow", "git *": "deny"}})
    assert check_permission(rules, "bash", "git status") == ("deny", "git *")


def test_no_rules_or_no_match_allows() -> None:
    assert check_permission(None, "bash", "rm -rf /") == ("allow", None)
    assert check_permission(BASH_RULES, "read", "src/a.py") == ("allow", None)
    rules = PermissionRules({"bash": {"rm *": "deny"}})
    assert check_permission(rules, "bash", "ls") == ("allow", None)


def test_single_permission_for_a_tool_and_wildcard_tool_keys() -> None:
    rules = PermissionRules({"*": "deny", "read": "allow"})
    assert check_permission(rules, "read", "x") == ("allow", "read")
    assert check_permission(rules, "bash", "ls") == ("deny", "*")


def test_file_patterns_and_edit_alias() -> None:
    rules = PermissionRules(
        {"edit": {"*": "allow", "secrets/*": "deny"}, "write": {"*.lock": "ask"}}
    )
    assert check_permission(rules, "edit", "secrets/key.pem") == ("deny", "secrets/*")
    assert check_permission(rules, "multiedit", "secrets/key.pem") == ("deny", "secrets/*")
    assert check_permission(rules, "write", "poetry.lock") == ("ask", "*.lock")
    assert check_permission(rules, "write", "src/a.py") == ("allow", "*")


def test_trailing_space_star_is_optional() -> None:
    assert wildcard_match("git push *", "git push")
    assert wildcard_match("git push *", "git push origin")
    assert not wildcard_match("git push *", "git pushx")
    assert wildcard_match("ls?", "ls1")


def test_rules_are_validated() -> None:
    with pytest.raises(ValidationError):
        PermissionRules.model_validate({"bash": "maybe"})
    parsed = PermissionRules.model_validate({"bash": {"*": "allow"}, "write": "deny"})
    assert parsed.root["write"] == "deny"


def test_permission_messages() -> None:
    assert permission_message("bash", "git push origin", "ask", "git push*", approver=False) == (
        "Permission to run bash `git push origin` requires human approval (rule 'git push*': "
        "ask); no approver is attached to this swarm, so it was denied. Try another approach."
    )
    assert permission_message("bash", "rm -rf /", "deny", "rm -rf *", approver=False) == (
        "Permission to run bash `rm -rf /` is denied (rule 'rm -rf *': deny). Try another approach."
    )
    assert "refused by the human approver" in permission_message(
        "bash", "git push", "ask", "git push*", approver=True
    )
