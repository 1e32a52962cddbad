"""The peers of the side-by-side CPU benchmark (benchmarks/peers_cpu.py).

Each peer is a script in this folder, run with the python of a virtualenv of its own
(`.bench-peers/<name>/` under the checkout, made on first use by `benchmarks.peers.env`
with the pinned versions below), never with swarm's. A peer script imports only its
framework and the standard library, and is run as

    <venv>/bin/python benchmarks/peers/<script> BASE_URL REPO AGENTS TURNS

It runs AGENTS concurrent agents in one process, agent `a` holding one task (system
prompt `Agent: dev-<a>`, user message `Task t<a>: read the files`) that the scripted
server answers with TURNS `read` tool calls and a final answer, and exits non-zero if an
agent did not reach the final answer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Peer:
    name: str  # the venv's folder name and the key in results
    label: str  # as the doc names it
    script: str  # file in this folder
    pins: tuple[str, ...]  # pip requirements, exact versions
    versions_of: tuple[str, ...]  # distributions whose installed version the doc shows

    @property
    def path(self) -> Path:
        return HERE / self.script


PEERS: tuple[Peer, ...] = (
    Peer(
        "langgraph",
        "LangGraph `create_react_agent`",
        "langgraph_peer.py",
        ("langgraph==1.2.24", "langchain-openai==1.8.1"),
        ("langgraph", "langchain-openai", "langchain-core", "openai"),
    ),
    Peer(
        "autogen",
        "AutoGen AgentChat",
        "autogen_peer.py",
        ("autogen-agentchat==0.7.5", "autogen-ext[openai]==0.7.5"),
        ("autogen-agentchat", "autogen-ext", "openai"),
    ),
    Peer(
        "agents_sdk",
        "OpenAI Agents SDK",
        "agents_sdk_peer.py",
        ("openai-agents==0.24.0",),
        ("openai-agents", "openai"),
    ),
)
