"""Errors the CLI maps to exit codes."""

from __future__ import annotations

from pathlib import Path


class SwarmError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 1


class BadInput(SwarmError):
    """Bad configuration or arguments: exit code 2, nothing is lost."""

    exit_code = 2


class ConfigError(BadInput):
    """A config, role card or script error, located by file, line and field."""

    def __init__(self, file: Path | str, line: int | None, field: str | None, message: str):
        self.file = str(file)
        self.line = line
        self.field = field
        self.message = message
        where = self.file + (f":{line}" if line else "")
        what = f" {field}:" if field else ""
        super().__init__(f"{where}:{what} {message}")
