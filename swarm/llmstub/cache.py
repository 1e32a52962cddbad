"""A model of the providers' prompt caches, so cache figures from the stub mean something.

A request is a prefix (tools and system prompt) followed by its messages. Anthropic caches
the prefix up to each `cache_control` breakpoint of a request and, on a later request,
reads the longest cached prefix that ends at a message boundary (it looks back from each
breakpoint); what lies between that and the request's last breakpoint is written. OpenAI
caches every prefix automatically and reads the longest cached one of at least 1024
tokens; it reports no writes. Sizes are the stub's estimate (JSON characters / 4).
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

OPENAI_MIN_TOKENS = 1024


def _canonical(value: Any) -> bytes:
    return json.dumps(_strip(value), sort_keys=True, ensure_ascii=False).encode()


def _strip(value: Any) -> Any:
    """The value without cache_control marks (they move from turn to turn)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _has_mark(value: Any) -> bool:
    if isinstance(value, dict):
        return "cache_control" in value or any(_has_mark(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_mark(v) for v in value)
    return False


class PromptCache:
    """Prefixes seen so far (digest -> tokens), shared by every conversation of a server."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    def usage(self, provider: str, body: dict[str, Any], total_tokens: int) -> tuple[int, int]:
        """(cache read, cache write) tokens of this request; remembers its prefixes."""
        messages = body.get("messages") or []
        head = {k: body.get(k) for k in ("model", "tools", "system")}
        digest = hashlib.sha256(_canonical(head))
        chars = len(_canonical(head))
        points: list[tuple[bytes, int, bool]] = [
            (digest.digest(), chars, _has_mark(head.get("tools")) or _has_mark(head.get("system")))
        ]
        for m in messages:
            raw = _canonical(m)
            digest.update(raw)
            chars += len(raw)
            points.append((digest.digest(), chars, _has_mark(m)))
        whole = sum(len(_canonical(m)) for m in messages) + len(_canonical(head))
        scale = total_tokens / max(whole, 1)
        with self._lock:
            read_chars = max((c for d, c, _ in points if d in self._seen), default=0)
            if provider == "anthropic":
                marked = [c for _, c, mark in points if mark]
                write_chars = max(max(marked, default=0) - read_chars, 0)
                self._seen.update(d for d, _, mark in points if mark)
            else:
                write_chars = 0
                self._seen.update(d for d, _, _ in points)
        read = int(read_chars * scale)
        if provider != "anthropic" and read < OPENAI_MIN_TOKENS:
            read = 0
        return read, int(write_chars * scale)
