"""Freeze the tool specs, role tool lists and system prompts of a commit as a JSON fixture,
the "before" that ``benchmarks.tool_schemas`` measures next to the current code.

    python -m benchmarks.freeze_tool_specs                 # 7a3ff71 -> benchmarks/data/...
    python -m benchmarks.freeze_tool_specs --commit REV --out FILE

The commit's tree is extracted with ``git archive`` into a temporary folder and
``benchmarks/tool_snapshot.py`` (of the current checkout) is run there, with that tree
first on PYTHONPATH: the text is what that commit's code sends, not a copy typed by hand.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).resolve().parent / "tool_snapshot.py"
#: the last commit before the tool schemas and system prompt were trimmed
BEFORE_COMMIT = "7a3ff71"
BEFORE_FIXTURE = ROOT / "benchmarks" / "data" / f"tool_specs_{BEFORE_COMMIT}.json"


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


def freeze(commit: str) -> dict[str, Any]:
    """The snapshot of ``commit``'s code, with the full commit id."""
    sha = _git("rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()
    with tempfile.TemporaryDirectory(prefix="swarm-freeze-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        with tarfile.open(fileobj=io.BytesIO(_git("archive", sha)), mode="r:") as tar:
            tar.extractall(tree, filter="data")
        script = Path(tmp) / "tool_snapshot.py"
        shutil.copyfile(SNAPSHOT, script)
        env = {**os.environ, "PYTHONPATH": str(tree)}
        out = subprocess.run(
            [sys.executable, str(script)],
            cwd=tree,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    snap: dict[str, Any] = json.loads(out)
    return {"commit": sha, **snap}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default=BEFORE_COMMIT)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "benchmarks" / "data" / f"tool_specs_{args.commit}.json"
    data = freeze(args.commit)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out} ({data['commit'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
