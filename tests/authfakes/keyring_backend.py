"""A keyring backend for tests that spans processes: entries in a JSON file named by
SWARM_TEST_KEYRING (each set/delete atomic, as a real keyring's are). Select it with
PYTHON_KEYRING_BACKEND=tests.authfakes.keyring_backend.JsonFileKeyring."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class JsonFileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    @property
    def path(self) -> Path:
        return Path(os.environ["SWARM_TEST_KEYRING"])

    def _change(self, key: str, value: str | None) -> None:
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # this backend's own per-entry atomicity
            items = self._items()
            if value is None:
                items.pop(key, None)
            else:
                items[key] = value
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(items))
            os.replace(tmp, self.path)

    def _items(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._items().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        self._change(f"{service}/{username}", password)

    def delete_password(self, service: str, username: str) -> None:
        self._change(f"{service}/{username}", None)
