"""`provider/model` strings to provider clients. Credentials, in this order: the config's
`api_key_env` (when set), the provider's environment variable, the stored credential
(`swarm auth login`; swarm.credentials)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from swarm.errors import BadInput
from swarm.providers.base import Provider
from swarm.providers.pricing import LISTED_MODELS, Price, price_info, unknown_price
from swarm.secrets import register_secret_values

if TYPE_CHECKING:
    from swarm.credentials.resolve import KeySource

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
    configured_key_env: str | None = None  # the config's api_key_env, if it names one

    def key_source(self) -> KeySource:
        """Where the key comes from (swarm.credentials.resolve); names only, in `source`."""
        from swarm.credentials.resolve import find_key

        return find_key(self.provider, self.configured_key_env, DEFAULT_KEY_ENV[self.provider])

    def env_key(self) -> str | None:
        from swarm.credentials.resolve import env_key

        return env_key(self.configured_key_env, DEFAULT_KEY_ENV[self.provider]).value

    @property
    def has_key(self) -> bool:
        return self.key_source().found

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
    explicit = str(conf["api_key_env"]) if conf.get("api_key_env") else None
    key_env = explicit or DEFAULT_KEY_ENV[provider]
    base_url = conf.get("base_url") or os.environ.get(DEFAULT_BASE_URL_ENV[provider]) or None
    return ProviderSettings(provider, str(base_url) if base_url else None, key_env, explicit)


def make_provider(settings: ProviderSettings, api_key: str | None = None) -> Provider:
    """The provider for ``settings``; ``api_key`` (held in memory, as agents get it)
    overrides the key's environment variable."""
    if settings.provider not in IMPLEMENTED:
        raise BadInput(
            f"provider {settings.provider!r} is not available in this version "
            f"(available: {', '.join(IMPLEMENTED)})"
        )
    key = api_key or settings.env_key() or None
    if key is None:
        stored = settings.key_source().credential
        if stored is not None and stored.kind != "api_key":
            from swarm.credentials.provider import token_provider
            from swarm.credentials.refresh import TokenSource

            return token_provider(
                settings.provider, settings.base_url, TokenSource(settings.provider)
            )
        if stored is not None and stored.key:
            key = stored.key
            register_secret_values([key])
    if key is None and settings.key_required:
        raise BadInput(
            f"{settings.provider}: set {settings.api_key_env} or run "
            f"`swarm auth login {settings.provider}` (no API key found)"
        )
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
        source = s.key_source()
        rows.append(
            {
                "provider": provider,
                "implemented": provider in IMPLEMENTED,
                "base_url": s.base_url or "default",
                "key_env": s.api_key_env,
                "key_present": source.found,
                "key_source": source.source or None,  # a name, never the value
                "key_required": s.key_required,
                "models": names,
                "prices": [price_info(f"{provider}/{n}", pricing).describe() for n in names],
                "unknown_price": unknown_price(provider).describe() | {"model": "*"},
            }
        )
    return rows
