"""`provider/model` strings to provider clients; credentials from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from swarm.errors import BadInput
from swarm.providers.base import Provider
from swarm.providers.pricing import LISTED_MODELS, Price, price_info, unknown_price

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
IMPLEMENTED = ("anthropic", "openai", "mistral", "copilot")


@dataclass(frozen=True)
class ProviderSettings:
    provider: str
    base_url: str | None
    api_key_env: str

    @property
    def has_key(self) -> bool:
        return bool(os.environ.get(self.api_key_env))

    @property
    def key_required(self) -> bool:
        """An OpenAI-compatible server at a custom base URL (Ollama, vLLM, llama.cpp) may
        need no key; every hosted API does."""
        return not (self.provider == "openai" and self.base_url)


def settings_for(
    provider: str, configured: dict[str, dict[str, object]] | None = None
) -> ProviderSettings:
    if provider not in DEFAULT_KEY_ENV:
        raise BadInput(f"unknown provider {provider!r} (known: {', '.join(DEFAULT_KEY_ENV)})")
    conf = (configured or {}).get(provider, {})
    key_env = str(conf.get("api_key_env") or DEFAULT_KEY_ENV[provider])
    base_url = conf.get("base_url") or os.environ.get(DEFAULT_BASE_URL_ENV[provider]) or None
    return ProviderSettings(provider, str(base_url) if base_url else None, key_env)


def make_provider(settings: ProviderSettings, api_key: str | None = None) -> Provider:
    """The provider for ``settings``; ``api_key`` (held in memory, as agents get it)
    overrides the key's environment variable."""
    if settings.provider not in IMPLEMENTED:
        raise BadInput(
            f"provider {settings.provider!r} is not available in this version "
            f"(available: {', '.join(IMPLEMENTED)})"
        )
    key = api_key or os.environ.get(settings.api_key_env) or None
    if key is None and settings.key_required:
        raise BadInput(f"{settings.provider}: set {settings.api_key_env} (no API key found)")
    if settings.provider == "anthropic":
        from swarm.providers.anthropic_provider import AnthropicProvider

        assert key is not None
        return AnthropicProvider(api_key=key, base_url=settings.base_url)
    if settings.provider == "openai":
        from swarm.providers.openai_provider import OpenAIProvider

        return OpenAIProvider(api_key=key, base_url=settings.base_url)
    if settings.provider == "mistral":
        from swarm.providers.mistral_provider import MistralProvider

        return MistralProvider(api_key=key, base_url=settings.base_url)
    from swarm.providers.copilot_provider import CopilotProvider

    return CopilotProvider(token=key, base_url=settings.base_url)


def describe_models(
    configured: dict[str, dict[str, object]] | None = None,
    models: list[str] | tuple[str, ...] = (),
    pricing: dict[str, Price] | None = None,
) -> list[dict[str, Any]]:
    """One row per provider for `swarm models`: base URL (or "default"), the key's environment
    variable and whether it is set (never the key), and models with the price each gets and
    where it comes from (swarm.providers.pricing): the well-known ones, then ``models``
    (``provider/model``, e.g. those a config names), then what any other model is charged."""
    rows: list[dict[str, Any]] = []
    for provider in DEFAULT_KEY_ENV:
        s = settings_for(provider, configured)
        names = list(LISTED_MODELS.get(provider, ()))
        for full in [*models, *(pricing or {})]:
            p, _, name = full.partition("/")
            if p == provider and name and name not in names:
                names.append(name)
        rows.append(
            {
                "provider": provider,
                "implemented": provider in IMPLEMENTED,
                "base_url": s.base_url or "default",
                "key_env": s.api_key_env,
                "key_present": s.has_key,
                "key_required": s.key_required,
                "models": names,
                "prices": [price_info(f"{provider}/{n}", pricing).describe() for n in names],
                "unknown_price": unknown_price(provider).describe() | {"model": "*"},
            }
        )
    return rows
