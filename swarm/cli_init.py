"""`swarm init [DIR]` on the command line (logic: swarm.init)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from swarm.errors import SwarmError


def init(
    directory: Annotated[Path, typer.Argument(help="the repository (default: here)")] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="overwrite files that exist and differ")
    ] = False,
) -> None:
    """Write a starting configs/swarm.yaml, agents/ (the role cards it uses),
    tools/commands.yaml (the repository's own test and lint commands) and .swarm/ in
    .gitignore. Files that exist are kept unless --force; a second run changes nothing."""
    from swarm.cli import _fail
    from swarm.config import load_config
    from swarm.init import CONFIG_FILE, init_repo
    from swarm.tools.repo_tools import check_repo_tools

    try:
        result = init_repo(directory, force)
    except SwarmError as exc:
        _fail(exc)
    print("\n".join(result.lines))
    root = directory.resolve()
    try:
        loaded = load_config(root / CONFIG_FILE)
        check_repo_tools(root, [a.tools for a in loaded.agents])
    except SwarmError as exc:  # a config the user edited (kept) may not validate
        print(f"warning: {CONFIG_FILE} does not validate: {exc}")
        raise typer.Exit(2) from None
    if result.changed:
        print(
            f"{result.changed} file(s) written; {CONFIG_FILE} is valid "
            f"({len(loaded.agents)} agents, {len(loaded.tasks)} tasks). Set its goal and tasks, "
            f"then: swarm launch {CONFIG_FILE}"
        )
    else:
        print(f"nothing changed: {root} is already set up ({CONFIG_FILE} is valid)")
