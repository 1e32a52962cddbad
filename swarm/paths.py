"""Where the shipped data lives: swarm/data/{agents,topologies,configs,examples}, inside
the package, so that a wheel install and an editable (or source-tree) one find the same
files. Nothing here looks beside the source tree."""

from __future__ import annotations

from pathlib import Path

#: the package's data folder (role cards, topology presets, configs, the demo's example)
DATA_DIR = Path(__file__).resolve().parent / "data"


def shipped(*parts: str) -> Path:
    """A path inside the shipped data: shipped("configs", "demo.yaml")."""
    return DATA_DIR.joinpath(*parts)


def is_shipped(path: Path) -> bool:
    """Whether `path` lies inside the shipped data folder."""
    return path.resolve().is_relative_to(DATA_DIR)


def data_dirs(name: str, near: Path | None = None) -> list[Path]:
    """Folders named `name` to search, most specific first: beside the config, its parent,
    then the ones shipped with swarm."""
    dirs: list[Path] = []
    if near is not None:
        near = near.resolve()
        dirs += [near / name, near.parent / name]
    dirs.append(DATA_DIR / name)
    seen: list[Path] = []
    for d in dirs:
        if d not in seen and d.is_dir():
            seen.append(d)
    return seen


def resolve_config(path: Path) -> Path:
    """A config named `configs/NAME.yaml` (relative) that does not exist here is the copy
    shipped with swarm, as the README's `swarm launch configs/mesh10.yaml` means; any
    other path is taken as it is."""
    if path.is_absolute() or path.exists():
        return path
    parts = path.parts
    if len(parts) >= 2 and parts[0] == "configs":
        candidate = DATA_DIR.joinpath(*parts)
        if candidate.is_file():
            return candidate
    return path
