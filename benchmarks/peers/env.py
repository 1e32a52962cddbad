"""A virtualenv per peer, made on first use with the peer's pinned versions.

`.bench-peers/<peer>/` under the checkout (git-ignored). A stamp file holds the pins the
venv was made with; a venv whose stamp differs from the peer's pins is made anew. An
install that fails raises `PeerUnavailable` with the first line of pip's error, so the
benchmark can report the peer as unavailable instead of failing as a whole."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.peers import Peer

ROOT = Path(__file__).resolve().parent.parent.parent / ".bench-peers"
STAMP = "pins.json"


class PeerUnavailable(RuntimeError):
    """The peer's venv could not be made; the message is pip's first error line."""


def first_error_line(output: str) -> str:
    """The line of pip's output that says what went wrong (its first `ERROR:` line, else
    the last non-empty line)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("ERROR:"):
            return ln
    return lines[-1] if lines else "pip failed with no output"


def venv_python(peer: Peer, root: Path = ROOT) -> Path:
    """The python of the peer's venv, made (or remade, if its pins changed) first."""
    where = root / peer.name
    python = where / "bin" / "python"
    stamp = where / STAMP
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == list(peer.pins):
        return python
    shutil.rmtree(where, ignore_errors=True)
    where.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(where)], peer)
    _run([str(python), "-m", "pip", "install", "--quiet", *peer.pins], peer)
    stamp.write_text(json.dumps(list(peer.pins)))
    return python


def installed_versions(peer: Peer, python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))"
    )
    out = subprocess.run(
        [str(python), "-c", code, *peer.versions_of], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def _run(argv: list[str], peer: Peer) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerUnavailable(
            f"{' '.join(peer.pins)}: {first_error_line(done.stderr + done.stdout)}"
        )
