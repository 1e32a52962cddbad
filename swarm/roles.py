"""Role cards: agents/NAME.md with YAML front matter (the Claude Code sub-agent shape)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from swarm.errors import ConfigError
from swarm.paths import data_dirs
from swarm.yamlsource import YamlSource


class RoleCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    tools: list[str] = Field(default_factory=list)
    model: str | None = None
    permissions: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    prompt: str = ""
    source: str = ""

    @field_validator("tools", mode="before")
    @classmethod
    def _split_tools(cls, v: object) -> object:
        if isinstance(v, str):  # Claude Code cards write "tools: Read, Grep"
            return [t.strip().lower() for t in v.split(",") if t.strip()]
        return v


def parse_role_card(path: Path) -> RoleCard:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise ConfigError(path, 1, None, "role card must start with YAML front matter (---)")
    end = text.find("\n---", 3)
    if end < 0:
        raise ConfigError(path, 1, None, "front matter is not closed by a line '---'")
    front = text[3:end]
    body = text[end + 4 :].lstrip("\n")
    src = YamlSource(path, front)  # front starts after '---', so its line numbers are the file's
    if not isinstance(src.data, dict):
        raise ConfigError(path, 1, None, "front matter must be a mapping")
    try:
        card = RoleCard.model_validate({**src.data, "prompt": body, "source": str(path)})
    except ValidationError as exc:
        raise src.from_validation(exc) from None
    return card


def load_roles(near: Path | None = None) -> dict[str, RoleCard]:
    """All role cards visible from `near`; cards beside the config override shipped ones."""
    roles: dict[str, RoleCard] = {}
    for folder in reversed(data_dirs("agents", near)):
        for path in sorted(folder.glob("*.md")):
            if path.name.lower() == "readme.md":
                continue
            card = parse_role_card(path)
            roles[card.name] = card
    return roles
