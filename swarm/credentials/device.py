"""The OAuth device authorization grant (RFC 8628) as GitHub runs it, and the exchange of
the GitHub token for Copilot's short-lived API token."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from swarm.credentials.model import Credential
from swarm.credentials.oauth import HTTP_TIMEOUT_S, OAuthSettings, TokenEndpointError, _host
from swarm.credentials.store import CredentialError

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_S = 5.0  # RFC 8628 3.5: add 5 seconds to the interval on slow_down


@dataclass(frozen=True)
class DeviceCode:
    user_code: str
    verification_uri: str
    expires_in: float
    interval: float


def device_login(
    settings: OAuthSettings,
    show: Callable[[DeviceCode], None],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    client: httpx.Client | None = None,
) -> Credential:
    """Ask for a device code, ``show`` the user code and where to enter it, poll the token
    endpoint at the server's interval (slower on ``slow_down``) until the user approves,
    refuses, or the code expires. The GitHub token, as a ``github`` credential."""
    own = client is None
    http = client or httpx.Client(timeout=HTTP_TIMEOUT_S)
    try:
        start = _post(
            http,
            settings.device_code_url or "",
            {"client_id": settings.client_id or "", "scope": " ".join(settings.scopes or [])},
        )
        device_code = str(start.get("device_code") or "")
        if not device_code or not start.get("user_code"):
            raise CredentialError(
                f"{_host(settings.device_code_url or '')}: no device code in the answer"
            )
        code = DeviceCode(
            user_code=str(start["user_code"]),
            verification_uri=str(
                start.get("verification_uri") or start.get("verification_url") or ""
            ),
            expires_in=float(start.get("expires_in") or 900),
            # RFC 8628 3.2: 5 seconds when the server names no interval
            interval=max(
                float(start["interval"]) if start.get("interval") is not None else 5.0, 0.0
            ),
        )
        show(code)
        deadline = clock() + code.expires_in
        interval = code.interval
        while True:
            if clock() + interval >= deadline:
                raise CredentialError(
                    "the device code expired before the login was approved; start again"
                )
            sleep(interval)
            answer = _post(
                http,
                settings.token_url or "",
                {
                    "client_id": settings.client_id or "",
                    "device_code": device_code,
                    "grant_type": DEVICE_GRANT,
                },
            )
            token = answer.get("access_token")
            if isinstance(token, str) and token:
                return Credential(kind="github", key=token, token_url=settings.copilot_token_url)
            error = answer.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval += SLOW_DOWN_S
                continue
            if error == "expired_token":
                raise CredentialError(
                    "the device code expired before the login was approved; start again"
                )
            if error == "access_denied":
                raise CredentialError("the login was refused in the browser")
            raise CredentialError(
                f"{_host(settings.token_url or '')}: device login failed ({error or 'no token'})"
            )
    finally:
        if own:
            http.close()


def _post(http: httpx.Client, url: str, body: dict[str, str]) -> dict[str, Any]:
    try:
        resp = http.post(url, data=body, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TokenEndpointError(f"{_host(url)}: request failed: {type(exc).__name__}") from None
    try:
        data = resp.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TokenEndpointError(f"{_host(url)}: HTTP {resp.status_code}, not a JSON answer")
    if resp.status_code >= 400 and "error" not in data:
        raise TokenEndpointError(f"{_host(url)}: HTTP {resp.status_code}")
    return data


def copilot_exchange(cred: Credential, client: httpx.Client | None = None) -> Credential:
    """The Copilot API token for the stored GitHub token (lives about 30 minutes)."""
    from swarm.providers.copilot_provider import COPILOT_HEADERS

    url = cred.token_url or ""
    if not cred.key or not url:
        raise CredentialError(
            "copilot: the stored GitHub login is incomplete; run `swarm auth login copilot`"
        )
    own = client is None
    http = client or httpx.Client(timeout=HTTP_TIMEOUT_S)
    try:
        resp = http.get(
            url,
            headers={
                **COPILOT_HEADERS,
                "Authorization": f"token {cred.key}",
                "Accept": "application/json",
            },
        )
    except httpx.HTTPError as exc:
        raise TokenEndpointError(
            f"{_host(url)}: Copilot token request failed: {type(exc).__name__}"
        ) from None
    finally:
        if own:
            http.close()
    if resp.status_code in (401, 403):
        raise TokenEndpointError(
            f"{_host(url)}: the GitHub login was refused (HTTP {resp.status_code}); "
            "run `swarm auth login copilot` again",
            "invalid_grant",
        )
    try:
        data = resp.json()
    except ValueError:
        data = {}
    token = data.get("token") if isinstance(data, dict) else None
    if resp.status_code >= 400 or not isinstance(token, str):
        raise TokenEndpointError(f"{_host(url)}: no Copilot token (HTTP {resp.status_code})")
    expires_at = data.get("expires_at")
    endpoints = data.get("endpoints")
    api = endpoints.get("api") if isinstance(endpoints, dict) else None
    return cred.model_copy(
        update={
            "access_token": token,
            "expires_at": float(expires_at)
            if isinstance(expires_at, int | float)
            else time.time() + 1500,
            "api_base": api if isinstance(api, str) else cred.api_base,
            "updated_at": time.time(),
        }
    )
