"""Command tools: named shell commands declared in the target repo's ``tools/commands.yaml``.

    commands:
      run_tests:
        description: Run the test suite (or one path)
        command: "python3 -m pytest -q {verbose} {path}"
        params:
          path: {type: string, description: "file or directory", default: "."}
          verbose: {type: boolean, default: false, flag: "-v"}
        timeout_s: 300          # default 120, max 600
        roles: [test, developer]  # default: every role

Each declared parameter becomes a typed property of the tool's JSON schema and has one
or more ``{name}`` placeholders in ``command``. The model never writes shell: every value
is validated (type, enum, minimum/maximum, pattern) and inserted shell-quoted
(``shlex.quote``); a boolean inserts its ``flag`` (author-written text) when true and
nothing when false; an omitted optional parameter without default inserts nothing.
Placeholders must stand outside quotes and before any here-document, where quoting
protects them; ``{{`` and ``}}`` are literal braces; ``${VAR}`` is left to the shell.
The command runs through the bash tool, so exactly like it (own process group and PID
namespace, scrubbed environment, timeout kills the group, truncated output, exit code).
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarm.errors import ConfigError
from swarm.tools.base import ToolContext, ToolOutput
from swarm.tools.bash import Bash, BashParams
from swarm.tools.dynamic import DynamicTool
from swarm.tools.names import BUILTIN_TOOL_NAMES, SWARM_TOOL_NAMES
from swarm.yamlsource import Loc, YamlSource

COMMANDS_FILE = Path("tools") / "commands.yaml"
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Names reserved for MCP tools (``mcp__server__tool``).
MCP_PREFIX = "mcp__"
DEFAULT_TIMEOUT_S = 120
MAX_TIMEOUT_S = 600
_SHOWN_COMMAND_CHARS = 500

ParamType = Literal["string", "integer", "number", "boolean"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamSpec(_Strict):
    type: ParamType = "string"
    description: str = ""
    default: Any = None
    required: bool | None = None
    enum: list[Any] | None = Field(default=None, min_length=1)
    minimum: float | None = None
    maximum: float | None = None
    pattern: str | None = None
    flag: str | None = None


class CommandSpec(_Strict):
    description: str = Field(min_length=1)
    command: str = Field(min_length=1)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    timeout_s: int = Field(default=DEFAULT_TIMEOUT_S, ge=1, le=MAX_TIMEOUT_S)
    roles: list[str] | None = None


class CommandsFile(_Strict):
    commands: dict[str, CommandSpec] | None = None


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    name: str
    spec: ParamSpec

    @property
    def has_default(self) -> bool:
        return "default" in self.spec.model_fields_set

    @property
    def required(self) -> bool:
        if self.spec.required is not None:
            return self.spec.required
        return not self.has_default and self.spec.type != "boolean"

    def check(self, value: Any) -> Any:
        """The value, validated and normalised; raises ValueError with a short reason."""
        s = self.spec
        if s.type == "string":
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {_json_type(value)}")
            if "\x00" in value:
                raise ValueError("NUL characters are not allowed")
            if s.pattern is not None and not re.fullmatch(s.pattern, value):
                raise ValueError(f"must match the pattern {s.pattern!r}")
        elif s.type == "boolean":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {_json_type(value)}")
        else:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(
                    f"expected {'an integer' if s.type == 'integer' else 'a number'}, "
                    f"got {_json_type(value)}"
                )
            if not math.isfinite(value):
                raise ValueError("must be a finite number")
            if s.type == "integer":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError(f"expected an integer, got {value}")
                value = int(value)
            if s.minimum is not None and value < s.minimum:
                raise ValueError(f"must be >= {_num(s.minimum)}, got {value}")
            if s.maximum is not None and value > s.maximum:
                raise ValueError(f"must be <= {_num(s.maximum)}, got {value}")
        if s.enum is not None and value not in s.enum:
            choices = ", ".join(str(v) for v in s.enum)
            raise ValueError(f"must be one of: {choices} (got {value!r})")
        return value

    def render(self, value: Any) -> str:
        """Shell text for a checked value (None: omitted)."""
        if value is None:
            return ""
        if self.spec.type == "boolean":
            return (self.spec.flag or "") if value else ""
        return shlex.quote(str(value))

    def schema(self) -> dict[str, Any]:
        s = self.spec
        out: dict[str, Any] = {"type": s.type}
        if s.description:
            out["description"] = s.description
        if s.enum is not None:
            out["enum"] = list(s.enum)
        if s.minimum is not None:
            out["minimum"] = _num(s.minimum)
        if s.maximum is not None:
            out["maximum"] = _num(s.maximum)
        if s.pattern is not None:
            out["pattern"] = s.pattern
        if self.has_default and s.default is not None:
            out["default"] = s.default
        return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


# ---------------------------------------------------------------- templates


@dataclass(frozen=True)
class Placeholder:
    name: str


_TOKEN = re.compile(r"\{\{|\}\}|\$\{|\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_template(template: str) -> list[str | Placeholder]:
    """Split a command template into literal text and placeholders.

    Raises ValueError for a placeholder inside quotes or after a here-document, where
    ``shlex.quote`` would not protect the value.
    """
    parts: list[str | Placeholder] = []
    buf: list[str] = []
    state = "plain"  # plain | single | double
    heredoc = False
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "\\" and state != "single":
            buf.append(template[i : i + 2])
            i += 2
            continue
        if c == "'" and state != "double":
            state = "single" if state == "plain" else "plain"
        elif c == '"' and state != "single":
            state = "double" if state == "plain" else "plain"
        elif state == "plain" and template.startswith("<<", i):
            if not template.startswith("<<<", i):
                heredoc = True
            buf.append(template[i : i + 3] if template.startswith("<<<", i) else "<<")
            i += 3 if template.startswith("<<<", i) else 2
            continue
        m = _TOKEN.match(template, i)
        if m is None:
            buf.append(c)
            i += 1
            continue
        token = m.group(0)
        if token in ("{{", "}}"):
            buf.append(token[0])
            i += 2
        elif token == "${":  # shell parameter expansion: copy it through untouched
            end = template.find("}", i)
            end = n if end < 0 else end + 1
            buf.append(template[i:end])
            i = end
        else:
            name = m.group(1)
            if state != "plain":
                raise ValueError(
                    f"placeholder {{{name}}} is inside {state} quotes; write it without quotes "
                    "(values are shell-quoted for you)"
                )
            if heredoc:
                raise ValueError(
                    f"placeholder {{{name}}} follows a here-document (<<), whose body is not "
                    "shell-quoted; pass the value as an argument instead"
                )
            parts.append("".join(buf))
            buf = []
            parts.append(Placeholder(name))
            i = m.end()
    parts.append("".join(buf))
    return [p for p in parts if p != ""]


# ---------------------------------------------------------------- the tool


class CommandTool(DynamicTool):
    """One declared command: validates the arguments, renders the command, runs it."""

    def __init__(self, name: str, spec: CommandSpec, parts: list[str | Placeholder]) -> None:
        self.params = [Param(n, p) for n, p in spec.params.items()]
        self.parts = parts
        self.timeout_s = spec.timeout_s
        self.roles = list(spec.roles) if spec.roles is not None else None
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {p.name: p.schema() for p in self.params},
            "additionalProperties": False,
        }
        required = [p.name for p in self.params if p.required]
        if required:
            schema["required"] = required
        desc = f"{spec.description.strip()} (runs: {spec.command.strip()})"
        super().__init__(name, desc, schema)

    def offered_to(self, role: str | None) -> bool:
        return role is None or self.roles is None or role in self.roles

    def render(self, args: dict[str, Any]) -> str:
        """The shell command for these arguments; ValueError names the bad argument."""
        by_name = {p.name: p for p in self.params}
        unknown = sorted(set(args) - set(by_name))
        if unknown:
            known = ", ".join(by_name) or "none"
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} (parameters: {known})")
        values: dict[str, Any] = {}
        problems: list[str] = []
        for p in self.params:
            if p.name in args and not (args[p.name] is None and not p.required):
                try:
                    values[p.name] = p.check(args[p.name])
                except ValueError as exc:
                    problems.append(f"{p.name}: {exc}")
            elif p.has_default:
                values[p.name] = p.spec.default
            elif p.spec.type == "boolean":
                values[p.name] = False
            elif p.required:
                problems.append(f"{p.name}: required")
            else:
                values[p.name] = None
        if problems:
            raise ValueError("; ".join(problems))
        out: list[str] = []
        for part in self.parts:
            out.append(
                part if isinstance(part, str) else by_name[part.name].render(values[part.name])
            )
        return "".join(out)

    async def invoke(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        try:
            command = self.render(args)
        except ValueError as exc:
            return ToolOutput.error(f"Invalid arguments for {self.name}: {exc}")
        bash_params = BashParams(
            command=command, timeout=self.timeout_s * 1000, description=self.name
        )
        out = await Bash().run(bash_params, ctx)
        shown = (
            command
            if len(command) <= _SHOWN_COMMAND_CHARS
            else (command[:_SHOWN_COMMAND_CHARS] + " ...")
        )
        out.text = f"$ {shown}\n{out.text}"
        out.meta["command"] = command[:2000]
        out.meta["description"] = self.name
        return out


# ---------------------------------------------------------------- loading


def _reserved_names() -> set[str]:
    return set(BUILTIN_TOOL_NAMES) | set(SWARM_TOOL_NAMES)


def _check_command(src: YamlSource, name: str, spec: CommandSpec) -> CommandTool:
    base: Loc = ("commands", name)
    if not TOOL_NAME_RE.match(name):
        raise src.error(base, f"invalid command name {name!r}: use 1-64 of a-z A-Z 0-9 _ -")
    if name in _reserved_names():
        raise src.error(base, f"command name {name!r} clashes with a built-in tool")
    if name.startswith(MCP_PREFIX):
        raise src.error(
            base, f"command names starting with {MCP_PREFIX!r} are reserved for MCP tools"
        )
    for pname, p in spec.params.items():
        loc = base + ("params", pname)
        _check_param(src, loc, Param(pname, p))
    try:
        parts = parse_template(spec.command)
    except ValueError as exc:
        raise src.error(base + ("command",), str(exc)) from None
    used = {p.name for p in parts if isinstance(p, Placeholder)}
    for used_name in sorted(used - set(spec.params)):
        declared = ", ".join(spec.params) or "none"
        raise src.error(
            base + ("command",),
            f"unknown placeholder {{{used_name}}} (declared params: {declared}; "
            "write {{ and }} for literal braces)",
        )
    for pname in spec.params:
        if pname not in used:
            raise src.error(
                base + ("params", pname),
                f"param {pname!r} has no placeholder {{{pname}}} in command",
            )
    for j, role in enumerate(spec.roles or []):
        if not role.strip():
            raise src.error(base + ("roles", j), "empty role name")
    return CommandTool(name, spec, parts)


def _check_param(src: YamlSource, loc: Loc, param: Param) -> None:
    name, s = param.name, param.spec
    if not PARAM_NAME_RE.match(name):
        raise src.error(
            loc,
            f"invalid param name {name!r}: use a letter or _ then letters, "
            "digits or _ (at most 64)",
        )
    if s.type == "boolean":
        if not s.flag or not s.flag.strip():
            raise src.error(
                loc + ("flag",),
                'a boolean param needs `flag`: the text inserted when it is true (e.g. "-v")',
            )
        if "\x00" in s.flag:
            raise src.error(loc + ("flag",), "NUL characters are not allowed")
    elif s.flag is not None:
        raise src.error(loc + ("flag",), "`flag` is only for boolean params")
    if s.type not in ("integer", "number"):
        for key in ("minimum", "maximum"):
            if getattr(s, key) is not None:
                raise src.error(loc + (key,), f"`{key}` is only for integer or number params")
    elif s.minimum is not None and s.maximum is not None and s.minimum > s.maximum:
        raise src.error(loc + ("minimum",), "minimum is greater than maximum")
    if s.pattern is not None:
        if s.type != "string":
            raise src.error(loc + ("pattern",), "`pattern` is only for string params")
        try:
            re.compile(s.pattern)
        except re.error as exc:
            raise src.error(loc + ("pattern",), f"invalid regular expression: {exc}") from None
    if s.enum is not None:
        if s.type == "boolean":
            raise src.error(loc + ("enum",), "`enum` is not for boolean params")
        plain = Param(name, s.model_copy(update={"enum": None}))
        for k, v in enumerate(s.enum):
            try:
                plain.check(v)
            except ValueError as exc:
                raise src.error(loc + ("enum", k), f"bad enum value {v!r}: {exc}") from None
    if s.required and param.has_default:
        raise src.error(loc + ("required",), "a param with a default cannot be required")
    if param.has_default and not (s.default is None and not param.required):
        try:
            param.check(s.default)
        except ValueError as exc:
            raise src.error(loc + ("default",), f"bad default: {exc}") from None


def load_commands(path: Path) -> dict[str, CommandTool]:
    """Every command of a commands.yaml, validated; ConfigError names file, line and field."""
    src = YamlSource(path)
    if src.data is None:
        return {}
    if not isinstance(src.data, dict):
        raise ConfigError(path, src.line(()), None, "must be a mapping with a `commands:` key")
    try:
        parsed = CommandsFile.model_validate(src.data)
    except ValidationError as exc:
        raise src.from_validation(exc) from None
    return {name: _check_command(src, name, spec) for name, spec in (parsed.commands or {}).items()}


def command_tools(repo: Path, role: str | None = None) -> dict[str, CommandTool]:
    """The command tools of ``<repo>/tools/commands.yaml`` offered to ``role`` (None: all)."""
    path = Path(repo) / COMMANDS_FILE
    if not path.is_file():
        return {}
    return {n: t for n, t in load_commands(path).items() if t.offered_to(role)}
