"""Cost accounting: the built-in table, dated variants, config overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.config import load_config
from swarm.hosting import agent_specs
from swarm.plan import RunPlan
from swarm.providers.pricing import DEFAULT_PRICE, cost_usd, price_of
from swarm.providers.types import Usage

USAGE = Usage(
    input_tokens=1_000_000,
    output_tokens=100_000,
    cache_read_tokens=2_000_000,
    cache_creation_tokens=400_000,
)


def test_table_and_variants() -> None:
    assert price_of("anthropic/claude-sonnet-4-5-20250929") == price_of(
        "anthropic/claude-sonnet-4-5"
    )
    assert price_of("anthropic/unknown-model") == DEFAULT_PRICE
    assert cost_usd("anthropic/claude-sonnet-4-5", USAGE) == pytest.approx(3.0 + 1.5 + 0.6 + 1.5)
    assert cost_usd("copilot/gpt-4.1", USAGE) == 0.0


def test_config_override_reaches_the_agents(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: p\ngoal: g\nmodel: openai/my-finetune\n"
        "pricing:\n  openai/my-finetune: {input: 2.0, output: 8.0}\n"
        "agents:\n  - {name: a, role: developer}\n"
        "phases:\n  - name: one\n    tasks:\n      - {id: t, title: T, agent: a}\n"
    )
    loaded = load_config(tmp_path / "s.yaml")
    plan = RunPlan(run_id="r", loaded=loaded, repo=tmp_path, workspace={"repo": str(tmp_path)})
    [spec] = agent_specs(plan, "unix:///x", tmp_path)
    pricing = spec.swarm["pricing"]
    assert pricing == {"openai/my-finetune": (2.0, 8.0, 0.2, 2.5)}
    assert cost_usd("openai/my-finetune", USAGE, pricing) == pytest.approx(2.0 + 0.8 + 0.4 + 1.0)
