"""Where credentials live: the OS keyring when a real backend exists, else
``$XDG_CONFIG_HOME/swarm/auth.json`` (0600 from its first byte, in a 0700 directory).

Every read-modify-write runs under one cross-process lock (``flock`` on ``auth.lock``
beside the file, for the keyring too), so two processes logging in or refreshing at once
never lose each other's update. Reads need no lock: the file is replaced by a rename, so
a reader sees the old file or the new one, never half of one.

``SWARM_AUTH_STORE`` = ``auto`` (default) | ``keyring`` | ``file`` chooses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from swarm.credentials.model import Credential
from swarm.errors import BadInput

STORE_ENV = "SWARM_AUTH_STORE"
KEYRING_SERVICE = "swarm-mesh"
_INDEX = "__providers__"  # the keyring entry listing the providers stored (no enumeration API)
FILE_VERSION = 1
LOCK_WAIT_S = 120.0  # more than a token request's timeout (30 s) several times over


class CredentialError(BadInput):
    """A credential store that cannot be used safely, or a missing/unusable credential.
    Messages name files and providers, never a credential's value."""


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/swarm`` (``~/.config/swarm``; a relative XDG_CONFIG_HOME is
    ignored, as the XDG spec says)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".config"
    return root / "swarm"


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` 0700 (parents as usual); refuse an existing one that is not ours or
    that others can write to (they could swap the file under us)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CredentialError(f"{path}: not a directory (the credential store's folder)")
    if st.st_uid != os.geteuid():
        raise CredentialError(
            f"{path}: owned by uid {st.st_uid}, not by you (uid {os.geteuid()}); "
            "refusing to keep credentials in a folder another user controls"
        )
    if st.st_mode & 0o022:
        raise CredentialError(
            f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets other users write in it; "
            f"refusing to keep credentials there (run `chmod 700 {path}`)"
        )


class _FileLock:
    """An exclusive ``flock`` on a lock file, re-entrant within a thread (a refresh that
    writes back while holding it), one thread of this process at a time."""

    def __init__(self, path: Path):
        self.path = path
        self._mutex = threading.Lock()
        self._local = threading.local()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._mutex:
            ensure_private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                self._acquire(fd)
                self._local.depth = 1
                try:
                    yield
                finally:
                    self._local.depth = 0
            finally:
                os.close(fd)  # releases the flock

    def _acquire(self, fd: int) -> None:
        """Wait for the lock, up to LOCK_WAIT_S: a holder stuck that long (stopped, or
        hung past every HTTP timeout) is an error, not a swarm that waits forever."""
        deadline = time.monotonic() + LOCK_WAIT_S
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise CredentialError(
                        f"{self.path}: another process has held the credential lock for "
                        f"{LOCK_WAIT_S:.0f}s; is a `swarm` process stuck?"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)


_LOCKS: dict[Path, _FileLock] = {}
_LOCKS_MUTEX = threading.Lock()


def store_lock(directory: Path | None = None) -> _FileLock:
    path = (directory or config_dir()) / "auth.lock"
    with _LOCKS_MUTEX:
        return _LOCKS.setdefault(path, _FileLock(path))


class Store(Protocol):
    where: str

    def load(self) -> dict[str, Credential]: ...
    def get(self, provider: str) -> Credential | None: ...
    def save(self, creds: dict[str, Credential], changed: set[str]) -> None: ...
    @property
    def lock(self) -> _FileLock: ...


class CredentialStore:
    """The operations every caller uses, over one backend (file or keyring)."""

    def __init__(self, backend: Store):
        self.backend = backend

    @property
    def where(self) -> str:
        return self.backend.where

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return self.backend.lock.hold()

    def all(self) -> dict[str, Credential]:
        return self.backend.load()

    def get(self, provider: str) -> Credential | None:
        return self.backend.get(provider)

    def update(self, fn: Callable[[dict[str, Credential]], set[str]]) -> dict[str, Credential]:
        """Read, let ``fn`` change the mapping (returning the providers it changed),
        write: all under the lock."""
        with self.lock():
            creds = self.backend.load()
            changed = fn(creds)
            if changed:
                self.backend.save(creds, changed)
            return creds

    def put(self, provider: str, cred: Credential) -> None:
        def change(creds: dict[str, Credential]) -> set[str]:
            creds[provider] = cred
            return {provider}

        self.update(change)

    def delete(self, provider: str) -> bool:
        found = False

        def change(creds: dict[str, Credential]) -> set[str]:
            nonlocal found
            found = creds.pop(provider, None) is not None
            return {provider} if found else set()

        self.update(change)
        return found


def _parse(raw: dict[str, Any], where: str) -> dict[str, Credential]:
    out: dict[str, Credential] = {}
    entries = raw.get("credentials", {})
    if not isinstance(entries, dict):
        raise CredentialError(f"{where}: 'credentials' is not a mapping")
    for name, entry in entries.items():
        try:
            out[str(name)] = Credential.model_validate(entry)
        except ValidationError as exc:  # field names only: the input holds secrets
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise CredentialError(
                f"{where}: credential {name!r}: invalid fields: {fields}"
            ) from None
    return out


def _dump(creds: dict[str, Credential]) -> bytes:
    body = {
        "version": FILE_VERSION,
        "credentials": {k: v.model_dump(exclude_none=True) for k, v in sorted(creds.items())},
    }
    return (json.dumps(body, indent=1) + "\n").encode()


class FileStore:
    """``auth.json``: 0600 from creation, replaced atomically (temp file in the same
    directory, fsync, rename, fsync of the directory)."""

    def __init__(self, directory: Path | None = None):
        self.dir = directory or config_dir()
        self.path = self.dir / "auth.json"
        self.where = f"file {self.path}"
        self._lock = store_lock(self.dir)

    @property
    def lock(self) -> _FileLock:
        return self._lock

    def load(self) -> dict[str, Credential]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise CredentialError(f"{self.path}: cannot open: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            check_private_file(os.fstat(f.fileno()), self.path)
            data = f.read()
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise CredentialError(
                f"{self.path}: not valid JSON (line {getattr(exc, 'lineno', '?')})"
            ) from None
        if not isinstance(raw, dict):
            raise CredentialError(f"{self.path}: not a JSON object")
        return _parse(raw, str(self.path))

    def get(self, provider: str) -> Credential | None:
        return self.load().get(provider)

    def save(self, creds: dict[str, Credential], changed: set[str]) -> None:
        ensure_private_dir(self.dir)
        write_private(self.path, _dump(creds))


def check_private_file(st: os.stat_result, path: Path) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise CredentialError(f"{path}: not a regular file")
    if st.st_uid != os.geteuid():
        raise CredentialError(
            f"{path}: owned by uid {st.st_uid}, not by you (uid {os.geteuid()}); "
            "refusing a credential file another user controls"
        )
    if st.st_mode & 0o077:
        raise CredentialError(
            f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets other users read it; "
            f"refusing to use it (run `chmod 600 {path}`, and consider the keys in it exposed)"
        )


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically, readable by its owner only from the first byte: the
    temporary file is created with mode 0600 by ``os.open`` itself (no chmod after)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class KeyringStore:
    """One keyring entry per provider (its credential as JSON) and an index entry, since
    keyring cannot list entries. Changes take the same file lock as the file store."""

    def __init__(self, backend: Any, directory: Path | None = None):
        self.backend = backend
        self.where = f"keyring ({type(backend).__module__}.{type(backend).__name__})"
        self._lock = store_lock(directory)

    @property
    def lock(self) -> _FileLock:
        return self._lock

    def _get(self, name: str) -> str | None:
        try:
            value = self.backend.get_password(KEYRING_SERVICE, name)
        except Exception as exc:  # the backend's own error types; no value in them
            raise CredentialError(
                f"{self.where}: cannot read {name!r}: {type(exc).__name__}"
            ) from None
        return value if isinstance(value, str) else None

    def load(self) -> dict[str, Credential]:
        index = self._get(_INDEX)
        names = json.loads(index) if index else []
        raw: dict[str, Any] = {}
        for name in names:
            value = self._get(name)
            if value:
                try:
                    raw[name] = json.loads(value)
                except ValueError:
                    raise CredentialError(f"{self.where}: entry {name!r} is not JSON") from None
        return _parse({"credentials": raw}, self.where)

    def get(self, provider: str) -> Credential | None:
        """One entry (the index is not needed to read one)."""
        value = self._get(provider)
        if not value:
            return None
        try:
            raw = json.loads(value)
        except ValueError:
            raise CredentialError(f"{self.where}: entry {provider!r} is not JSON") from None
        return _parse({"credentials": {provider: raw}}, self.where).get(provider)

    def _set(self, name: str, value: str) -> None:
        try:
            self.backend.set_password(KEYRING_SERVICE, name, value)
        except Exception as exc:  # a locked keyring, a refused prompt
            raise CredentialError(
                f"{self.where}: cannot store {name!r}: {type(exc).__name__}"
            ) from None

    def save(self, creds: dict[str, Credential], changed: set[str]) -> None:
        for name in changed:
            if name in creds:
                self._set(name, json.dumps(creds[name].model_dump(exclude_none=True)))
            else:
                with contextlib.suppress(Exception):  # keyring's PasswordDeleteError: gone
                    self.backend.delete_password(KEYRING_SERVICE, name)
        self._set(_INDEX, json.dumps(sorted(creds)))


def keyring_backend() -> Any | None:
    """The keyring's backend if it is a real one (not keyring's fail/null placeholder nor
    an empty chain), else None."""
    try:
        import keyring
        from keyring.backends import chainer, fail
    except ImportError:
        return None
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return None
    if type(backend).__module__ == "keyring.backends.null":
        return None
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return None
    return backend


def open_store(directory: Path | None = None) -> CredentialStore:
    mode = os.environ.get(STORE_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "keyring", "file"):
        raise CredentialError(f"{STORE_ENV}: {mode!r} is not one of auto, keyring, file")
    if mode == "file":
        return CredentialStore(FileStore(directory))
    backend = keyring_backend()
    if backend is None:
        if mode == "keyring":
            raise CredentialError(f"{STORE_ENV}=keyring: no keyring backend is available here")
        return CredentialStore(FileStore(directory))
    return CredentialStore(KeyringStore(backend, directory))
