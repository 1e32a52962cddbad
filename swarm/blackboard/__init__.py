"""The Redis blackboard: the single source of truth of a swarm run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarm.blackboard.board import Blackboard, TaskView
    from swarm.blackboard.connection import RedisHandle, open_redis

__all__ = ["Blackboard", "RedisHandle", "TaskView", "open_redis"]


def __getattr__(name: str) -> Any:
    """Imported on first use: the embedded server's watchdog (`python -m
    swarm.blackboard.redis_server`) is a long-lived process that needs none of this."""
    if name in ("Blackboard", "TaskView"):
        from swarm.blackboard import board

        return getattr(board, name)
    if name in ("RedisHandle", "open_redis"):
        from swarm.blackboard import connection

        return getattr(connection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
