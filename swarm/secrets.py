"""Keeping credentials out of everything agents can see or the swarm stores."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Collection, Iterator, Mapping

# Names of environment variables that hold credentials.
SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|PRIVATE_KEY)($|_)|^REDIS_URL$",
    re.IGNORECASE,
)
#: Credentials whose names the pattern misses.
KNOWN_SECRET_NAMES = frozenset({"PGPASSWORD", "MYSQL_PWD", "SSHPASS"})
#: Not credentials but handles on the user's own agents and tickets: with one a command
#: could sign in as the user (ssh-agent keys, the GnuPG agent, the session D-Bus with its
#: keyring, a Kerberos ticket cache). Removed from commands' environment unless a config
#: lists them in ``commands.pass_env``. Hygiene: the default socket paths can be guessed.
#: Kept on purpose: GNUPGHOME, XDG_RUNTIME_DIR, DISPLAY (locations, not access; removing
#: them changes which files tools use without keeping them from reading any).
AGENT_ACCESS_NAMES = frozenset(
    {"SSH_AUTH_SOCK", "SSH_AGENT_PID", "GPG_AGENT_INFO", "DBUS_SESSION_BUS_ADDRESS", "KRB5CCNAME"}
)
REDACTED = "[redacted]"
MIN_SECRET_LEN = 8  # shorter values are too likely to occur by chance


_EXTRA_NAMES: set[str] = set()
_EXTRA_VALUES: set[str] = set()


def register_secret_values(values: Collection[str]) -> None:
    """Credentials this process holds in memory rather than in its environment (an
    agent's provider key, the embedded Redis' password): redacted like the others."""
    _EXTRA_VALUES.update(v for v in values if len(v) >= MIN_SECRET_LEN)


@contextlib.contextmanager
def credentials_hidden() -> Iterator[None]:
    """Take the credential variables out of this process's environment for a moment, so
    processes started meanwhile (a local Ray and, through it, every agent actor) never
    hold them; agents get their key in memory instead."""
    hidden = {k: v for k, v in os.environ.items() if is_secret_name(k)}
    for k in hidden:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(hidden)


def register_secret_names(names: list[str] | set[str]) -> None:
    """Variables that hold credentials under names the pattern does not catch (a config's
    `api_key_env: AZURE_OPENAI_KEY`): treated as secrets from now on, in this process."""
    _EXTRA_NAMES.update(names)


def is_secret_name(name: str) -> bool:
    return name in _EXTRA_NAMES or name in KNOWN_SECRET_NAMES or bool(SECRET_NAME.search(name))


def scrubbed_env(
    env: Mapping[str, str] | None = None, allow: Collection[str] = ()
) -> dict[str, str]:
    """The environment for commands agents run: without credentials (never, whatever
    ``allow`` says) and without the agent handles of :data:`AGENT_ACCESS_NAMES` unless
    named in ``allow`` (a config's ``commands.pass_env``)."""
    source = os.environ if env is None else env
    return {
        k: v
        for k, v in source.items()
        if not is_secret_name(k) and (k not in AGENT_ACCESS_NAMES or k in allow)
    }


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of credential variables, longest first (so overlapping ones redact fully)."""
    if env is not None:
        return _secret_values(env, set())
    # this process's credentials, also those it holds in memory; the agent loop asks on
    # every tool result, so the answer is kept until the environment or the registered
    # names and values change (comparing the raw environment costs ~2 us, the scan ~50)
    global _SECRETS_SEEN
    key = (
        tuple(getattr(os.environ, "_data", os.environ).items()),
        frozenset(_EXTRA_NAMES),
        frozenset(_EXTRA_VALUES),
    )
    if _SECRETS_SEEN is None or _SECRETS_SEEN[0] != key:
        _SECRETS_SEEN = (key, _secret_values(os.environ, _EXTRA_VALUES))
    return list(_SECRETS_SEEN[1])


_SECRETS_SEEN: tuple[object, list[str]] | None = None


def _secret_values(source: Mapping[str, str], extra: set[str]) -> list[str]:
    values = {v for k, v in source.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LEN}
    return sorted(values | extra, key=len, reverse=True)


def redact(text: str, values: list[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text
