"""Start-up as a user waits for it: `swarm launch` to the first model request with a cold
local Ray (each launch starts its own), `swarm --help`, and `swarm status` on a finished
run; wall time of each command, medians of R rounds.

    python -m benchmarks.startup [--rounds R] [--agents N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.swarm_cpu import _requests, _stub, write_workload

TITLE = "Start-up"
NOTE = (
    "Wall time as a user waits for it, median of {rounds} round(s): `swarm launch` of {agents} "
    "agents (one task of one `read` turn each, `agents_per_actor: auto`) to the scripted "
    "server's first model request, with a cold local Ray (every launch starts its own) and "
    "the embedded Redis; `swarm --help`; `swarm status` on the finished run (the embedded "
    "Redis already running). Target: launch to first request at most 4 s, help 0.3 s, "
    "status 0.5 s."
)


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=True, timeout=300)
    return time.perf_counter() - started


def measure(rounds: int, agents: int) -> dict[str, list[float]]:
    cli = [sys.executable, "-m", "swarm.cli"]
    out: dict[str, list[float]] = {"launch": [], "help": [], "status": []}
    for i in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            script = write_workload(root, agents, 1)
            record = root / "requests.jsonl"
            stub, url = _stub(script, record)
            env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")}
            env.update(OPENAI_BASE_URL=f"{url}/openai/v1", OPENAI_API_KEY="startup")
            try:
                started = time.time()
                subprocess.run(
                    [*cli, "launch", "swarm.yaml", "--repo", "repo", "--run-id", f"s{i}"]
                    + ["--no-dashboard"],
                    cwd=root,
                    env=env,
                    capture_output=True,
                    check=True,
                    timeout=600,
                )
                out["launch"].append(_requests(record)[0] - started)
                out["help"].append(_timed([*cli, "--help"], root, env))
                out["status"].append(_timed([*cli, "status", f"s{i}", "--json"], root, env))
            finally:
                stub.terminate()
                stub.wait()
                from swarm.blackboard.connection import stop_embedded

                stop_embedded(root / ".swarm")
                shutil.rmtree(root / ".swarm", ignore_errors=True)
    return out


def rows(rounds: int, agents: int) -> list[tuple[str, str]]:
    m = measure(rounds, agents)

    def fmt(key: str) -> str:
        values = m[key]
        spread = f" (of {', '.join(f'{v:.2f}' for v in values)})" if len(values) > 1 else ""
        return f"{statistics.median(values):.2f} s{spread}"

    return [
        (f"`swarm launch` ({agents} agents) → first model request, cold Ray", fmt("launch")),
        ("`swarm --help`", fmt("help")),
        ("`swarm status RUN --json`", fmt("status")),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agents", type=int, default=10)
    a = parser.parse_args()
    for name, value in rows(a.rounds, a.agents):
        print(f"{name}: {value}")
