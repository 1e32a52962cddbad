"""Credentials: the store (keyring or a 0600 file, under a cross-process lock), OAuth
with PKCE, the GitHub device flow for Copilot, and token renewal shared across processes.
See docs/credentials.md."""

from __future__ import annotations

from swarm.credentials.model import Credential, mask
from swarm.credentials.store import CredentialError, CredentialStore, open_store

__all__ = [
    "Credential",
    "CredentialError",
    "CredentialStore",
    "mask",
    "open_store",
    "stored_secrets",
]


def stored_secrets() -> list[str]:
    """Every value in the store, for redaction (an agent's command may print the file);
    nothing when the store cannot be read (using it then fails with the reason)."""
    try:
        creds = open_store().all()
    except CredentialError:
        return []
    return [v for c in creds.values() for v in c.secrets()]
