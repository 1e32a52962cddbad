"""`swarm auth` driven as a subprocess: keys from --key-env and stdin (never argv),
a masked listing, logout; nothing prints a key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

KEY_A = "sk-ant-cli-test-abcdefghijklmnopqrstuvwxyz"
KEY_O = "sk-openai-cli-test-0123456789ABCDEFGHIJ"


def swarm(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    full.pop("ANTHROPIC_API_KEY", None)
    full.pop("OPENAI_API_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
    )


def test_login_list_logout_without_showing_a_key() -> None:
    out = swarm(
        "auth", "login", "anthropic", "--key-env", "MY_ANTHROPIC", env={"MY_ANTHROPIC": KEY_A}
    )
    assert out.returncode == 0, out.stderr
    out2 = swarm("auth", "login", "openai", stdin=KEY_O + "\n")  # stdin is not a terminal
    assert out2.returncode == 0, out2.stderr
    auth = Path(os.environ["XDG_CONFIG_HOME"]) / "swarm" / "auth.json"
    assert (auth.stat().st_mode & 0o777) == 0o600
    listing = swarm("auth", "list")
    assert listing.returncode == 0
    text = listing.stdout
    assert "anthropic" in text and "openai" in text and "api_key" in text and str(auth) in text
    assert KEY_A[:4] + "…" + KEY_A[-4:] in text
    rows = {r["provider"]: r for r in json.loads(swarm("auth", "list", "--json").stdout)}
    assert rows["openai"]["masked"] == KEY_O[:4] + "…" + KEY_O[-4:]
    models = swarm("models", "--json")
    by = {r["provider"]: r for r in json.loads(models.stdout)}
    assert by["anthropic"]["key_source"].startswith("stored (api_key, file ")
    gone = swarm("auth", "logout", "openai")
    assert gone.returncode == 0 and "removed" in gone.stdout
    again = swarm("auth", "logout", "openai")
    assert again.returncode == 0 and "no stored credential" in again.stdout
    assert set(json.loads(swarm("auth", "list", "--json").stdout)[0]) >= {
        "provider",
        "kind",
        "masked",
    }
    assert [r["provider"] for r in json.loads(swarm("auth", "list", "--json").stdout)] == [
        "anthropic"
    ]
    for p in (out, out2, listing, models, gone, again):
        assert KEY_A not in p.stdout + p.stderr and KEY_O not in p.stdout + p.stderr


def test_bad_input_exits_2_and_names_it() -> None:
    unset = swarm("auth", "login", "openai", "--key-env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 2 and "--key-env: NOT_SET_ANYWHERE is not set" in unset.stderr
    empty = swarm("auth", "login", "openai", stdin="")
    assert empty.returncode == 2 and "no key given" in empty.stderr
    unknown = swarm("auth", "login", "nope", stdin="x" * 30)
    assert unknown.returncode == 2 and "unknown provider 'nope'" in unknown.stderr
    no_client = swarm("auth", "login", "anthropic", "--oauth", stdin="")
    assert (
        no_client.returncode == 2 and "providers.anthropic.oauth: set client_id" in no_client.stderr
    )


def test_a_world_readable_store_is_refused_by_the_cli() -> None:
    assert swarm("auth", "login", "openai", stdin=KEY_O).returncode == 0
    auth = Path(os.environ["XDG_CONFIG_HOME"]) / "swarm" / "auth.json"
    auth.chmod(0o644)
    out = swarm("auth", "list")
    assert out.returncode == 2 and str(auth) in out.stderr and "chmod 600" in out.stderr
    assert KEY_O not in out.stdout + out.stderr


def test_cli_uses_the_keyring_when_it_has_a_backend(tmp_path: Path) -> None:
    ring = tmp_path / "ring.json"
    env = {
        "SWARM_AUTH_STORE": "auto",
        "PYTHON_KEYRING_BACKEND": "tests.authfakes.keyring_backend.JsonFileKeyring",
        "SWARM_TEST_KEYRING": str(ring),
    }
    out = swarm("auth", "login", "openai", stdin=KEY_O, env=env)
    assert out.returncode == 0, out.stderr
    assert "keyring (tests.authfakes.keyring_backend.JsonFileKeyring)" in out.stdout
    assert not (Path(os.environ["XDG_CONFIG_HOME"]) / "swarm" / "auth.json").exists()
    assert KEY_O in ring.read_text()  # in the keyring, where the file store is not
    rows = json.loads(swarm("auth", "list", "--json", env=env).stdout)
    assert [r["provider"] for r in rows] == ["openai"] and "keyring" in rows[0]["where"]
    assert swarm("auth", "logout", "openai", env=env).returncode == 0
    assert KEY_O not in ring.read_text()


def test_two_processes_logging_in_to_the_keyring_at_once_both_kept(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWARM_AUTH_STORE": "auto",
        "PYTHON_KEYRING_BACKEND": "tests.authfakes.keyring_backend.JsonFileKeyring",
        "SWARM_TEST_KEYRING": str(tmp_path / "ring.json"),
    }
    code = (
        "import sys, time\n"
        "from swarm.credentials import Credential, open_store\n"
        "s = open_store()\n"
        "while time.time() < float(sys.argv[2]): time.sleep(0.005)\n"
        "for i in range(15):\n"
        "    s.put(f'{sys.argv[1]}-{i}', Credential(kind='api_key', key='k' * 24))\n"
    )
    go = str(time.time() + 2.0)  # both start writing at the same moment
    procs = [
        subprocess.Popen([sys.executable, "-c", code, name, go], env=env) for name in ("one", "two")
    ]
    try:
        for p in procs:
            assert p.wait(60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    rows = json.loads(swarm("auth", "list", "--json", env=env).stdout)
    assert {r["provider"] for r in rows} == {f"{n}-{i}" for n in ("one", "two") for i in range(15)}


def test_the_prompt_on_a_terminal_does_not_echo_the_key() -> None:
    import pty
    import select

    pid, fd = pty.fork()  # the child's controlling terminal is the pty, as at a keyboard
    if pid == 0:  # pragma: no cover (the child)
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        os.execve(
            sys.executable, [sys.executable, "-m", "swarm.cli", "auth", "login", "openai"], env
        )
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"input hidden" not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                seen += os.read(fd, 4096)
        assert b"openai API key (input hidden)" in seen, seen
        os.write(fd, KEY_O.encode() + b"\n")
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"stored api_key" in seen
    assert KEY_O.encode() not in seen  # never echoed
    rows = json.loads(swarm("auth", "list", "--json").stdout)
    assert rows[0]["masked"] == KEY_O[:4] + "…" + KEY_O[-4:]
