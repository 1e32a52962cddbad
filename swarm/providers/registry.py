"""`provider/model` strings to provider clients; credentials from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from swarm.errors import BadInput
from swarm.providers.base import Provider

DEFAULT_KEY_ENV = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "copilot": "GITHUB_COPILOT_TOKEN",
}
DEFAULT_BASE_URL_ENV = {
    "anthropic": "ANTHROPIC_BASE_URL",
    "openai": "OPENAI_BASE_URL",
    "mistral": "MISTRAL_BASE_URL",
    "copilot": "COPILOT_BASE_URL",
}
IMPLEMENTED = ("anthropic",)


@dataclass(frozen=True)
class ProviderSettings:
    provider: str
    base_url: str | None
    api_key_env: str

    @property
    def has_key(self) -> bool:
        return bool(os.environ.get(self.api_key_env))


def settings_for(provider: str, configured: dict[str, dict[str, object]] | None = None
                 ) -> ProviderSettings:
    conf = (configured or {}).get(provider, {})
    key_env = str(conf.get("api_key_env") or DEFAULT_KEY_ENV[provider])
    base_url = conf.get("base_url") or os.environ.get(DEFAULT_BASE_URL_ENV[provider]) or None
    return ProviderSettings(provider, str(base_url) if base_url else None, key_env)


def make_provider(settings: ProviderSettings) -> Provider:
    if settings.provider not in IMPLEMENTED:
        raise BadInput(
            f"provider {settings.provider!r} is not available in this version "
            f"(available: {', '.join(IMPLEMENTED)})"
        )
    key = os.environ.get(settings.api_key_env)
    if not key:
        raise BadInput(f"{settings.provider}: set {settings.api_key_env} (no API key found)")
    from swarm.providers.anthropic_provider import AnthropicProvider

    return AnthropicProvider(api_key=key, base_url=settings.base_url)
