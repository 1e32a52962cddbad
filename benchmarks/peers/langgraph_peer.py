"""LangGraph `create_react_agent` on the benchmark's workload (see __init__.py).

Run with the python of the LangGraph venv: langgraph, langchain-openai; no swarm."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from langgraph.prebuilt import create_react_agent


async def main(base_url: str, repo: Path, agents: int, turns: int) -> None:
    @tool
    async def read(file_path: str) -> str:
        """Read a file"""
        return (repo / file_path).read_text()

    model = ChatOpenAI(model="gpt-4.1-mini", base_url=base_url, api_key="bench", max_retries=0)

    async def one(a: int) -> None:
        # one agent graph per agent, as each agent has a prompt of its own
        agent = create_react_agent(model, [read], prompt=f"Agent: dev-{a}\nYou read files.")
        out = await agent.ainvoke(
            {"messages": [("user", f"Task t{a}: read the files")]},
            config={"recursion_limit": 2 * turns + 10},
        )
        last = out["messages"][-1]
        if last.content != "done" or getattr(last, "tool_calls", None):
            raise SystemExit(f"agent {a} ended on {last!r}")

    await asyncio.gather(*(one(a) for a in range(agents)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
