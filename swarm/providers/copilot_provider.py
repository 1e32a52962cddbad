"""GitHub Copilot's OpenAI-compatible chat endpoint: the OpenAI provider plus Copilot's headers.

The token comes from GITHUB_COPILOT_TOKEN for now (the device-flow login is a later step).
"""

from __future__ import annotations

from collections.abc import Mapping

from swarm.providers.openai_provider import OpenAIProvider

COPILOT_BASE_URL = "https://api.githubcopilot.com"
COPILOT_CHAT_VERSION = "0.26.7"
COPILOT_HEADERS: dict[str, str] = {
    "Editor-Version": "vscode/1.99.3",
    "Editor-Plugin-Version": f"copilot-chat/{COPILOT_CHAT_VERSION}",
    "Copilot-Integration-Id": "vscode-chat",
    "User-Agent": f"GitHubCopilotChat/{COPILOT_CHAT_VERSION}",
    "Openai-Intent": "conversation-panel",
}


class CopilotProvider(OpenAIProvider):
    name = "copilot"

    def __init__(
        self,
        token: str | None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(
            api_key=token,
            base_url=base_url or COPILOT_BASE_URL,
            timeout_s=timeout_s,
            default_headers={**COPILOT_HEADERS, **(headers or {})},
            max_tokens_param="max_tokens",
        )
