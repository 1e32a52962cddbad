"""`swarm init [DIR]`: a starting point for running a swarm on a repository.

Writes ``configs/swarm.yaml`` (a goal placeholder, a small mesh of roles that fit the
repository, a budget), ``agents/`` with copies of the role cards it uses,
``tools/commands.yaml`` with the repository's own test and lint commands (detected from
pyproject.toml / pytest, package.json scripts, Cargo.toml, go.mod and Makefile targets)
and ``.swarm/`` in ``.gitignore``. A file that exists is never changed without ``force``,
so a second run changes nothing and says so."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from swarm.errors import BadInput
from swarm.paths import shipped

CONFIG_FILE = Path("configs") / "swarm.yaml"
COMMANDS_FILE = Path("tools") / "commands.yaml"
GOAL_PLACEHOLDER = "TODO: say what the swarm should do in this repository"
MAKE_TARGETS = ("test", "tests", "check", "lint", "typecheck", "type-check", "unit", "integration")
NODE_SCRIPTS = ("test", "lint", "typecheck", "type-check", "check", "format:check", "build")
IGNORE_LINE = ".swarm/"


@dataclass
class Command:
    description: str
    command: str
    kind: str  # test | lint | other
    params: dict[str, Any] = field(default_factory=dict)
    timeout_s: int = 300
    gate: str = ""  # a test command as a merge gate would run it (the whole suite)

    def as_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description, "command": self.command}
        if self.params:
            out["params"] = self.params
        out["timeout_s"] = self.timeout_s
        return out


@dataclass
class Findings:
    kinds: list[str] = field(default_factory=list)  # python, node, rust, go, make
    commands: dict[str, Command] = field(default_factory=dict)
    has_tests: bool = False
    has_docs: bool = False


def _path_param() -> dict[str, Any]:
    return {
        "path": {
            "type": "string",
            "required": False,
            "description": "a file or directory (default: all of it)",
        }
    }


def _python(repo: Path, found: Findings) -> None:
    pyproject = repo / "pyproject.toml"
    data: dict[str, Any] = {}
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"{pyproject}: not valid TOML: {exc}") from None
    markers = ("setup.py", "setup.cfg", "pytest.ini", "tox.ini", "conftest.py")
    if not data and not any((repo / m).is_file() for m in markers):
        return
    found.kinds.append("python")
    text = pyproject.read_text(encoding="utf-8") if pyproject.is_file() else ""
    tool = data.get("tool", {})
    uses_pytest = (
        "pytest" in tool
        or "pytest" in text
        or (repo / "pytest.ini").is_file()
        or (repo / "conftest.py").is_file()
        or "pytest" in _read(repo / "tox.ini")
        or "pytest" in _read(repo / "setup.cfg")
    )
    if uses_pytest:
        found.commands["pytest"] = Command(
            "Run the test suite with pytest (or one file or directory of it)",
            "python3 -m pytest -q {path}",
            "test",
            _path_param(),
            timeout_s=600,
            gate="python3 -m pytest -q",
        )
    elif (repo / "tests").is_dir():
        found.commands["unittest"] = Command(
            "Run the test suite with unittest",
            "python3 -m unittest -q",
            "test",
            timeout_s=600,
            gate="python3 -m unittest -q",
        )
    if "ruff" in tool or (repo / "ruff.toml").is_file() or (repo / ".ruff.toml").is_file():
        found.commands["ruff_check"] = Command(
            "Lint with ruff", "ruff check {path}", "lint", _path_param()
        )
        found.commands["ruff_format_check"] = Command(
            "Check the formatting with ruff (changes nothing)",
            "ruff format --check {path}",
            "lint",
            _path_param(),
        )
    if "mypy" in tool or (repo / "mypy.ini").is_file():
        packages = _packages(repo, tool)
        found.commands["mypy"] = Command(
            "Type-check with mypy",
            "python3 -m mypy " + (" ".join(packages) or "."),
            "lint",
        )


def _packages(repo: Path, tool: dict[str, Any]) -> list[str]:
    """The repository's own top-level packages: those setuptools is told to include, or
    every folder with an __init__.py but the tests."""
    found = sorted(
        p.name
        for p in repo.iterdir()
        if p.is_dir() and (p / "__init__.py").is_file() and p.name not in ("tests", "test")
    )
    setuptools = tool.get("setuptools", {})
    listed = setuptools.get("packages")
    include = listed.get("find", {}).get("include") if isinstance(listed, dict) else None
    if isinstance(listed, list):
        include = listed
    if isinstance(include, list) and include:
        chosen = [p for p in found if any(fnmatch.fnmatch(p, str(g)) for g in include)]
        return chosen or found
    return found


def _node(repo: Path, found: Findings) -> None:
    path = repo / "package.json"
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid JSON: {exc}") from None
    found.kinds.append("node")
    scripts = data.get("scripts") if isinstance(data, dict) else None
    if not isinstance(scripts, dict):
        return
    runner = "npm"
    for lock, name in (("pnpm-lock.yaml", "pnpm"), ("yarn.lock", "yarn"), ("bun.lockb", "bun")):
        if (repo / lock).is_file():
            runner = name
    for script in NODE_SCRIPTS:
        body = scripts.get(script)
        if not isinstance(body, str) or not body.strip():
            continue
        if script == "test" and "no test specified" in body:  # npm init's placeholder
            continue
        name = "npm_" + re.sub(r"[^a-z0-9]+", "_", script.lower()).strip("_")
        kind = "test" if script == "test" else "lint" if script != "build" else "other"
        found.commands[name] = Command(
            f"Run the package.json script {script!r} ({body.strip()[:80]})",
            f"{runner} run {script}",
            kind,
            timeout_s=600 if kind == "test" else 300,
            gate=f"{runner} run {script}" if kind == "test" else "",
        )


def _rust(repo: Path, found: Findings) -> None:
    if not (repo / "Cargo.toml").is_file():
        return
    found.kinds.append("rust")
    found.commands["cargo_test"] = Command(
        "Run the Rust tests (optionally only those whose name contains a filter)",
        "cargo test {filter}",
        "test",
        {"filter": {"type": "string", "required": False, "description": "test name filter"}},
        timeout_s=600,
        gate="cargo test",
    )
    found.commands["cargo_clippy"] = Command(
        "Lint with clippy", "cargo clippy --all-targets -- -D warnings", "lint", timeout_s=600
    )
    found.commands["cargo_fmt_check"] = Command(
        "Check the formatting with rustfmt (changes nothing)", "cargo fmt --check", "lint"
    )


def _go(repo: Path, found: Findings) -> None:
    if not (repo / "go.mod").is_file():
        return
    found.kinds.append("go")
    found.commands["go_test"] = Command(
        "Run the Go tests",
        "go test {packages}",
        "test",
        {"packages": {"type": "string", "default": "./...", "description": "package pattern"}},
        timeout_s=600,
        gate="go test ./...",
    )
    found.commands["go_vet"] = Command("Check the code with go vet", "go vet ./...", "lint")
    found.commands["gofmt_check"] = Command(
        "List files gofmt would change (changes nothing)", "gofmt -l .", "lint"
    )


def _make(repo: Path, found: Findings) -> None:
    path = next(
        (repo / n for n in ("Makefile", "makefile", "GNUmakefile") if (repo / n).is_file()), None
    )
    if path is None:
        return
    targets = []
    for line in _read(path).splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", line)
        if m and m.group(1) in MAKE_TARGETS and m.group(1) not in targets:
            targets.append(m.group(1))
    if not targets:
        return
    found.kinds.append("make")
    for target in targets:
        kind = "test" if target in ("test", "tests", "unit", "integration") else "lint"
        found.commands["make_" + target.replace("-", "_")] = Command(
            f"Run `make {target}` (the Makefile's own target)",
            f"make {target}",
            kind,
            timeout_s=600,
            gate=f"make {target}" if kind == "test" else "",
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def detect(repo: Path) -> Findings:
    found = Findings()
    for probe in (_python, _node, _rust, _go, _make):
        probe(repo, found)
    test_dirs = ("tests", "test", "spec", "__tests__")
    found.has_tests = any((repo / d).is_dir() for d in test_dirs) or any(
        c.kind == "test" for c in found.commands.values()
    )
    found.has_docs = (repo / "docs").is_dir() or any(
        (repo / n).is_file() for n in ("README.md", "README.rst", "README")
    )
    return found


def roles_for(found: Findings) -> list[tuple[str, str]]:
    """(agent name, role): a developer always; a tester when there are tests; a writer
    when there are docs."""
    agents = [("developer", "developer")]
    if found.has_tests:
        agents.append(("tester", "test"))
    if found.has_docs:
        agents.append(("writer", "doc"))
    return agents


def _name(repo: Path) -> str:
    """The project's own name (pyproject, package.json, Cargo.toml, go.mod), else the
    folder's, as a config name ([a-z0-9-]+)."""
    candidates: list[str] = []
    with contextlib.suppress(Exception):
        candidates.append(tomllib.loads(_read(repo / "pyproject.toml"))["project"]["name"])
    with contextlib.suppress(Exception):
        candidates.append(json.loads(_read(repo / "package.json"))["name"].split("/")[-1])
    with contextlib.suppress(Exception):
        candidates.append(tomllib.loads(_read(repo / "Cargo.toml"))["package"]["name"])
    module = re.search(r"^module\s+(\S+)", _read(repo / "go.mod"), re.M)
    if module:
        candidates.append(module.group(1).rstrip("/").split("/")[-1])
    for raw in [*candidates, repo.name]:
        name = re.sub(r"[^a-z0-9]+", "-", str(raw).lower()).strip("-")
        if name:
            return name
    return "swarm"


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a YAML string


def render_config(repo: Path, found: Findings) -> str:
    agents = roles_for(found)
    roles = {role for _, role in agents}
    tests = [name for name, c in found.commands.items() if c.kind == "test"]
    gate = next((c.gate for c in found.commands.values() if c.gate), "")
    lines = [
        f"# Written by `swarm init` for {_name(repo)} ({', '.join(found.kinds) or 'no build files found'}).",
        "# Edit the goal and the tasks, then: swarm validate configs/swarm.yaml",
        "#                                   swarm launch configs/swarm.yaml",
        f"name: {_name(repo)}",
        f"goal: {_q(GOAL_PLACEHOLDER)}",
        "repo: ..                # this config's folder is configs/: the repository is its parent",
        "topology: mesh",
        "model: anthropic/claude-sonnet-5-5",
        "budget: {max_usd: 5, max_tokens: 2000000, max_wall_s: 3600, max_turns: 40}",
    ]
    if gate:
        lines += [
            "# a task's work lands on the run's branch only when the tests pass on the result:",
            f"# merge: {{gate: {_q(gate)}, gate_timeout_s: 900}}",
        ]
    lines.append("agents:")
    lines += [f"  - {{name: {n}, role: {r}}}" for n, r in agents]
    lines += [
        "phases:",
        '  - name: "Phase 1: Implement"',
        "    tasks:",
        "      - id: implement",
        "        title: Implement the goal",
        "        role: developer",
        "        description: " + _q("TODO: what to change, and how to tell it is done."),
    ]
    later = []
    if "test" in roles:
        later += [
            "      - id: test",
            "        title: Test the change",
            "        role: test",
            "        needs: [implement]",
            "        description: "
            + _q(
                "Add tests for the change and run the whole suite"
                + (f" ({', '.join(tests)})" if tests else "")
                + "; report the counts."
            ),
        ]
    if "doc" in roles:
        later += [
            "      - id: document",
            "        title: Document the change",
            "        role: doc",
            "        needs: [implement]",
            "        description: " + _q("Update the README and docs/ to match the change."),
        ]
    if later:
        what = " and ".join(w for w, r in (("Test", "test"), ("document", "doc")) if r in roles)
        lines += [f'  - name: "Phase 2: {what.capitalize()}"', "    tasks:", *later]
    return "\n".join(lines) + "\n"


def render_commands(found: Findings) -> str:
    head = (
        "# Written by `swarm init`: this repository's own test and lint commands, offered to\n"
        "# the agents as tools (docs/extensions.md). Edit freely.\n"
    )
    body = yaml.safe_dump(
        {"commands": {n: c.as_yaml() for n, c in found.commands.items()}},
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    return head + body


@dataclass
class InitResult:
    lines: list[str] = field(default_factory=list)
    changed: int = 0

    def note(self, path: Path, what: str, changed: bool) -> None:
        self.lines.append(f"{what:<10} {path}")
        self.changed += int(changed)


def _put(root: Path, rel: Path, text: str, force: bool, result: InitResult) -> None:
    path = root / rel
    if path.is_file():
        old = _read(path)
        if old == text:
            result.note(rel, "unchanged", False)
            return
        if not force:
            result.note(rel, "kept", False)
            result.lines[-1] += "  (it exists and differs; --force overwrites)"
            return
        path.write_text(text, encoding="utf-8")
        result.note(rel, "replaced", True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    result.note(rel, "wrote", True)


def _gitignore(root: Path, result: InitResult) -> None:
    path = root / ".gitignore"
    text = _read(path)
    have = {ln.strip() for ln in text.splitlines()}
    if have & {".swarm", ".swarm/", "/.swarm", "/.swarm/"}:
        result.note(Path(".gitignore"), "unchanged", False)
        return
    sep = "" if not text or text.endswith("\n") else "\n"
    path.write_text(
        f"{text}{sep}# swarm's state (runs, worktrees, the embedded Redis)\n{IGNORE_LINE}\n"
    )
    result.note(Path(".gitignore"), "updated" if text else "wrote", True)
    result.lines[-1] += f"  (+ {IGNORE_LINE})"


def init_repo(root: Path, force: bool = False) -> InitResult:
    root = root.resolve()
    if not root.is_dir():
        raise BadInput(f"DIR: {root} is not a directory")
    found = detect(root)
    result = InitResult()
    _put(root, CONFIG_FILE, render_config(root, found), force, result)
    for _, role in roles_for(found):
        card = shipped("agents", f"{role}.md")
        _put(root, Path("agents") / card.name, card.read_text(encoding="utf-8"), force, result)
    if found.commands:
        _put(root, COMMANDS_FILE, render_commands(found), force, result)
    else:
        result.lines.append(f"{'skipped':<10} {COMMANDS_FILE}  (no test or lint commands found)")
    _gitignore(root, result)
    return result
