"""Where the shipped data folders (agents/, topologies/, configs/, examples/) live."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dirs(name: str, near: Path | None = None) -> list[Path]:
    """Folders named `name` to search, most specific first: beside the config, its parent,
    then the ones shipped with swarm."""
    dirs: list[Path] = []
    if near is not None:
        near = near.resolve()
        dirs += [near / name, near.parent / name]
    dirs.append(PROJECT_ROOT / name)
    seen: list[Path] = []
    for d in dirs:
        if d not in seen and d.is_dir():
            seen.append(d)
    return seen
