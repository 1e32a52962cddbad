"""AutoGen AgentChat `AssistantAgent` on the benchmark's workload (see __init__.py).

Run with the python of the AutoGen venv: autogen-agentchat, autogen-ext[openai]; no swarm."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import TextMessage
from autogen_core.tools import FunctionTool
from autogen_ext.models.openai import OpenAIChatCompletionClient


async def main(base_url: str, repo: Path, agents: int, turns: int) -> None:
    async def read(file_path: str) -> str:
        return (repo / file_path).read_text()

    tool = FunctionTool(read, description="Read a file", name="read")
    client = OpenAIChatCompletionClient(
        model="gpt-4.1-mini", base_url=base_url, api_key="bench", max_retries=0
    )

    async def one(a: int) -> None:
        agent = AssistantAgent(
            f"dev_{a}",
            client,
            tools=[tool],
            system_message=f"Agent: dev-{a}\nYou read files.",
            max_tool_iterations=turns + 1,
            reflect_on_tool_use=False,
        )
        result = await agent.run(task=f"Task t{a}: read the files")
        last = result.messages[-1]
        if not isinstance(last, TextMessage) or last.content != "done":
            raise SystemExit(f"agent {a} ended on {last!r}")

    await asyncio.gather(*(one(a) for a in range(agents)))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
