"""`python -m swarm.llmstub SCRIPT [--host H] [--port P] [--record FILE]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swarm.llmstub.script import ScriptError
from swarm.llmstub.server import serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarm.llmstub", description=__doc__)
    parser.add_argument("script", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        serve_forever(args.script, args.host, args.port, args.record)
    except ScriptError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
