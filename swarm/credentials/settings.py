"""OAuth settings per provider: the presets, and ``providers.<name>.oauth`` in a config
over them. Pydantic only (the config loader imports it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class OAuthSettings(BaseModel):
    """``providers.<name>.oauth`` in a config; unset fields come from the preset."""

    model_config = ConfigDict(extra="forbid")

    client_id: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    redirect_uri: str | None = None
    scopes: list[str] | None = None
    token_format: Literal["form", "json"] | None = None  # how token requests are encoded
    authorize_params: dict[str, str] | None = None  # extra query parameters
    device_code_url: str | None = None  # RFC 8628 device authorization endpoint
    copilot_token_url: str | None = None  # GitHub token -> Copilot token


#: Anthropic's endpoints as the open-source Claude clients use them (authorize on
#: claude.ai, the code shown on the console's callback page and pasted back). Anthropic
#: publishes no OAuth client for third-party tools: set ``client_id`` yourself.
ANTHROPIC_PRESET = OAuthSettings(
    authorize_url="https://claude.ai/oauth/authorize",
    token_url="https://console.anthropic.com/v1/oauth/token",
    redirect_uri="https://console.anthropic.com/oauth/code/callback",
    scopes=["org:create_api_key", "user:profile", "user:inference"],
    token_format="json",
    authorize_params={"code": "true"},
)
#: GitHub's device flow and the Copilot token exchange; ``client_id``: a GitHub OAuth app
#: with the device flow enabled that Copilot accepts.
COPILOT_PRESET = OAuthSettings(
    device_code_url="https://github.com/login/device/code",
    token_url="https://github.com/login/oauth/access_token",
    copilot_token_url="https://api.github.com/copilot_internal/v2/token",
    scopes=["read:user"],
    token_format="form",
)
PRESETS: dict[str, OAuthSettings] = {"anthropic": ANTHROPIC_PRESET, "copilot": COPILOT_PRESET}


def oauth_settings(provider: str, configured: OAuthSettings | None) -> OAuthSettings:
    base = PRESETS.get(provider, OAuthSettings())
    if configured is None:
        return base
    return base.model_copy(update=configured.model_dump(exclude_none=True))
