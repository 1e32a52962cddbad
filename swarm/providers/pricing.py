"""USD per million tokens, by model. Overridable per config (`pricing:`)."""

from __future__ import annotations

from swarm.providers.types import Usage

# (input, output, cache_read, cache_write) USD per 1M tokens; public list prices.
PRICES: dict[str, tuple[float, float, float, float]] = {
    # The 5.x tiers are assumed to cost what the 4.5 tier of the same size does; check
    # your provider's price list and override with `pricing:` in the config.
    "anthropic/claude-opus-5-5": (5.0, 25.0, 0.5, 6.25),
    "anthropic/claude-sonnet-5-5": (3.0, 15.0, 0.3, 3.75),
    "anthropic/claude-haiku-5-5": (1.0, 5.0, 0.1, 1.25),
    "anthropic/claude-opus-4-5": (5.0, 25.0, 0.5, 6.25),
    "anthropic/claude-sonnet-4-5": (3.0, 15.0, 0.3, 3.75),
    "anthropic/claude-haiku-4-5": (1.0, 5.0, 0.1, 1.25),
    "openai/gpt-5": (1.25, 10.0, 0.125, 1.25),
    "openai/gpt-5-mini": (0.25, 2.0, 0.025, 0.25),
    "mistral/mistral-large-latest": (2.0, 6.0, 2.0, 2.0),
    "mistral/devstral-medium-latest": (0.4, 2.0, 0.4, 0.4),
    # Copilot is paid by subscription, not per token: turns cost $0 here, and only
    # budget.max_tokens limits them.
    "copilot/gpt-4.1": (0.0, 0.0, 0.0, 0.0),
    "copilot/gpt-5": (0.0, 0.0, 0.0, 0.0),
    "copilot/claude-sonnet-4.5": (0.0, 0.0, 0.0, 0.0),
}
# Unknown models are charged at this rate so a budget still holds (documented).
DEFAULT_PRICE = (3.0, 15.0, 0.3, 3.75)


def price_of(
    model: str, overrides: dict[str, tuple[float, float, float, float]] | None = None
) -> tuple[float, float, float, float]:
    table = {**PRICES, **(overrides or {})}
    if model in table:
        return table[model]
    provider = model.split("/", 1)[0]
    for name, price in table.items():  # dated variants: claude-sonnet-4-5-20250929
        if model.startswith(name) and name.startswith(provider):
            return price
    return DEFAULT_PRICE


def cost_usd(
    model: str, usage: Usage, overrides: dict[str, tuple[float, float, float, float]] | None = None
) -> float:
    p_in, p_out, p_read, p_write = price_of(model, overrides)
    return (
        usage.input_tokens * p_in
        + usage.output_tokens * p_out
        + usage.cache_read_tokens * p_read
        + usage.cache_creation_tokens * p_write
    ) / 1_000_000
