"""What a stored credential is, and how it is shown (masked, never whole)."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: api_key: a key used as it is. oauth: an access token with its refresh token (PKCE
#: login). github: a GitHub token from the device flow (``key``) and the short-lived
#: Copilot token exchanged for it (``access_token``).
Kind = Literal["api_key", "oauth", "github"]


class Credential(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Kind
    key: str | None = Field(default=None, repr=False)
    access_token: str | None = Field(default=None, repr=False)
    refresh_token: str | None = Field(default=None, repr=False)
    expires_at: float | None = None  # epoch seconds; of access_token
    # where a refresh (or the Copilot exchange) goes: what the login used
    token_url: str | None = None
    client_id: str | None = None
    token_format: Literal["form", "json"] = "form"
    api_base: str | None = None  # Copilot: the API endpoint its token is for
    updated_at: float = Field(default_factory=time.time)

    def secrets(self) -> list[str]:
        return [v for v in (self.key, self.access_token, self.refresh_token) if v]

    def primary(self) -> str:
        """The value `list` masks: the key, else the access token."""
        return self.key or self.access_token or ""

    def expiry_text(self, now: float | None = None) -> str:
        if self.expires_at is None:
            return "-"
        left = self.expires_at - (time.time() if now is None else now)
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.expires_at))
        if left <= 0:
            return f"{stamp} (expired)"
        return f"{stamp} (in {_human(left)})"


def mask(value: str) -> str:
    """Enough to tell two keys apart, never enough to use one: at most the first 4 and the
    last 4 characters, and only of a value long enough that this leaves most of it out."""
    if len(value) < 20:
        return "*" * 8
    return f"{value[:4]}…{value[-4:]}"


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"
