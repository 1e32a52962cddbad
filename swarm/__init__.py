"""swarm: a multi-agent coding swarm orchestrator."""

__version__ = "0.1.0"
