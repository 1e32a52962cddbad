"""OAuth 2.0: settings per provider (presets, overridable in config), the authorization
code flow with PKCE (RFC 7636, S256) for a pasted code, and the token requests.

API keys are the primary, supported route. OAuth logins to a consumer subscription may
not be allowed for third-party tools under the provider's terms (docs/credentials.md).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import httpx

from swarm.credentials.model import Credential
from swarm.credentials.settings import OAuthSettings
from swarm.credentials.store import CredentialError

HTTP_TIMEOUT_S = 30.0


def require(settings: OAuthSettings, provider: str, *names: str) -> None:
    missing = [n for n in names if not getattr(settings, n)]
    if missing:
        raise CredentialError(
            f"providers.{provider}.oauth: set {', '.join(missing)} (in the file given with "
            "--config; docs/credentials.md)"
        )


# --- PKCE -------------------------------------------------------------------------------


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class PkceLogin:
    """One login attempt: the verifier stays here; ``state`` is independent of it."""

    provider: str
    settings: OAuthSettings
    verifier: str = field(default_factory=lambda: secrets.token_urlsafe(64), repr=False)
    state: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def url(self) -> str:
        s = self.settings
        query: dict[str, str] = {
            **(s.authorize_params or {}),
            "client_id": s.client_id or "",
            "response_type": "code",
            "redirect_uri": s.redirect_uri or "",
            "scope": " ".join(s.scopes or []),
            "code_challenge": code_challenge(self.verifier),
            "code_challenge_method": "S256",
            "state": self.state,
        }
        return f"{s.authorize_url}?{urlencode(query)}"

    def parse_pasted(self, pasted: str) -> str:
        """The code from what the user pasted: ``code``, ``code#state`` or the whole
        redirect URL. A state that is not this attempt's is refused."""
        text = pasted.strip()
        if not text:
            raise CredentialError("no authorization code given")
        state: str | None = None
        if text.startswith(("http://", "https://")):
            q = parse_qs(urlparse(text).query)
            code = (q.get("code") or [""])[0]
            states = q.get("state")
            state = states[0] if states else None
        else:
            code, sep, rest = text.partition("#")
            state = rest if sep else None
        if not code:
            raise CredentialError("no authorization code in what was pasted")
        if state is not None and not secrets.compare_digest(state, self.state):
            raise CredentialError(
                "the pasted code is for another login attempt (state does not match); "
                "start `swarm auth login` again"
            )
        return code

    def exchange(self, pasted: str, client: httpx.Client | None = None) -> Credential:
        code = self.parse_pasted(pasted)
        s = self.settings
        body = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": s.redirect_uri or "",
            "client_id": s.client_id or "",
            "code_verifier": self.verifier,
            "state": self.state,
        }
        tokens = token_request(s.token_url or "", body, s.token_format or "form", client)
        return credential_from_tokens(tokens, s.token_url or "", s.client_id or "", s.token_format)


# --- token endpoint ---------------------------------------------------------------------


class TokenEndpointError(CredentialError):
    def __init__(self, message: str, error: str = ""):
        super().__init__(message)
        self.error = error


def token_request(
    url: str, body: dict[str, str], fmt: str, client: httpx.Client | None = None
) -> dict[str, Any]:
    """POST to a token endpoint; the JSON answer, or TokenEndpointError with the OAuth
    ``error`` code (never the request's or the answer's secrets)."""
    own = client is None
    http = client or httpx.Client(timeout=HTTP_TIMEOUT_S)
    try:
        kwargs: dict[str, Any] = {"json": body} if fmt == "json" else {"data": body}
        resp = http.post(url, headers={"Accept": "application/json"}, **kwargs)
    except httpx.HTTPError as exc:
        raise TokenEndpointError(
            f"{_host(url)}: token request failed: {type(exc).__name__}"
        ) from None
    finally:
        if own:
            http.close()
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if resp.status_code >= 400 or "error" in data:
        error = str(data.get("error", "")) if isinstance(data.get("error"), str) else ""
        raise TokenEndpointError(
            f"{_host(url)}: token request refused (HTTP {resp.status_code}"
            + (f", {error}" if error else "")
            + ")",
            error,
        )
    if not isinstance(data.get("access_token"), str):
        raise TokenEndpointError(f"{_host(url)}: token answer without an access_token")
    return data


def credential_from_tokens(
    tokens: dict[str, Any],
    token_url: str,
    client_id: str,
    fmt: str | None,
    previous: Credential | None = None,
) -> Credential:
    expires_in = tokens.get("expires_in")
    refresh = tokens.get("refresh_token")
    return Credential(
        kind="oauth",
        access_token=tokens["access_token"],
        # a server that does not rotate sends no new refresh token: keep the old one
        refresh_token=refresh
        if isinstance(refresh, str) and refresh
        else (previous.refresh_token if previous else None),
        expires_at=time.time() + float(expires_in) if isinstance(expires_in, int | float) else None,
        token_url=token_url,
        client_id=client_id,
        token_format="json" if fmt == "json" else "form",
    )


def refresh_tokens(cred: Credential, client: httpx.Client | None = None) -> Credential:
    if not cred.refresh_token or not cred.token_url:
        raise CredentialError("the stored OAuth credential has no refresh token; log in again")
    body = {
        "grant_type": "refresh_token",
        "refresh_token": cred.refresh_token,
        "client_id": cred.client_id or "",
    }
    tokens = token_request(cred.token_url, body, cred.token_format, client)
    return credential_from_tokens(
        tokens, cred.token_url, cred.client_id or "", cred.token_format, cred
    )


def _host(url: str) -> str:
    return urlparse(url).netloc or url
