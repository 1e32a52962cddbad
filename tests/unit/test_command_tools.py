"""Command tools (tools/commands.yaml): validation errors located by file/line/field, typed
parameters, shell quoting that the model cannot escape, and bash-like execution."""

from __future__ import annotations

import json
import shlex
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from swarm.errors import ConfigError
from swarm.tools.bash import live_spawned_pids
from swarm.tools.builtin import local_context
from swarm.tools.commands import (
    COMMANDS_FILE,
    CommandTool,
    command_tools,
    load_commands,
    parse_template,
)

PY = shlex.quote(sys.executable)
#: Prints its arguments as a JSON list: shows exactly how the shell split the command.
ARGV = f"{PY} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"

EXAMPLE = f"""\
commands:
  run_tests:
    description: Run the test suite (or one path)
    command: "{ARGV} {{verbose}} {{path}} {{count}} {{mode}}"
    params:
      path: {{type: string, description: "file or directory", default: "."}}
      verbose: {{type: boolean, default: false, flag: "-v"}}
      count: {{type: integer, minimum: 1}}
      mode: {{type: string, enum: [fast, full]}}
    timeout_s: 300
    roles: [test, developer]
  note:
    description: Print a note
    command: "{ARGV} {{text}}"
    params:
      text: {{type: string}}
"""


def write_repo(tmp_path: Path, text: str) -> Path:
    path = tmp_path / COMMANDS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return tmp_path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return write_repo(tmp_path, EXAMPLE)


@pytest.fixture
def run_tests(repo: Path) -> CommandTool:
    return command_tools(repo)["run_tests"]


def argv_of(text: str) -> list[Any]:
    """The JSON list printed by ARGV in a tool result."""
    line = next(ln for ln in text.splitlines() if ln.startswith("["))
    result: list[Any] = json.loads(line)
    return result


# ---------------------------------------------------------------- loading errors


BAD_FILES = [
    (  # unknown placeholder
        """\
        commands:
          greet:
            description: Say hi
            command: "echo {name}"
        """,
        4,
        "commands.greet.command",
        "unknown placeholder {name}",
    ),
    (  # a param without a placeholder
        """\
        commands:
          greet:
            description: Say hi
            command: "echo hi"
            params:
              who: {type: string}
        """,
        6,
        "commands.greet.params.who",
        "no placeholder {who}",
    ),
    (  # bad type
        """\
        commands:
          greet:
            description: Say hi
            command: "echo {who}"
            params:
              who:
                type: strng
        """,
        7,
        "commands.greet.params.who.type",
        "Input should be",
    ),
    (  # clash with a built-in tool
        """\
        commands:
          ok: {description: fine, command: "true"}
          bash:
            description: Shadow bash
            command: "true"
        """,
        3,
        "commands.bash",
        "clashes with a built-in tool",
    ),
    (  # clash with a swarm tool
        """\
        commands:
          task_list: {description: x, command: "true"}
        """,
        2,
        "commands.task_list",
        "clashes with a built-in tool",
    ),
    (  # a name the providers refuse
        """\
        commands:
          "bad name!": {description: x, command: "true"}
        """,
        2,
        "commands.bad name!",
        "invalid command name",
    ),
    (  # reserved prefix
        """\
        commands:
          mcp__x__y: {description: x, command: "true"}
        """,
        2,
        "commands.mcp__x__y",
        "reserved for MCP tools",
    ),
    (  # boolean without flag
        """\
        commands:
          t:
            description: x
            command: "pytest {verbose}"
            params:
              verbose: {type: boolean}
        """,
        6,
        "commands.t.params.verbose.flag",
        "needs `flag`",
    ),
    (  # placeholder inside quotes: shlex.quote would not protect it
        """\
        commands:
          t:
            description: x
            command: 'echo "value: {v}"'
            params:
              v: {type: string}
        """,
        4,
        "commands.t.command",
        "inside double quotes",
    ),
    (  # placeholder in a here-document body
        """\
        commands:
          t:
            description: x
            command: "cat <<EOF\\n{v}\\nEOF"
            params:
              v: {type: string}
        """,
        4,
        "commands.t.command",
        "here-document",
    ),
    (  # timeout above the maximum
        """\
        commands:
          t:
            description: x
            command: "true"
            timeout_s: 601
        """,
        5,
        "commands.t.timeout_s",
        "less than or equal to 600",
    ),
    (  # a default outside the enum
        """\
        commands:
          t:
            description: x
            command: "run {mode}"
            params:
              mode: {type: string, enum: [fast, full], default: slow}
        """,
        6,
        "commands.t.params.mode.default",
        "must be one of: fast, full",
    ),
    (  # an unknown key
        """\
        commands:
          t:
            description: x
            command: "true"
            timeout: 5
        """,
        5,
        "commands.t.timeout",
        "unknown field",
    ),
    (  # minimum on a string
        """\
        commands:
          t:
            description: x
            command: "run {p}"
            params:
              p: {type: string, minimum: 1}
        """,
        6,
        "commands.t.params.p.minimum",
        "only for integer or number",
    ),
    (  # bad param name
        """\
        commands:
          t:
            description: x
            command: "run"
            params:
              "1st": {type: string}
        """,
        6,
        "commands.t.params.1st",
        "invalid param name",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD_FILES)
def test_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    repo = write_repo(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        command_tools(repo)
    err = info.value
    assert err.file == str(repo / COMMANDS_FILE)
    assert (err.line, err.field) == (line, field), str(err)
    assert message in err.message, str(err)
    assert str(err).startswith(f"{repo / COMMANDS_FILE}:{line}: {field}:")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    repo = write_repo(tmp_path, "commands:\n  t: {description: x\n  u: 1\n")
    with pytest.raises(ConfigError) as info:
        command_tools(repo)
    assert info.value.line is not None and "invalid YAML" in info.value.message


def test_missing_and_empty_files_give_no_tools(tmp_path: Path) -> None:
    assert command_tools(tmp_path) == {}
    write_repo(tmp_path, "")
    assert command_tools(tmp_path) == {}
    write_repo(tmp_path, "commands:\n")
    assert command_tools(tmp_path) == {}


def test_templates() -> None:
    assert parse_template("awk '{{print $1}}' {f}") == [
        "awk '{print $1}' ",
        parse_template("{f}")[0],
    ]
    parts = parse_template("echo ${HOME} {} {a,b} $(cat {f})")
    assert [p for p in parts if not isinstance(p, str)][0].name == "f"
    assert "".join(p for p in parts if isinstance(p, str)) == "echo ${HOME} {} {a,b} $(cat )"
    with pytest.raises(ValueError, match="single quotes"):
        parse_template("echo '{f}'")


# ---------------------------------------------------------------- schema and roles


def test_schema_offered_to_the_model(run_tests: CommandTool) -> None:
    spec = run_tests.spec()
    assert spec.name == "run_tests"
    assert spec.description.startswith("Run the test suite (or one path)")
    schema = spec.input_schema
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    props = schema["properties"]
    assert props["path"] == {"type": "string", "description": "file or directory", "default": "."}
    assert props["verbose"] == {"type": "boolean", "default": False}
    assert props["count"] == {"type": "integer", "minimum": 1}
    assert props["mode"] == {"type": "string", "enum": ["fast", "full"]}
    assert schema["required"] == ["count", "mode"]
    assert run_tests.timeout_s == 300


def test_roles_filter(repo: Path) -> None:
    assert set(command_tools(repo)) == {"run_tests", "note"}
    assert set(command_tools(repo, "test")) == {"run_tests", "note"}
    assert set(command_tools(repo, "doc")) == {"note"}
    assert set(load_commands(repo / COMMANDS_FILE)) == {"run_tests", "note"}


# ---------------------------------------------------------------- quoting and validation


INJECTIONS = [
    "; rm -rf / #",
    "$(touch pwned)",
    "`touch pwned`",
    "a' ; touch pwned ; '",
    'a" ; touch pwned ; "',
    "two words\nand a newline",
    "*",
    "-rf",
    "",
]


@pytest.mark.parametrize("value", INJECTIONS)
async def test_values_are_one_literal_argument(
    repo: Path, run_tests: CommandTool, value: str
) -> None:
    out = await run_tests({"path": value, "count": 2, "mode": "fast"}, local_context(repo))
    assert not out.is_error, out.text
    assert argv_of(out.text) == [value, "2", "fast"]
    assert "Exit code: 0" in out.text
    assert not (repo / "pwned").exists()


def test_rendered_command(run_tests: CommandTool) -> None:
    cmd = run_tests.render({"path": "; rm -rf / #", "count": 3, "mode": "full"})
    assert cmd == f"{ARGV}  '; rm -rf / #' 3 full"
    assert shlex.split(cmd)[-3:] == ["; rm -rf / #", "3", "full"]


async def test_booleans_insert_their_flag(repo: Path, run_tests: CommandTool) -> None:
    ctx = local_context(repo)
    on = await run_tests({"verbose": True, "count": 1, "mode": "fast"}, ctx)
    off = await run_tests({"verbose": False, "count": 1, "mode": "fast"}, ctx)
    default = await run_tests({"count": 1, "mode": "fast"}, ctx)
    assert argv_of(on.text) == ["-v", ".", "1", "fast"]
    assert argv_of(off.text) == argv_of(default.text) == [".", "1", "fast"]
    assert on.text.startswith(f"$ {ARGV} -v '.' 1 fast") or on.text.startswith(
        f"$ {ARGV} -v . 1 fast"
    )


BAD_ARGS = [
    ({"count": "3", "mode": "fast"}, "count: expected an integer, got a string"),
    ({"count": 0, "mode": "fast"}, "count: must be >= 1, got 0"),
    ({"count": 2.5, "mode": "fast"}, "count: expected an integer, got 2.5"),
    ({"count": True, "mode": "fast"}, "count: expected an integer, got a boolean"),
    ({"count": 1, "mode": "slow"}, "mode: must be one of: fast, full"),
    ({"count": 1}, "mode: required"),
    ({"count": 1, "mode": "fast", "verbose": "yes"}, "verbose: expected true or false"),
    ({"count": 1, "mode": "fast", "path": 7}, "path: expected a string, got a number"),
    ({"count": 1, "mode": "fast", "path": "a\x00b"}, "path: NUL characters are not allowed"),
    ({"count": 1, "mode": "fast", "rm": "-rf"}, "unknown parameter(s) rm"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGS)
async def test_bad_arguments_are_refused(
    repo: Path, run_tests: CommandTool, args: dict[str, Any], message: str
) -> None:
    out = await run_tests(args, local_context(repo))
    assert out.is_error
    assert out.text.startswith("Invalid arguments for run_tests:")
    assert message in out.text, out.text


async def test_integral_float_is_an_integer(repo: Path, run_tests: CommandTool) -> None:
    out = await run_tests({"count": 3.0, "mode": "fast"}, local_context(repo))
    assert argv_of(out.text) == [".", "3", "fast"]


async def test_number_and_pattern(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path,
        f"""\
        commands:
          scale:
            description: x
            command: "{ARGV} {{factor}} {{ref}}"
            params:
              factor: {{type: number, minimum: 0.5, maximum: 2}}
              ref: {{type: string, pattern: "[a-z0-9]+", required: false}}
        """,
    )
    tool = command_tools(repo)["scale"]
    ctx = local_context(repo)
    assert argv_of((await tool({"factor": 1.25}, ctx)).text) == ["1.25"]
    assert argv_of((await tool({"factor": 2, "ref": "main"}, ctx)).text) == ["2", "main"]
    bad = await tool({"factor": 1, "ref": "--output=/etc/x"}, ctx)
    assert bad.is_error and "must match the pattern" in bad.text
    big = await tool({"factor": 3}, ctx)
    assert big.is_error and "must be <= 2" in big.text


# ---------------------------------------------------------------- execution


async def test_exit_code_and_cwd(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path,
        """\
        commands:
          fail:
            description: x
            command: "pwd; exit {code}"
            params:
              code: {type: integer}
        """,
    )
    out = await command_tools(repo)["fail"]({"code": 3}, local_context(repo))
    assert str(repo.resolve()) in out.text
    assert "Exit code: 3" in out.text
    assert out.meta["exit_code"] == 3


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    repo = write_repo(
        tmp_path,
        """\
        commands:
          hang:
            description: Hangs, with a background child
            command: "sleep {n} & echo started; sleep {n}"
            params:
              n: {type: integer}
            timeout_s: 1
        """,
    )
    started = time.monotonic()
    out = await command_tools(repo)["hang"]({"n": 60}, local_context(repo))
    elapsed = time.monotonic() - started
    assert out.is_error
    assert "started" in out.text
    assert "(timed out after 1000 ms)" in out.text
    assert out.meta["timed_out"] is True
    assert elapsed < 8
    assert live_spawned_pids() == []
