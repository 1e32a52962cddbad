"""The embedded Redis shared by several CLI processes, and a bad REDIS_URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

OPEN = """
import sys, time
from pathlib import Path
from swarm.blackboard.connection import open_redis
h = open_redis(Path(sys.argv[1]))
print(h.url, h.embedded.pid, flush=True)
time.sleep(1.0)
h.close()
"""


def test_processes_starting_together_share_one_server(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({url for url, _ in outs}) == 1, outs
    assert len({pid for _, pid in outs if pid != "0"}) == 1, outs
    # and the last one out stopped it: a new user starts a fresh server on the same data
    again = subprocess.run(
        [sys.executable, "-c", OPEN, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and again.stdout.split()[1] not in {pid for _, pid in outs}


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
