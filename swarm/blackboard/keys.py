"""Key layout. Everything of a run lives under swarm:v1:<run_id>:..."""

from __future__ import annotations

SCHEMA = "swarm:v1"
RUNS = f"{SCHEMA}:runs"  # zset run_id -> created (epoch s)
SESSIONS = f"{SCHEMA}:sessions"  # zset "RUN/TASK" -> last stored message (epoch ms)


class Keys:
    def __init__(self, run_id: str):
        self.run_id = run_id
        self.prefix = f"{SCHEMA}:{run_id}"

    def __getattr__(self, name: str) -> str:  # meta, tasks, events, agents, notes, usage
        if name.startswith("_"):
            raise AttributeError(name)
        return f"{self.prefix}:{name}"

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def agent(self, name: str) -> str:
        return f"{self.prefix}:agent:{name}"

    def session(self, task_id: str) -> str:
        return f"{self.prefix}:session:{task_id}"

    def inbox(self, agent: str) -> str:
        return f"{self.prefix}:inbox:{agent}"

    def state(self, agent: str) -> str:
        return f"{self.prefix}:state:{agent}"

    def lock(self, path: str) -> str:
        return f"{self.prefix}:lock:{path}"

    def exclusive(self, task_id: str) -> str:
        return f"{self.prefix}:exclusive:{task_id}"

    def usage_of(self, kind: str, name: str) -> str:
        return f"{self.prefix}:usage:{kind}:{name}"
