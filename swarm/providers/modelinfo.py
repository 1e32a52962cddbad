"""What the loop needs to know of a model: its context window, output limit and request
options, from a built-in table, the config's `models:` and the agent's `model_settings`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from swarm.providers.types import RequestOptions

# Context windows (tokens) of the models we name, from the providers' model pages. A
# dated variant (claude-sonnet-4-5-20250929) takes its family's entry.
CONTEXT_WINDOWS: dict[str, int] = {
    "anthropic/claude-opus-5-5": 200_000,
    "anthropic/claude-sonnet-5-5": 200_000,
    "anthropic/claude-haiku-5-5": 200_000,
    "anthropic/claude-opus-4-5": 200_000,
    "anthropic/claude-sonnet-4-5": 200_000,
    "anthropic/claude-haiku-4-5": 200_000,
    "openai/gpt-5": 400_000,
    "openai/gpt-5-mini": 400_000,
    "mistral/mistral-large-latest": 128_000,
    "mistral/devstral-medium-latest": 128_000,
    "copilot/gpt-4.1": 128_000,
    "copilot/gpt-5": 128_000,
    "copilot/claude-sonnet-4.5": 128_000,
}
# Unknown models (a local server's, a new one): small enough for most local models, so the
# loop compacts early rather than meeting an overflow; set models.<name>.context_window.
DEFAULT_CONTEXT_WINDOW = 32_768
DEFAULT_MAX_OUTPUT_TOKENS = 8192


def builtin_context_window(model: str) -> int | None:
    if model in CONTEXT_WINDOWS:
        return CONTEXT_WINDOWS[model]
    family = max((k for k in CONTEXT_WINDOWS if model.startswith(k)), key=len, default=None)
    return CONTEXT_WINDOWS[family] if family else None


class ModelInfo(BaseModel):
    """One agent's model, resolved once at config load (the plan carries it)."""

    model_config = ConfigDict(frozen=True)

    context_window: int = DEFAULT_CONTEXT_WINDOW
    context_window_source: str = "default"  # "built-in", "config" or "default"
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    options: RequestOptions = RequestOptions()
