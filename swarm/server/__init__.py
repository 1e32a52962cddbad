"""`swarm serve`: an HTTP API with resumable event streams (docs/serve.md)."""

from swarm.server.app import create_app

__all__ = ["create_app"]
