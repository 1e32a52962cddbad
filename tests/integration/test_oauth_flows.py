"""OAuth PKCE login, token renewal shared by processes, the device flow and the Copilot
token, against fake servers on 127.0.0.1 (real HTTP)."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from swarm.credentials import Credential, CredentialError, open_store
from swarm.credentials.device import device_login
from swarm.credentials.oauth import PkceLogin, code_challenge
from swarm.credentials.refresh import TokenSource
from swarm.credentials.settings import OAuthSettings
from tests.authfakes.server import CLIENT_ID, REDIRECT_URI, FakeAuthServer, FakeState


@pytest.fixture
def fake() -> Iterator[FakeAuthServer]:
    with FakeAuthServer() as server:
        yield server


def pkce_settings(fake: FakeAuthServer) -> OAuthSettings:
    return OAuthSettings(
        client_id=CLIENT_ID,
        authorize_url=f"{fake.url}/authorize",
        token_url=f"{fake.url}/token",
        redirect_uri=REDIRECT_URI,
        scopes=["user:inference"],
        token_format="json",
    )


def authorize(url: str) -> str:
    """What the user does in the browser: the page shows ``code#state``."""
    resp = httpx.get(url)
    assert resp.status_code == 200, resp.text
    return resp.text


def test_pkce_login_exchanges_the_code_with_the_verifier(fake: FakeAuthServer) -> None:
    login = PkceLogin("anthropic", pkce_settings(fake))
    q = {k: v[0] for k, v in parse_qs(urlparse(login.url).query).items()}
    assert q["code_challenge_method"] == "S256"
    assert q["code_challenge"] == code_challenge(login.verifier)
    assert q["state"] == login.state and q["state"] != login.verifier
    assert login.verifier not in login.url  # only its hash travels in the URL
    cred = login.exchange(authorize(login.url))
    assert cred.kind == "oauth" and cred.access_token in fake.state.valid_access
    assert cred.refresh_token in fake.state.valid_refresh
    assert cred.expires_at is not None and cred.expires_at > time.time() + 3000
    (sent,) = fake.state.exchange_requests
    assert sent["code_verifier"] == login.verifier and sent["state"] != login.verifier


def test_a_code_for_another_state_is_refused_before_any_exchange(fake: FakeAuthServer) -> None:
    login = PkceLogin("anthropic", pkce_settings(fake))
    code, _, _ = authorize(login.url).partition("#")
    with pytest.raises(CredentialError, match="state does not match"):
        login.exchange(f"{code}#forged-state")
    url = f"{REDIRECT_URI}?code={code}&state=other"
    with pytest.raises(CredentialError, match="state does not match"):
        login.exchange(url)
    assert fake.state.exchange_requests == []
    other = PkceLogin("anthropic", pkce_settings(fake))  # a different verifier: refused
    with pytest.raises(CredentialError, match="invalid_grant"):
        other.exchange(code)


def _store_expiring(fake: FakeAuthServer, expires_in: float = -10.0) -> Credential:
    issued = fake.state.issue()
    cred = Credential(
        kind="oauth",
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=time.time() + expires_in,
        token_url=f"{fake.url}/token",
        client_id=CLIENT_ID,
        token_format="json",
    )
    open_store().put("anthropic", cred)
    return cred


def _get_token(env: dict[str, str], start: Any, out: Any) -> None:
    os.environ.update(env)
    start.wait(60)
    try:
        out.put(("ok", TokenSource("anthropic").token()))
    except Exception as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _race(n: int) -> list[tuple[str, str]]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    env = {k: os.environ[k] for k in STORE_ENV if k in os.environ}
    procs = [ctx.Process(target=_get_token, args=(env, start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        time.sleep(1.5)  # all of them imported and waiting on the event
        start.set()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return results


STORE_ENV = ("XDG_CONFIG_HOME", "SWARM_AUTH_STORE", "PYTHON_KEYRING_BACKEND", "SWARM_TEST_KEYRING")


@pytest.fixture(params=["file", "keyring"])
def any_store(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """The file store, or the keyring (a backend that spans processes)."""
    if request.param == "keyring":
        import keyring

        from tests.authfakes.keyring_backend import JsonFileKeyring

        monkeypatch.setenv("SWARM_AUTH_STORE", "keyring")
        monkeypatch.setenv(
            "PYTHON_KEYRING_BACKEND", "tests.authfakes.keyring_backend.JsonFileKeyring"
        )
        monkeypatch.setenv("SWARM_TEST_KEYRING", str(tmp_path / "ring.json"))
        before = keyring.get_keyring()
        keyring.set_keyring(JsonFileKeyring())
        yield "keyring"
        keyring.set_keyring(before)
    else:
        yield "file"


def test_five_processes_one_refresh(fake: FakeAuthServer, any_store: str) -> None:
    assert any_store in open_store().where
    fake.state.refresh_delay_s = 0.5  # the refresh is slow: the others arrive meanwhile
    old = _store_expiring(fake)
    results = _race(5)
    assert [r[0] for r in results] == ["ok"] * 5, results
    tokens = {r[1] for r in results}
    assert len(tokens) == 1 and old.access_token not in tokens
    assert fake.state.refresh_requests == 1
    stored = open_store().get("anthropic")
    assert stored is not None and stored.access_token in tokens
    assert stored.refresh_token != old.refresh_token  # the rotated one was written back
    assert stored.refresh_token in fake.state.valid_refresh


def test_a_rotating_refresh_token_is_never_used_twice(fake: FakeAuthServer) -> None:
    _store_expiring(fake)
    for _ in range(3):  # three rounds: the token expires again, five processes race
        results = _race(5)
        assert [r[0] for r in results] == ["ok"] * 5, results
        cred = open_store().get("anthropic")
        assert cred is not None
        open_store().put("anthropic", cred.model_copy(update={"expires_at": time.time() - 1}))
    assert fake.state.refresh_requests == 3
    assert fake.state.reused_refresh == []
    assert len(set(fake.state.used_refresh)) == len(fake.state.used_refresh) == 3


def test_a_fresh_token_is_not_refreshed_and_margin_counts(fake: FakeAuthServer) -> None:
    cred = _store_expiring(fake, expires_in=3600)
    assert TokenSource("anthropic").token() == cred.access_token
    assert fake.state.refresh_requests == 0
    # an hour-long token issued 58 minutes ago: inside the 5-minute margin, renewed ahead
    open_store().put(
        "anthropic",
        cred.model_copy(update={"expires_at": time.time() + 120, "updated_at": time.time() - 3480}),
    )
    renewed = TokenSource("anthropic").token()
    assert renewed != cred.access_token and fake.state.refresh_requests == 1
    # a token that lives 2 minutes in all: the margin is half of that, not 5 minutes
    short = open_store().get("anthropic")
    assert short is not None
    now = time.time()
    open_store().put(
        "anthropic", short.model_copy(update={"expires_at": now + 120, "updated_at": now})
    )
    assert TokenSource("anthropic").token() == renewed and fake.state.refresh_requests == 1


def test_invalid_grant_keeps_the_credential(
    fake: FakeAuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    cred = _store_expiring(fake)
    fake.state.valid_refresh.clear()  # the server revoked it
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CredentialError, match="invalid_grant") as info:
        TokenSource("anthropic").token()
    assert cred.refresh_token not in str(info.value)  # type: ignore[operator]
    assert open_store().get("anthropic") == cred  # kept: never wiped
    assert cred.access_token not in caplog.text  # type: ignore[operator]


def test_invalid_grant_rereads_the_store_for_another_writers_token(
    fake: FakeAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.credentials import oauth

    cred = _store_expiring(fake)
    fake.state.valid_refresh.discard(cred.refresh_token)  # type: ignore[arg-type]
    newer = fake.state.issue()
    real = oauth.refresh_tokens

    def refused_after_another_write(c: Credential, client: Any = None) -> Credential:
        # a writer outside our lock (another machine's swarm on a shared keyring, say)
        # stored a fresh login just as our refresh token was refused
        store = open_store()
        store.backend.save(
            {
                "anthropic": c.model_copy(
                    update={
                        "access_token": newer["access_token"],
                        "refresh_token": newer["refresh_token"],
                        "expires_at": time.time() + 3600,
                    }
                )
            },
            {"anthropic"},
        )
        return real(c, client)

    monkeypatch.setattr(oauth, "refresh_tokens", refused_after_another_write)
    assert TokenSource("anthropic").token() == newer["access_token"]
    stored = open_store().get("anthropic")
    assert stored is not None and stored.refresh_token == newer["refresh_token"]


async def test_a_401_renews_the_token_and_retries_once(
    fake: FakeAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.credentials.provider import TokenProvider
    from swarm.providers.registry import make_provider, settings_for
    from swarm.providers.types import Message, TextBlock

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    cred = _store_expiring(fake, expires_in=3600)
    fake.state.valid_access.discard(cred.access_token)  # type: ignore[arg-type]
    provider = make_provider(settings_for("anthropic", {"anthropic": {"base_url": fake.url}}))
    assert isinstance(provider, TokenProvider)
    try:
        reply = await provider.complete(
            model="claude-test",
            system="s",
            messages=[Message(role="user", content=[TextBlock(text="hi")])],
            tools=[],
            max_tokens=10,
        )
    finally:
        await provider.aclose()
    assert "hello" in reply.message.content[0].text  # type: ignore[union-attr]
    assert fake.state.refresh_requests == 1
    assert fake.state.messages_auth == ["oauth-2025-04-20"] * 2  # rejected, then accepted
    assert open_store().get("anthropic").access_token != cred.access_token  # type: ignore[union-attr]


def device_settings(fake: FakeAuthServer) -> OAuthSettings:
    return OAuthSettings(
        client_id=CLIENT_ID,
        device_code_url=f"{fake.url}/device/code",
        token_url=f"{fake.url}/device/token",
        copilot_token_url=f"{fake.url}/copilot/token",
        scopes=["read:user"],
    )


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s

    def now(self) -> float:
        return self.t


def test_device_flow_polls_at_the_interval_and_slows_down(fake: FakeAuthServer) -> None:
    fake.state.device_interval = 2
    fake.state.device_script = [
        "authorization_pending",
        "slow_down",
        "authorization_pending",
        "token",
    ]
    shown: list[Any] = []
    clock = Clock()
    cred = device_login(device_settings(fake), shown.append, clock.sleep, clock.now)
    assert shown[0].user_code == "WDJB-MJHT" and shown[0].verification_uri.endswith("/device")
    assert clock.sleeps == [2, 2, 7, 7]  # +5 s from the slow_down on
    assert len(fake.state.device_polls) == 4
    assert cred.kind == "github" and cred.key in fake.state.github_tokens


def test_device_flow_gives_up_when_the_code_expires(fake: FakeAuthServer) -> None:
    fake.state.device_interval = 1
    fake.state.device_expires_in = 5
    fake.state.device_script = ["authorization_pending"] * 50
    clock = Clock()
    with pytest.raises(CredentialError, match="expired"):
        device_login(device_settings(fake), lambda c: None, clock.sleep, clock.now)
    assert len(fake.state.device_polls) == 4 and sum(clock.sleeps) < 5


def test_copilot_token_exchanged_when_needed_and_renewed_before_expiry(
    fake: FakeAuthServer,
) -> None:
    fake.state.device_interval = 0
    fake.state.device_script = ["token"]
    open_store().put("copilot", device_login(device_settings(fake), lambda c: None))
    assert fake.state.copilot_requests == 0  # the GitHub token is stored; no exchange yet
    first = TokenSource("copilot").token()
    assert first.startswith("cop-") and fake.state.copilot_requests == 1
    assert TokenSource("copilot").token() == first and fake.state.copilot_requests == 1
    stored = open_store().get("copilot")
    assert stored is not None and stored.api_base == f"{fake.url}/copilot-api"
    # a minute before it expires (within the margin): a new one
    open_store().put(
        "copilot",
        stored.model_copy(
            update={"expires_at": time.time() + 60, "updated_at": time.time() - 1440}
        ),
    )
    second = TokenSource("copilot").token()
    assert second != first and fake.state.copilot_requests == 2


def test_copilot_provider_from_a_device_login(
    fake: FakeAuthServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.credentials.provider import TokenProvider
    from swarm.providers.copilot_provider import CopilotProvider
    from swarm.providers.registry import make_provider, settings_for

    monkeypatch.delenv("GITHUB_COPILOT_TOKEN", raising=False)
    monkeypatch.delenv("COPILOT_BASE_URL", raising=False)
    gh = "gho_" + "x" * 30
    fake.state.github_tokens.add(gh)
    open_store().put(
        "copilot", Credential(kind="github", key=gh, token_url=f"{fake.url}/copilot/token")
    )
    provider = make_provider(settings_for("copilot"))
    assert isinstance(provider, TokenProvider) and isinstance(provider.inner, CopilotProvider)


def _swarm_cli(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.Popen(
        [sys.executable, "-m", "swarm.cli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_cli_oauth_login_end_to_end(fake: FakeAuthServer, tmp_path: Path) -> None:
    conf = tmp_path / "oauth.yaml"
    conf.write_text(fake.oauth_yaml("anthropic"))
    proc = _swarm_cli("auth", "login", "anthropic", "--oauth", "--config", str(conf))
    try:
        assert proc.stdout is not None and proc.stdin is not None
        url = ""
        while not url:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
            if line.startswith(fake.url):
                url = line.strip()
        proc.stdin.write(authorize(url) + "\n")
        proc.stdin.flush()
        out, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    assert "third-party tools" in errors  # the terms note
    cred = open_store().get("anthropic")
    assert (
        cred is not None and cred.kind == "oauth" and cred.access_token in fake.state.valid_access
    )
    assert cred.token_url == f"{fake.url}/token"
    assert cred.access_token not in out + errors and cred.refresh_token not in out + errors  # type: ignore[operator]
    listing = subprocess.run(
        [sys.executable, "-m", "swarm.cli", "auth", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    (row,) = json.loads(listing.stdout)
    assert row["kind"] == "oauth" and row["expires_at"] > time.time()
    assert cred.access_token not in listing.stdout  # type: ignore[operator]


def test_cli_copilot_device_login_end_to_end(fake: FakeAuthServer, tmp_path: Path) -> None:
    fake.state.device_interval = 0
    fake.state.device_script = ["authorization_pending", "token"]
    conf = tmp_path / "oauth.yaml"
    conf.write_text(fake.oauth_yaml("copilot"))
    proc = _swarm_cli("auth", "login", "copilot", "--config", str(conf))
    try:
        out, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, errors
    assert "WDJB-MJHT" in out and f"{fake.url}/device" in out
    cred = open_store().get("copilot")
    assert cred is not None and cred.kind == "github" and cred.key in fake.state.github_tokens
    assert cred.access_token and fake.state.copilot_requests == 1
    assert cred.key not in out + errors and cred.access_token not in out + errors


def test_state_is_random_per_login(fake: FakeAuthServer) -> None:
    a, b = PkceLogin("anthropic", pkce_settings(fake)), PkceLogin("anthropic", pkce_settings(fake))
    assert a.state != b.state and a.verifier != b.verifier and len(a.verifier) >= 43
    assert FakeState is not None


def test_a_rejected_token_takes_another_process_newer_one_without_a_refresh(
    fake: FakeAuthServer,
) -> None:
    old = _store_expiring(fake, expires_in=3600)
    source = TokenSource("anthropic")
    assert source.token() == old.access_token
    newer = fake.state.issue()  # another process renewed and stored its token
    open_store().put(
        "anthropic",
        old.model_copy(
            update={"access_token": newer["access_token"], "refresh_token": newer["refresh_token"]}
        ),
    )
    assert source.token() == old.access_token  # still valid as far as this process knows
    assert source.token(rejected=old.access_token) == newer["access_token"]  # the 401 path
    assert fake.state.refresh_requests == 0
    # the rejected token is the newest: renewed
    assert source.token(rejected=newer["access_token"]) not in (
        old.access_token,
        newer["access_token"],
    )
    assert fake.state.refresh_requests == 1 and fake.state.reused_refresh == []


def test_the_pasted_forms_code_code_state_and_redirect_url(fake: FakeAuthServer) -> None:
    for form in ("bare", "hash", "url"):
        login = PkceLogin("anthropic", pkce_settings(fake))
        code, _, state = authorize(login.url).partition("#")
        pasted = {
            "bare": code,
            "hash": f"{code}#{state}",
            "url": f"{REDIRECT_URI}?code={code}&state={state}",
        }[form]
        assert login.exchange(f"  {pasted}\n").kind == "oauth"
    assert len(fake.state.exchange_requests) == 3
    with pytest.raises(CredentialError, match="no authorization code"):
        PkceLogin("anthropic", pkce_settings(fake)).exchange("   ")
