"""Keeping credentials out of everything agents can see or the swarm stores."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Names of environment variables that hold credentials.
SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY)($|_)|^REDIS_URL$",
    re.IGNORECASE,
)
REDACTED = "[redacted]"
MIN_SECRET_LEN = 8  # shorter values are too likely to occur by chance


_EXTRA_NAMES: set[str] = set()


def register_secret_names(names: list[str] | set[str]) -> None:
    """Variables that hold credentials under names the pattern does not catch (a config's
    `api_key_env: AZURE_OPENAI_KEY`): treated as secrets from now on, in this process."""
    _EXTRA_NAMES.update(names)


def is_secret_name(name: str) -> bool:
    return name in _EXTRA_NAMES or bool(SECRET_NAME.search(name))


def scrubbed_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without credentials, for commands agents run."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not is_secret_name(k)}


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of credential variables, longest first (so overlapping ones redact fully)."""
    source = os.environ if env is None else env
    values = {v for k, v in source.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text
