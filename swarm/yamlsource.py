"""YAML loading that remembers the line of every value, for errors that point at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from swarm.errors import ConfigError

Loc = tuple[str | int, ...]


class YamlSource:
    """Parsed YAML plus a map from a value's path (('agents', 2, 'role')) to its line."""

    def __init__(self, path: Path, text: str | None = None):
        self.path = path
        if text is None:
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(path, None, None, "file not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(path, None, None, f"cannot read: {exc}") from None
        self.lines: dict[Loc, int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise ConfigError(path, line, None, f"invalid YAML: {exc.problem or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(path, None, None, f"invalid YAML: {exc}") from None
        self._expanded = 0
        if node is not None:
            self._walk(node, (), ())

    MAX_NODES = 100_000  # a config is small; anchors that expand past this are a bomb

    def _walk(self, node: yaml.Node, loc: Loc, parents: tuple[int, ...]) -> None:
        """Record the line of every value; refuse recursive aliases and alias bombs
        (either would otherwise hang or crash validation later)."""
        if id(node) in parents:
            raise ConfigError(
                self.path,
                node.start_mark.line + 1,
                self.field(loc) or None,
                "recursive YAML alias (an anchor used inside itself)",
            )
        self._expanded += 1
        if self._expanded > self.MAX_NODES:
            raise ConfigError(
                self.path,
                node.start_mark.line + 1,
                self.field(loc) or None,
                f"YAML aliases expand to more than {self.MAX_NODES} values",
            )
        parents = parents + (id(node),)
        self.lines[loc] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    raise ConfigError(
                        self.path,
                        key_node.start_mark.line + 1,
                        self.field(loc + (key,)),
                        "duplicate key",
                    )
                seen.add(key)
                self._walk(value_node, loc + (key,), parents)
                self.lines[loc + (key,)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, loc + (i,), parents)

    def line(self, loc: Loc) -> int | None:
        """Line of the value at `loc`, or of its nearest ancestor that exists."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get(())

    @staticmethod
    def field(loc: Loc) -> str:
        out = ""
        for part in loc:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out

    def error(self, loc: Loc, message: str) -> ConfigError:
        return ConfigError(self.path, self.line(loc), self.field(loc) or None, message)

    def from_validation(self, exc: ValidationError) -> ConfigError:
        """The first pydantic error, located."""
        err = exc.errors()[0]
        loc: Loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "field required"
        extra = len(exc.errors()) - 1
        if extra:
            msg += f" (and {extra} more error{'s' if extra > 1 else ''})"
        return self.error(loc, msg)
