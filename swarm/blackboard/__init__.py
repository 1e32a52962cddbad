"""The Redis blackboard: the single source of truth of a swarm run."""

from swarm.blackboard.board import Blackboard, TaskView
from swarm.blackboard.connection import RedisHandle, open_redis

__all__ = ["Blackboard", "RedisHandle", "TaskView", "open_redis"]
