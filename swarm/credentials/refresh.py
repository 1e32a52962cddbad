"""Fresh access tokens for providers, shared by every process of the machine.

A token is renewed ``margin_s`` before it expires, or when the provider rejected it (a
401): under the store's cross-process lock, after reading the store again inside it, so
when ten agents (or several swarms) find the token stale at once one of them renews it
and the others take its token. The renewed credential (with a rotating refresh token) is
written back before anyone uses the new access token. A refresh refused with
``invalid_grant`` reads the store once more before giving up, and never deletes the
credential: another process may just have stored a good one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from swarm.credentials.model import Credential
from swarm.credentials.store import CredentialError, CredentialStore, open_store
from swarm.secrets import register_secret_values

log = logging.getLogger(__name__)
DEFAULT_MARGIN_S = 300.0


class TokenSource:
    """``token()`` (blocking) / ``atoken()`` (async): a valid access token for
    ``provider``'s stored OAuth or GitHub credential."""

    def __init__(
        self,
        provider: str,
        store: CredentialStore | None = None,
        margin_s: float = DEFAULT_MARGIN_S,
    ):
        self.provider = provider
        self.store = store or open_store()
        self.margin_s = margin_s
        self._last: Credential | None = None  # what this source last read or renewed

    def _seen(self, cred: Credential | None) -> Credential | None:
        """Remember ``cred``; its values are redacted from what this process shows."""
        if cred is not None:
            register_secret_values(cred.secrets())
        self._last = cred
        return cred

    def _usable(self, cred: Credential | None, rejected: str | None) -> str | None:
        if cred is None or not cred.access_token or cred.access_token == rejected:
            return None
        if cred.expires_at is not None and cred.expires_at - self._margin(cred) <= time.time():
            return None
        return cred.access_token

    def _margin(self, cred: Credential) -> float:
        """``margin_s``, but at most half the token's lifetime: a token that lives two
        minutes is not renewed on every request."""
        assert cred.expires_at is not None
        lifetime = cred.expires_at - cred.updated_at
        return min(self.margin_s, lifetime / 2) if lifetime > 0 else self.margin_s

    def cached(self) -> str | None:
        """The token this source last saw, if still good (no I/O)."""
        return self._usable(self._last, None)

    def current(self) -> Credential:
        cred = self.store.get(self.provider)
        if cred is None:
            raise CredentialError(
                f"{self.provider}: no stored credential (run `swarm auth login {self.provider}`)"
            )
        return cred

    def token(self, rejected: str | None = None) -> str:
        """``rejected``: the token the provider just refused (a 401): a different one in
        the store is used, the same one is renewed."""
        if rejected is None and (token := self.cached()):  # no store read per request
            return token
        token = self._usable(self._seen(self.store.get(self.provider)), rejected)
        if token:
            return token
        with self.store.lock():
            cred = self.current()  # inside the lock: another process may have renewed it
            self._seen(cred)
            token = self._usable(cred, rejected)
            if token:
                return token
            fresh = self._renew(cred)
            self.store.put(self.provider, fresh)  # stored before anything uses it
            self._seen(fresh)
            log.info("%s: access token renewed", self.provider)
            assert fresh.access_token
            return fresh.access_token

    async def atoken(self, rejected: str | None = None) -> str:
        if rejected is None and (token := self.cached()):
            return token
        return await asyncio.to_thread(self.token, rejected)  # file lock, HTTP: off the loop

    def _renew(self, cred: Credential) -> Credential:
        from swarm.credentials.device import copilot_exchange
        from swarm.credentials.oauth import TokenEndpointError, refresh_tokens

        if cred.kind == "github":
            return copilot_exchange(cred)
        if cred.kind != "oauth":
            raise CredentialError(
                f"{self.provider}: the stored credential is an API key, not a token"
            )
        try:
            return refresh_tokens(cred)
        except TokenEndpointError as exc:
            if exc.error != "invalid_grant":
                raise
            latest = self.store.get(self.provider)  # another writer (not under our lock)?
            if latest is not None and latest.refresh_token != cred.refresh_token:
                usable = self._usable(latest, None)
                if usable:
                    return latest
                return refresh_tokens(latest)
            raise CredentialError(
                f"{self.provider}: the stored refresh token was refused (invalid_grant); "
                f"run `swarm auth login {self.provider} --oauth` again (the stored "
                "credential is kept)"
            ) from None
