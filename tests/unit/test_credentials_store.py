"""The credential store: file modes from creation, refusal of unsafe files, the
cross-process lock, the keyring when a backend exists, key precedence."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import time
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import fail

from swarm.credentials import Credential, CredentialError, mask, open_store
from swarm.credentials import store as store_mod
from swarm.credentials.store import FileStore, KeyringStore, config_dir

KEY = "sk-unit-test-0123456789abcdefghijklmnop"


def test_file_is_0600_from_its_creation_even_with_umask_0(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy_open(path: Any, flags: int, mode: int = 0o777, *a: Any, **kw: Any) -> int:
        fd = real_open(path, flags, mode, *a, **kw)
        if flags & os.O_CREAT and str(path).endswith(".tmp"):
            # the file as created, before any later call could change its mode
            created.append((str(path), mode, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    def no_chmod(*a: Any, **kw: Any) -> None:
        raise AssertionError("the store must not rely on chmod after creation")

    monkeypatch.setattr(store_mod.os, "open", spy_open)
    monkeypatch.setattr(store_mod.os, "chmod", no_chmod)
    monkeypatch.setattr(store_mod.os, "fchmod", no_chmod)
    old = os.umask(0)  # a umask would hide a missing mode: none here
    try:
        open_store().put("anthropic", Credential(kind="api_key", key=KEY))
    finally:
        os.umask(old)
    assert created, "the store wrote no temporary file"
    for _path, mode, actual in created:
        assert mode == 0o600
        assert actual == 0o600
    path = config_dir() / "auth.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert open_store().get("anthropic") == Credential.model_validate(
        open_store().get("anthropic").model_dump()  # type: ignore[union-attr]
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_file_others_can_read_is_refused(mode: int) -> None:
    store = open_store()
    store.put("openai", Credential(kind="api_key", key=KEY))
    path = config_dir() / "auth.json"
    os.chmod(path, mode)
    with pytest.raises(CredentialError) as info:
        open_store().get("openai")
    message = str(info.value)
    assert str(path) in message and "chmod 600" in message and f"{mode:04o}" in message
    assert KEY not in message
    with pytest.raises(CredentialError):  # nor written to
        open_store().put("mistral", Credential(kind="api_key", key=KEY))


def test_a_foreign_owned_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    open_store().put("openai", Credential(kind="api_key", key=KEY))
    me = os.geteuid()
    # the file stays ours; the store is told it runs as somebody else
    monkeypatch.setattr(store_mod.os, "geteuid", lambda: me + 4242)
    with pytest.raises(CredentialError, match="owned by uid"):
        open_store().get("openai")


def test_a_directory_others_can_write_is_refused() -> None:
    d = config_dir()
    d.mkdir(parents=True)
    os.chmod(d, 0o777)
    with pytest.raises(CredentialError, match="other users write"):
        open_store().put("openai", Credential(kind="api_key", key=KEY))
    assert not (d / "auth.json").exists()


def test_a_damaged_file_is_named_and_no_value_shown() -> None:
    d = config_dir()
    d.mkdir(parents=True, mode=0o700)
    fd = os.open(d / "auth.json", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"credentials": {"openai": {"kind": "bogus", "key": "' + KEY.encode() + b'"}}}')
    os.close(fd)
    with pytest.raises(CredentialError) as info:
        open_store().all()
    assert str(d / "auth.json") in str(info.value) and "kind" in str(info.value)
    assert KEY not in str(info.value)


def test_values_never_in_repr_and_masked_in_listing() -> None:
    c = Credential(kind="oauth", access_token=KEY, refresh_token=KEY[::-1], expires_at=time.time())
    assert KEY not in repr(c) and KEY not in str(c) and KEY[::-1] not in repr(c)
    m = mask(KEY)
    assert KEY not in m and len(m) < 12
    assert mask("short-secret") == "********"


def _hold_lock(directory: str, acquired: Any, release: Any) -> None:
    os.environ["XDG_CONFIG_HOME"] = directory
    with open_store().lock():
        acquired.set()
        release.wait(30)


def _add_many(directory: str, prefix: str, count: int, start: Any) -> None:
    os.environ["XDG_CONFIG_HOME"] = directory
    os.environ["SWARM_AUTH_STORE"] = "file"
    store = open_store()
    start.wait(30)
    for i in range(count):
        store.put(f"{prefix}-{i}", Credential(kind="api_key", key=f"{prefix}-key-{i:04d}-xxxxxxxx"))


def _start(target: Any, *args: Any) -> Any:
    p = mp.get_context("spawn").Process(target=target, args=args)
    p.start()
    return p


def test_two_processes_adding_at_once_both_kept() -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    xdg = os.environ["XDG_CONFIG_HOME"]
    procs = [_start(_add_many, xdg, name, 25, start) for name in ("alpha", "beta")]
    try:
        time.sleep(1.0)  # both imported and waiting
        start.set()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    stored = open_store().all()
    assert {f"{n}-{i}" for n in ("alpha", "beta") for i in range(25)} == set(stored)


def test_a_writer_waits_for_the_lock_another_process_holds() -> None:
    ctx = mp.get_context("spawn")
    acquired, release = ctx.Event(), ctx.Event()
    holder = _start(_hold_lock, os.environ["XDG_CONFIG_HOME"], acquired, release)
    try:
        assert acquired.wait(30)
        t0 = time.monotonic()
        import threading

        threading.Timer(0.8, release.set).start()
        open_store().put("openai", Credential(kind="api_key", key=KEY))
        waited = time.monotonic() - t0
    finally:
        release.set()
        holder.join(30)
        if holder.is_alive():
            holder.kill()
    assert waited >= 0.7, f"the put did not wait for the lock ({waited:.2f}s)"
    assert open_store().get("openai") is not None


class MemoryKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


@pytest.fixture
def restore_keyring() -> Any:
    before = keyring.get_keyring()
    yield
    keyring.set_keyring(before)


def test_keyring_used_when_a_backend_is_present(
    monkeypatch: pytest.MonkeyPatch, restore_keyring: None
) -> None:
    monkeypatch.setenv("SWARM_AUTH_STORE", "auto")
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    store = open_store()
    assert isinstance(store.backend, KeyringStore) and "keyring" in store.where
    store.put("anthropic", Credential(kind="api_key", key=KEY))
    store.put("openai", Credential(kind="api_key", key=KEY + "2"))
    assert not (config_dir() / "auth.json").exists()
    assert any(KEY in v for v in backend.items.values())
    assert set(open_store().all()) == {"anthropic", "openai"}
    assert open_store().delete("openai")
    assert set(open_store().all()) == {"anthropic"}
    assert not any((KEY + "2") in v for v in backend.items.values())


def test_the_file_when_no_keyring_backend(
    monkeypatch: pytest.MonkeyPatch, restore_keyring: None
) -> None:
    monkeypatch.setenv("SWARM_AUTH_STORE", "auto")
    keyring.set_keyring(fail.Keyring())
    store = open_store()
    assert isinstance(store.backend, FileStore)
    store.put("anthropic", Credential(kind="api_key", key=KEY))
    assert (config_dir() / "auth.json").exists()
    monkeypatch.setenv("SWARM_AUTH_STORE", "keyring")
    with pytest.raises(CredentialError, match="no keyring backend"):
        open_store()


def test_precedence_config_env_then_default_env_then_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.providers.anthropic_provider import AnthropicProvider
    from swarm.providers.registry import describe_models, make_provider, settings_for

    for name in ("ANTHROPIC_API_KEY", "MY_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    configured = {"anthropic": {"api_key_env": "MY_KEY"}}
    assert not settings_for("anthropic", configured).has_key
    open_store().put("anthropic", Credential(kind="api_key", key="sk-stored-" + "s" * 20))
    s = settings_for("anthropic", configured)
    assert s.key_source().source.startswith("stored (api_key, file ")
    provider = make_provider(s)
    assert isinstance(provider, AnthropicProvider)
    assert provider.client.api_key == "sk-stored-" + "s" * 20
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-default-env-" + "d" * 20)
    assert settings_for("anthropic", configured).key_source().source == "env ANTHROPIC_API_KEY"
    monkeypatch.setenv("MY_KEY", "sk-config-env-" + "c" * 20)
    src = settings_for("anthropic", configured).key_source()
    assert src.source == "config api_key_env MY_KEY"
    assert (
        make_provider(settings_for("anthropic", configured)).client.api_key
        == "sk-config-env-" + "c" * 20
    )  # type: ignore[attr-defined]
    rows = {r["provider"]: r for r in describe_models(configured)}
    assert rows["anthropic"]["key_source"] == "config api_key_env MY_KEY"
    assert "c" * 20 not in repr(rows) and "s" * 20 not in repr(rows)
    monkeypatch.delenv("MY_KEY")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    rows = {r["provider"]: r for r in describe_models(configured)}
    assert rows["anthropic"]["key_present"] and rows["anthropic"]["key_source"].startswith("stored")
    assert rows["mistral"]["key_source"] is None


def test_no_store_no_env_names_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.errors import BadInput
    from swarm.providers.registry import make_provider, settings_for

    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    with pytest.raises(BadInput, match=r"MISTRAL_API_KEY or run `swarm auth login mistral`"):
        make_provider(settings_for("mistral"))


def test_config_accepts_an_oauth_section(tmp_path: Path) -> None:
    from swarm.config import ProviderConfig

    conf = ProviderConfig.model_validate({"oauth": {"client_id": "x", "token_url": "http://h/t"}})
    assert conf.oauth is not None and conf.oauth.client_id == "x"
    with pytest.raises(ValueError):
        ProviderConfig.model_validate({"oauth": {"clientid": "x"}})


def test_a_lock_held_too_long_is_an_error_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = mp.get_context("spawn")
    acquired, release = ctx.Event(), ctx.Event()
    holder = _start(_hold_lock, os.environ["XDG_CONFIG_HOME"], acquired, release)
    monkeypatch.setattr(store_mod, "LOCK_WAIT_S", 0.5)
    try:
        assert acquired.wait(30)
        t0 = time.monotonic()
        with pytest.raises(CredentialError, match="held the credential lock"):
            open_store().put("openai", Credential(kind="api_key", key=KEY))
        assert time.monotonic() - t0 < 5
    finally:
        release.set()
        holder.join(30)
        if holder.is_alive():
            holder.kill()
    assert open_store().get("openai") is None
