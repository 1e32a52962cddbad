"""The request an official SDK client's `post` would build, worked out once per client
state and reused on every call (both SDKs are Stainless-generated: the same private
hooks). Building it per call (options copied and validated, headers merged, the URL parsed
again) costs as much CPU as the rest of a streaming call; the SDK's headers, auth, URL,
timeout and SNI extension are what `post` would send, byte for byte
(tests/unit/test_provider_bodies.py compares them with the SDK's own request)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

_AUTO = (b"host", b"content-length")  # what a request adds for its own URL and body


@dataclass(frozen=True)
class Prepared:
    """What every request of one client state carries: the SDK's headers, URL and SNI
    extension as `post` makes them, and the request `build_request` makes of them (all
    headers but Host and Content-Length, the URL, the timeout extensions)."""

    state: tuple[Any, ...]
    sdk_headers: httpx2.Headers
    url: httpx2.URL
    sni: dict[str, Any] | None
    headers: httpx2.Headers
    request_url: httpx2.URL
    extensions: dict[str, Any]


class PreparedRequests:
    """The POST requests of one SDK client to one path, with the request options `post`
    is given (``final_options``: the SDK's FinalRequestOptions class)."""

    def __init__(
        self,
        path: str,
        options: Mapping[str, Any],
        final_options: Any,
        platform: Callable[[], Any],
        asyncify: Callable[..., Any],
    ) -> None:
        self.path = path
        self.options = dict(options)
        self._final_options = final_options
        self._platform = platform
        self._asyncify = asyncify
        self._prepared: Prepared | None = None

    async def build(self, client: Any, body: bytes, state: tuple[Any, ...]) -> httpx2.Request:
        """The request for ``body``. ``state``: what the SDK takes headers and URL from
        (key, token, base URL, timeout, custom headers...): a change prepares them again
        (a renewed token set on the client); with cookies stored, `build_request` adds
        them."""
        http = client._client
        state = (client, http, client.timeout, tuple(http.headers.raw), http.params, *state)
        if self._prepared is None or self._prepared.state != state:
            self._prepared = await self._prepare(client, state)
        prepared = self._prepared
        if http.cookies:
            return http.build_request(  # type: ignore[no-any-return]
                "POST",
                prepared.url,
                headers=prepared.sdk_headers,
                content=body,
                timeout=client.timeout,
                extensions=prepared.sni,
            )
        return httpx2.Request(
            "POST",
            prepared.request_url,
            headers=prepared.headers,
            content=body,
            extensions=dict(prepared.extensions),
        )

    async def _prepare(self, client: Any, state: tuple[Any, ...]) -> Prepared:
        if client._platform is None:  # as the SDK's `request` does, off the event loop
            client._platform = await self._asyncify(self._platform)()
        options = await client._prepare_options(
            self._final_options.construct(method="post", url=self.path, content=b"", **self.options)
        )
        sdk_headers = client._build_headers(options, retries_taken=0)
        url = client._prepare_url(options.url)
        sni = {"sni_hostname": url.host.replace("_", "-")} if "_" in url.host else None
        template = client._client.build_request(
            "POST", url, headers=sdk_headers, content=b"", timeout=client.timeout, extensions=sni
        )
        headers = httpx2.Headers(
            [(k, v) for k, v in template.headers.raw if k.lower() not in _AUTO]
        )
        return Prepared(
            state, sdk_headers, url, sni, headers, template.url, dict(template.extensions)
        )
