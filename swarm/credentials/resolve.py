"""Which credential a provider uses, in this order: the config's ``api_key_env`` (when
that variable is set), the provider's own environment variable, the stored credential.
Only the source's name is ever shown."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from swarm.credentials.model import Credential


@dataclass(frozen=True)
class KeySource:
    source: str  # "config api_key_env MY_KEY", "env ANTHROPIC_API_KEY", "stored: file ...", ""
    value: str | None = field(default=None, repr=False)  # an environment variable's value
    credential: Credential | None = field(default=None, repr=False)

    @property
    def found(self) -> bool:
        return bool(self.value) or self.credential is not None


def env_key(configured_env: str | None, default_env: str) -> KeySource:
    if configured_env and os.environ.get(configured_env):
        return KeySource(f"config api_key_env {configured_env}", os.environ[configured_env])
    if os.environ.get(default_env):
        return KeySource(f"env {default_env}", os.environ[default_env])
    return KeySource("")


def find_key(provider: str, configured_env: str | None, default_env: str) -> KeySource:
    found = env_key(configured_env, default_env)
    if found.found:
        return found
    from swarm.credentials.store import open_store

    store = open_store()
    cred = store.get(provider)
    if cred is None:
        return KeySource("")
    return KeySource(f"stored ({cred.kind}, {store.where})", credential=cred)
