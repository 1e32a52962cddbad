"""Providers on a stored OAuth or GitHub login: a fresh token before each request, and
one renewal and retry when the provider answers 401."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from swarm.credentials.refresh import TokenSource
from swarm.providers.base import Provider, ProviderError
from swarm.providers.types import Message, ModelResponse, RequestOptions, ToolSpec
from swarm.secrets import register_secret_values

ANTHROPIC_OAUTH_BETA = "oauth-2025-04-20"  # what Anthropic's API asks of OAuth bearer tokens


class TokenProvider:
    """Wraps a provider; ``apply`` puts a token on its SDK client (read per request)."""

    def __init__(self, inner: Any, source: TokenSource, apply: Callable[[Any, str], None]):
        self.inner = inner
        self.source = source
        self.apply = apply
        self.name = inner.name
        self._token = ""

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)

    async def _use(self, rejected: str | None = None) -> None:
        token = await self.source.atoken(rejected)
        if token != self._token:
            register_secret_values([token])
            self.apply(self.inner, token)
            self._token = token

    async def complete(
        self,
        *,
        model: str,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
        options: RequestOptions | None = None,
    ) -> ModelResponse:
        await self._use()
        args: dict[str, Any] = dict(
            model=model,
            system=system,
            messages=messages,
            tools=tools,
            max_tokens=max_tokens,
            options=options,
        )
        try:
            return await self.inner.complete(**args)  # type: ignore[no-any-return]
        except ProviderError as exc:
            if exc.status != 401:
                raise
        await self._use(rejected=self._token)  # renewed (or another process's newer one)
        return await self.inner.complete(**args)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.inner.aclose()


def apply_openai_key(p: Any, token: str) -> None:
    p.client.api_key = token


def token_provider(provider: str, base_url: str | None, source: TokenSource) -> Provider:
    """The provider for a stored token credential (no request made yet: the first
    ``complete`` gets the token, renewing it if it must)."""
    cred = source.current()
    if provider == "anthropic" and cred.kind == "oauth":
        from swarm.providers.anthropic_provider import AnthropicProvider

        inner: Any = AnthropicProvider(
            api_key=None,
            auth_token="pending",
            base_url=base_url,
            default_headers={"anthropic-beta": ANTHROPIC_OAUTH_BETA},
        )

        def apply(p: Any, token: str) -> None:
            p.client.auth_token = token

        return TokenProvider(inner, source, apply)
    if provider == "copilot" and cred.kind == "github":
        from swarm.providers.copilot_provider import CopilotProvider

        inner = CopilotProvider(token="pending", base_url=base_url or cred.api_base)
        return TokenProvider(inner, source, apply_openai_key)
    if provider == "openai" and cred.kind == "oauth":  # a bearer token where the key goes
        from swarm.providers.openai_provider import OpenAIProvider

        inner = OpenAIProvider(api_key="pending", base_url=base_url)
        return TokenProvider(inner, source, apply_openai_key)
    from swarm.credentials.store import CredentialError

    raise CredentialError(f"{provider}: a stored {cred.kind} credential cannot be used for it")
