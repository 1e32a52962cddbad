"""Credentials stay out of what agents run and what the swarm stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.secrets import REDACTED, is_secret_name, redact, scrubbed_env, secret_values
from swarm.tools.bash import Bash
from swarm.tools.builtin import local_context


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("ANTHROPIC_API_KEY", True),
        ("OPENAI_APIKEY", True),
        ("GITHUB_COPILOT_TOKEN", True),
        ("GITHUB_TOKEN", True),
        ("DB_PASSWORD", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("REDIS_URL", True),
        ("PGPASSWORD", True),
        ("MYSQL_PWD", True),
        ("SSH_AUTH_SOCK", False),  # not a credential: hidden from commands, not redacted
        ("PATH", False),
        ("HOME", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("KEYBOARD", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_scrub_and_redact() -> None:
    env = {"ANTHROPIC_API_KEY": "sk-ant-0123456789", "SHORT_TOKEN": "abc", "PATH": "/bin"}
    assert scrubbed_env(env) == {"PATH": "/bin"}
    values = secret_values(env)
    assert values == ["sk-ant-0123456789"]  # too-short values are not redacted
    assert redact("key=sk-ant-0123456789 done", values) == f"key={REDACTED} done"


def test_agent_sockets_are_scrubbed_unless_allowed() -> None:
    env = {"SSH_AUTH_SOCK": "/tmp/agent.1", "KRB5CCNAME": "FILE:/tmp/k", "GITHUB_TOKEN": "x"}
    env["PATH"] = "/bin"
    assert scrubbed_env(env) == {"PATH": "/bin"}
    allowed = scrubbed_env(env, allow={"SSH_AUTH_SOCK", "GITHUB_TOKEN"})
    assert allowed == {"PATH": "/bin", "SSH_AUTH_SOCK": "/tmp/agent.1"}  # never a credential


async def test_bash_does_not_see_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-should-not-leak")
    out = await Bash()({"command": "env"}, local_context(tmp_path))
    assert "Exit code: 0" in out.text
    assert "sk-ant-should-not-leak" not in out.text and "ANTHROPIC_API_KEY" not in out.text


async def test_configured_key_variables_are_secrets_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.secrets import register_secret_names

    monkeypatch.setenv("AZURE_OPENAI_KEYCHAIN", "azure-secret-value-42")
    assert not is_secret_name("AZURE_OPENAI_KEYCHAIN")  # the pattern does not catch it
    register_secret_names({"AZURE_OPENAI_KEYCHAIN"})  # a config's api_key_env
    assert "azure-secret-value-42" in secret_values()
    out = await Bash()({"command": "env"}, local_context(tmp_path))
    assert "azure-secret-value-42" not in out.text
