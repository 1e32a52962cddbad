"""The ``tools/mcp.yaml`` format (light: no MCP SDK import; the bridge is mcp_bridge.py).

servers:
  calc:
    command: python3          # a relative path with a / resolves against the repo root
    args: [mcp_calc.py]       # the server's cwd is the repo root
    env: {TOKEN: "${CALC_TOKEN}"}   # ${VAR} / ${VAR:-default} from the environment
    timeout_s: 30             # per call (default 30)
    startup_timeout_s: 15     # start + initialize + list tools (default 15)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from swarm.errors import ConfigError
from swarm.yamlsource import YamlSource

MCP_FILE = Path("tools") / "mcp.yaml"
#: ``mcp:<server>`` in a tools list selects every tool of that server.
TOOL_ENTRY_PREFIX = "mcp:"
#: Server names: no ``__`` (it separates the parts of ``mcp__server__tool``).
SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_)){0,31}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class McpServerConfig(_Strict):
    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    startup_timeout_s: float = Field(default=15.0, gt=0, le=600)


class McpFile(_Strict):
    servers: dict[str, McpServerConfig] | None = None


def load_mcp_config(path: Path) -> dict[str, McpServerConfig]:
    """The servers of an mcp.yaml, validated; ConfigError names file, line and field."""
    src = YamlSource(path)
    if src.data is None:
        return {}
    if not isinstance(src.data, dict):
        raise ConfigError(path, src.line(()), None, "must be a mapping with a `servers:` key")
    try:
        parsed = McpFile.model_validate(src.data)
    except ValidationError as exc:
        raise src.from_validation(exc) from None
    servers = parsed.servers or {}
    for name in servers:
        if not SERVER_NAME_RE.match(name):
            raise src.error(
                ("servers", name),
                f"invalid server name {name!r}: use 1-32 of "
                "a-z A-Z 0-9 - _ (no '__', not starting with _ or -)",
            )
    return servers


def expand_env(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``; a missing VAR without default is a KeyError."""
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        if m.group(1) in env:
            return env[m.group(1)]
        if m.group(2) is not None:
            return m.group(2)
        raise KeyError(m.group(1))

    return _ENV_REF.sub(sub, value)


def mcp_servers_in(tool_names: list[str]) -> list[str]:
    """Server names of the ``mcp:<server>`` entries of a tools list."""
    return [t[len(TOOL_ENTRY_PREFIX) :] for t in tool_names if t.startswith(TOOL_ENTRY_PREFIX)]


def is_mcp_entry(tool_name: str) -> bool:
    """Whether a tools-list entry is ``mcp:<server>`` with a valid server name."""
    return tool_name.startswith(TOOL_ENTRY_PREFIX) and bool(
        SERVER_NAME_RE.match(tool_name[len(TOOL_ENTRY_PREFIX) :])
    )
