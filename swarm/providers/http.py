"""What every provider client of a process shares: one TLS context. Building one loads
the CA bundle (about 20 ms of CPU); an actor hosting many agents built one per agent."""

from __future__ import annotations

import functools
import ssl

import httpx2  # the HTTP client the openai, anthropic and mistral clients run on


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context the HTTP client would build by default (the CA bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR), built once per process."""
    return httpx2.create_ssl_context()
