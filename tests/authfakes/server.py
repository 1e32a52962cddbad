"""A real HTTP server (http.server in a thread) playing an OAuth authorization server
(PKCE authorization code, rotating refresh tokens), a GitHub-style device flow, the
Copilot token exchange, and an Anthropic Messages endpoint that checks bearer tokens.

It records what reached it, so tests can count refresh requests and catch a refresh
token used twice."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

CLIENT_ID = "swarm-test-client"
REDIRECT_URI = "http://127.0.0.1/callback"


@dataclass
class FakeState:
    access_ttl_s: float = 3600.0
    refresh_delay_s: float = 0.0  # hold each refresh this long (to make racers overlap)
    rotate: bool = True
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    valid_refresh: set[str] = field(default_factory=set)
    used_refresh: list[str] = field(default_factory=list)
    reused_refresh: list[str] = field(default_factory=list)
    valid_access: set[str] = field(default_factory=set)
    refresh_requests: int = 0
    exchange_requests: list[dict[str, str]] = field(default_factory=list)
    # device flow: the answers to successive polls ("pending", "slow_down", "token", ...)
    device_script: list[str] = field(default_factory=list)
    device_interval: float = 1.0
    device_expires_in: float = 900.0
    device_polls: list[float] = field(default_factory=list)
    github_tokens: set[str] = field(default_factory=set)
    copilot_requests: int = 0
    copilot_ttl_s: float = 1500.0
    messages_auth: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self.valid_access.add(access)
        self.valid_refresh.add(refresh)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.access_ttl_s,
            "token_type": "Bearer",
        }


def _challenge(verifier: str) -> str:
    return (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> dict[str, str]:
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n).decode() if n else ""
        if self.headers.get("content-type", "").startswith("application/json"):
            return {k: str(v) for k, v in (json.loads(raw) if raw else {}).items()}
        return {k: v[0] for k, v in parse_qs(raw).items()}

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        st = self.server.state
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/authorize":
            if q.get("code_challenge_method") != "S256" or q.get("client_id") != CLIENT_ID:
                return self._json(400, {"error": "invalid_request"})
            code = "code-" + secrets.token_urlsafe(12)
            with st.lock:
                st.codes[code] = {
                    "challenge": q.get("code_challenge", ""),
                    "redirect_uri": q.get("redirect_uri", ""),
                }
            text = f"{code}#{q.get('state', '')}".encode()  # what the callback page shows
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        if url.path == "/copilot/token":
            auth = self.headers.get("authorization", "")
            with st.lock:
                st.copilot_requests += 1
                ok = auth.startswith("token ") and auth[6:] in st.github_tokens
                if ok:
                    token = "cop-" + secrets.token_urlsafe(16)
                    st.valid_access.add(token)
            if not ok:
                return self._json(401, {"message": "Bad credentials"})
            base = f"http://127.0.0.1:{self.server.server_address[1]}/copilot-api"
            return self._json(
                200,
                {
                    "token": token,
                    "expires_at": int(time.time() + st.copilot_ttl_s),
                    "refresh_in": int(st.copilot_ttl_s) - 60,
                    "endpoints": {"api": base},
                },
            )
        self._json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        st = self.server.state
        path = urlparse(self.path).path
        if path == "/v1/messages":
            return self._messages()
        body = self._body()
        if path == "/token":
            return self._token(st, body)
        if path == "/device/code":
            return self._json(
                200,
                {
                    "device_code": "dev-" + secrets.token_urlsafe(8),
                    "user_code": "WDJB-MJHT",
                    "verification_uri": f"http://127.0.0.1:{self.server.server_address[1]}/device",
                    "expires_in": st.device_expires_in,
                    "interval": st.device_interval,
                },
            )
        if path == "/device/token":
            with st.lock:
                st.device_polls.append(time.monotonic())
                answer = st.device_script.pop(0) if st.device_script else "authorization_pending"
            if answer == "token":
                gh = "gho_" + secrets.token_urlsafe(20)
                with st.lock:
                    st.github_tokens.add(gh)
                return self._json(
                    200, {"access_token": gh, "token_type": "bearer", "scope": "read:user"}
                )
            return self._json(200, {"error": answer})
        self._json(404, {"error": "not_found"})

    def _token(self, st: FakeState, body: dict[str, str]) -> None:
        grant = body.get("grant_type")
        if body.get("client_id") != CLIENT_ID:
            return self._json(401, {"error": "invalid_client"})
        if grant == "authorization_code":
            with st.lock:
                st.exchange_requests.append(dict(body))
                entry = st.codes.pop(body.get("code", ""), None)
            if entry is None or _challenge(body.get("code_verifier", "")) != entry["challenge"]:
                return self._json(400, {"error": "invalid_grant"})
            if body.get("redirect_uri") != entry["redirect_uri"]:
                return self._json(400, {"error": "invalid_grant"})
            with st.lock:
                return self._json(200, st.issue())
        if grant == "refresh_token":
            token = body.get("refresh_token", "")
            with st.lock:
                st.refresh_requests += 1
                if token in st.used_refresh:
                    st.reused_refresh.append(token)
                st.used_refresh.append(token)
                valid = token in st.valid_refresh
                if valid and st.rotate:
                    st.valid_refresh.discard(token)
            if st.refresh_delay_s:
                time.sleep(st.refresh_delay_s)
            if not valid:
                return self._json(400, {"error": "invalid_grant"})
            with st.lock:
                issued = st.issue()
            if not st.rotate:
                issued.pop("refresh_token")
            return self._json(200, issued)
        self._json(400, {"error": "unsupported_grant_type"})

    def _messages(self) -> None:
        st = self.server.state
        n = int(self.headers.get("content-length") or 0)
        self.rfile.read(n)
        auth = self.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with st.lock:
            st.messages_auth.append(self.headers.get("anthropic-beta", ""))
            ok = token in st.valid_access
        if not ok:
            return self._json(
                401,
                {
                    "type": "error",
                    "error": {"type": "authentication_error", "message": "invalid bearer token"},
                },
            )
        events = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_1",
                        "type": "message",
                        "role": "assistant",
                        "model": "claude-test",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": 3, "output_tokens": 0},
                    },
                },
            ),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "hello"},
                },
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 1},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        data = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState


class FakeAuthServer:
    def __init__(self, state: FakeState | None = None):
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.state = state or FakeState()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def state(self) -> FakeState:
        return self.httpd.state

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def oauth_yaml(self, provider: str = "anthropic") -> str:
        """A config file's ``providers.<provider>.oauth`` pointing at this server."""
        return json.dumps(
            {
                "providers": {
                    provider: {
                        "oauth": {
                            "client_id": CLIENT_ID,
                            "authorize_url": f"{self.url}/authorize",
                            "token_url": f"{self.url}/token"
                            if provider != "copilot"
                            else f"{self.url}/device/token",
                            "redirect_uri": REDIRECT_URI,
                            "device_code_url": f"{self.url}/device/code",
                            "copilot_token_url": f"{self.url}/copilot/token",
                        }
                    }
                }
            }
        )

    def __enter__(self) -> FakeAuthServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
