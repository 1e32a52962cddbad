"""`swarm init` on fixture repositories of each kind: what it detects and writes, twice
(the second run changes nothing), --force, and the result validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from swarm.cli import app
from swarm.init import detect
from swarm.paths import DATA_DIR, resolve_config
from swarm.tools.commands import load_commands

runner = CliRunner()


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PYPROJECT = """\
[project]
name = "pkg"
[project.optional-dependencies]
dev = ["pytest"]
[tool.pytest.ini_options]
testpaths = ["tests"]
[tool.ruff]
line-length = 100
[tool.mypy]
strict = true
"""

FIXTURES: dict[str, dict[str, str]] = {
    "python": {
        "pyproject.toml": PYPROJECT,
        "pkg/__init__.py": "",
        "tests/test_pkg.py": "def test_ok():\n    assert True\n",
        "README.md": "# pkg\n",
    },
    "node": {
        "package.json": json.dumps(
            {
                "name": "web",
                "scripts": {
                    "test": "vitest run",
                    "lint": "eslint .",
                    "build": "tsc -p .",
                    "dev": "vite",
                },
            }
        ),
        "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
    },
    "rust": {"Cargo.toml": '[package]\nname = "crab"\nversion = "0.1.0"\n', "src/main.rs": ""},
    "go": {"go.mod": "module example.com/gopher\n\ngo 1.22\n", "main.go": "package main\n"},
    "make": {
        "Makefile": ".PHONY: test lint\nCC := cc\ntest:\n\t./run-tests\nlint: test\n\t./lint\n"
        "install:\n\tcp a b\n",
        "docs/index.md": "docs\n",
    },
}

EXPECTED: dict[str, tuple[set[str], list[str]]] = {
    "python": (
        {"pytest", "ruff_check", "ruff_format_check", "mypy"},
        ["developer", "tester", "writer"],
    ),
    "node": ({"npm_test", "npm_lint", "npm_build"}, ["developer", "tester"]),
    "rust": ({"cargo_test", "cargo_clippy", "cargo_fmt_check"}, ["developer", "tester"]),
    "go": ({"go_test", "go_vet", "gofmt_check"}, ["developer", "tester"]),
    "make": ({"make_test", "make_lint"}, ["developer", "tester", "writer"]),
}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_init_each_kind_twice(tmp_path: Path, kind: str) -> None:
    root = _write(tmp_path / kind, FIXTURES[kind])
    first = runner.invoke(app, ["init", str(root)])
    assert first.exit_code == 0, first.output
    assert "wrote      configs/swarm.yaml" in first.output
    assert "configs/swarm.yaml is valid" in first.output

    commands, agents = EXPECTED[kind]
    spec = load_commands(root / "tools" / "commands.yaml")
    assert set(spec) == commands
    config = yaml.safe_load((root / "configs" / "swarm.yaml").read_text())
    assert [a["name"] for a in config["agents"]] == agents
    assert config["goal"].startswith("TODO")
    assert config["repo"] == ".." and config["budget"]["max_usd"] > 0
    for a in config["agents"]:  # a copy of each card it uses, as shipped
        card = root / "agents" / f"{a['role']}.md"
        assert card.read_text() == (DATA_DIR / "agents" / f"{a['role']}.md").read_text()
    assert sorted(p.name for p in (root / "agents").iterdir()) == sorted(
        f"{a['role']}.md" for a in config["agents"]
    )
    assert ".swarm/" in (root / ".gitignore").read_text().splitlines()

    valid = runner.invoke(app, ["validate", str(root / "configs" / "swarm.yaml")])
    assert valid.exit_code == 0, valid.output
    assert f"{len(agents)} agents" in valid.output

    before = _snapshot(root)
    second = runner.invoke(app, ["init", str(root)])
    assert second.exit_code == 0, second.output
    assert "nothing changed" in second.output
    assert "wrote" not in second.output and "replaced" not in second.output
    assert _snapshot(root) == before


def test_detected_commands_are_the_repos_own(tmp_path: Path) -> None:
    py = detect(_write(tmp_path / "py", FIXTURES["python"]))
    assert py.commands["pytest"].command == "python3 -m pytest -q {path}"
    assert py.commands["mypy"].command == "python3 -m mypy pkg"  # its package, not tests
    node = detect(_write(tmp_path / "node", FIXTURES["node"]))
    assert node.commands["npm_test"].command == "pnpm run test"  # the lock file's manager
    assert "npm_dev" not in node.commands  # a dev server is no check
    make = detect(_write(tmp_path / "make", FIXTURES["make"]))
    assert set(make.commands) == {"make_test", "make_lint"}  # not install, not CC := ...
    placeholder = {
        "package.json": json.dumps(
            {"scripts": {"test": 'echo "Error: no test specified" && exit 1'}}
        )
    }
    assert not detect(_write(tmp_path / "npm-init", placeholder)).commands


def test_config_gate_hint_uses_the_test_command(tmp_path: Path) -> None:
    root = _write(tmp_path / "go", FIXTURES["go"])
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    text = (root / "configs" / "swarm.yaml").read_text()
    assert '# merge: {gate: "go test ./...", gate_timeout_s: 900}' in text


def test_existing_files_are_kept_unless_force(tmp_path: Path) -> None:
    root = _write(tmp_path / "r", {**FIXTURES["rust"], ".gitignore": "target"})
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    assert (root / ".gitignore").read_text() == (
        "target\n# swarm's state (runs, worktrees, the embedded Redis)\n.swarm/\n"
    )
    card = root / "agents" / "developer.md"
    card.write_text(card.read_text() + "\nAlways write Rust 2021.\n")
    kept = runner.invoke(app, ["init", str(root)])
    assert kept.exit_code == 0
    assert (
        "kept       agents/developer.md  (it exists and differs; --force overwrites)" in kept.output
    )
    assert "nothing changed" in kept.output
    assert "Always write Rust 2021." in card.read_text()
    forced = runner.invoke(app, ["init", str(root), "--force"])
    assert forced.exit_code == 0
    assert "replaced   agents/developer.md" in forced.output
    assert "Always write Rust 2021." not in card.read_text()


def test_empty_repository_and_bad_input(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    out = runner.invoke(app, ["init", str(root)])
    assert out.exit_code == 0, out.output
    assert "skipped    tools/commands.yaml  (no test or lint commands found)" in out.output
    config = yaml.safe_load((root / "configs" / "swarm.yaml").read_text())
    assert [a["role"] for a in config["agents"]] == ["developer"]
    missing = runner.invoke(app, ["init", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "is not a directory" in missing.output
    bad = _write(tmp_path / "bad", {"package.json": "{not json"})
    out = runner.invoke(app, ["init", str(bad)])
    assert out.exit_code == 2 and "package.json: not valid JSON" in out.output


def test_this_repository_is_set_up(project_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed configs/swarm.yaml, agents/ and tools/commands.yaml are what
    `swarm init` writes for swarm itself, and a config named configs/mesh10.yaml still
    means the shipped one from the checkout's root."""
    from swarm.init import detect, render_commands

    found = detect(project_root)
    assert (project_root / "tools" / "commands.yaml").read_text() == render_commands(found)
    names = set(load_commands(project_root / "tools" / "commands.yaml"))
    assert {"pytest", "ruff_check", "mypy", "make_test", "make_lint"} <= names
    valid = runner.invoke(app, ["validate", str(project_root / "configs" / "swarm.yaml")])
    assert valid.exit_code == 0, valid.output
    shipped = {p.name for p in (DATA_DIR / "configs").iterdir()}
    assert not shipped & {p.name for p in (project_root / "configs").iterdir()}
    monkeypatch.chdir(project_root)
    for name in shipped:
        assert resolve_config(Path("configs") / name) == DATA_DIR / "configs" / name
