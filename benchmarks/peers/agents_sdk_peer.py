"""The OpenAI Agents SDK (`Agent`, `Runner.run`, Chat Completions model) on the
benchmark's workload (see __init__.py).

Run with the python of the Agents SDK venv: openai-agents; no swarm. Tracing is off:
it would upload traces to the platform, which this benchmark has no key for."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI


async def main(base_url: str, repo: Path, agents: int, turns: int) -> None:
    set_tracing_disabled(True)

    @function_tool
    async def read(file_path: str) -> str:
        """Read a file"""
        return (repo / file_path).read_text()

    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    model = OpenAIChatCompletionsModel(model="gpt-4.1-mini", openai_client=client)

    async def one(a: int) -> None:
        agent = Agent(
            name=f"dev-{a}",
            instructions=f"Agent: dev-{a}\nYou read files.",
            tools=[read],
            model=model,
        )
        result = await Runner.run(agent, f"Task t{a}: read the files", max_turns=turns + 5)
        if result.final_output != "done":
            raise SystemExit(f"agent {a} ended on {result.final_output!r}")

    await asyncio.gather(*(one(a) for a in range(agents)))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
