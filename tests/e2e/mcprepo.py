"""A target repo with tools/mcp.yaml declaring the test calc server (for the e2e tests)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "data" / "mcp_servers" / "mcp_calc.py"

# relative args resolve against the repo root (the server's cwd); env refers to ${VAR}
MCP_YAML = f"""\
servers:
  calc:
    command: {json.dumps(sys.executable)}
    args: [mcp_calc.py]
    env: {{MCP_PID_FILE: "${{TEST_MCP_PID_FILE}}"}}
    timeout_s: 60
    startup_timeout_s: 30
"""


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(SERVER, repo / "mcp_calc.py")
    (repo / "tools" / "mcp.yaml").write_text(MCP_YAML)
    return repo


def server_pids(repo: Path) -> list[int]:
    """Live processes running the test server with the repo as working directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"mcp_calc.py" in cmdline and (entry / "cwd").resolve() == repo.resolve():
                stat = (entry / "stat").read_bytes()
                if stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found
