"""Config loading: every malformed config is rejected naming file, line and field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from swarm.config import load_config
from swarm.errors import ConfigError
from swarm.paths import DATA_DIR

GOOD = """\
name: t
goal: test
model: anthropic/claude-sonnet-5-5
agents:
  - {name: dev, role: developer}
  - {name: doc, role: doc}
phases:
  - name: one
    tasks:
      - {id: a, title: A, role: developer}
      - {id: b, title: B, role: doc, needs: [a]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "swarm.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_good_config_loads(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, GOOD))
    assert [a.name for a in loaded.agents] == ["dev", "doc"]
    assert [t.id for _, t in loaded.tasks] == ["a", "b"]
    assert loaded.topology_edges == [("dev", "doc")]


# (config text, line, field, words the message must contain)
BAD: list[tuple[str, str, int, str | None, str]] = [
    ("yaml syntax", GOOD.replace("goal: test", "goal: [test"), 3, None, "invalid YAML"),
    ("bad name", GOOD.replace("name: t\n", "name: Bad_Name\n", 1), 1, "name", "pattern"),
    ("missing goal", GOOD.replace("goal: test\n", ""), 1, "goal", "field required"),
    (
        "unknown field",
        GOOD.replace("goal: test", "goal: test\ngaol: typo"),
        3,
        "gaol",
        "unknown field",
    ),
    (
        "unknown role",
        GOOD.replace("role: doc}", "role: writer}", 1),
        6,
        "agents[1].role",
        "unknown role 'writer'",
    ),
    (
        "duplicate agent",
        GOOD.replace("{name: doc, role: doc}", "{name: dev, role: doc}"),
        6,
        "agents[1].name",
        "duplicate agent name 'dev'",
    ),
    (
        "count collision",
        GOOD.replace(
            "  - {name: doc, role: doc}",
            "  - {name: doc, role: doc}\n  - {name: dev-1, role: doc}\n"
            "  - {name: dev, role: developer, count: 2}",
        ),
        8,
        "agents[3].name",
        "duplicate agent name 'dev-1'",
    ),
    (
        "unknown need",
        GOOD.replace("needs: [a]", "needs: [zz]"),
        11,
        "phases[0].tasks[1].needs[0]",
        "unknown task id 'zz'",
    ),
    (
        "cycle",
        GOOD.replace(
            "{id: a, title: A, role: developer}", "{id: a, title: A, role: developer, needs: [b]}"
        ),
        11,
        "phases[0].tasks[1].needs",
        "dependency cycle: a -> b -> a",
    ),
    (
        "duplicate task",
        GOOD.replace("{id: b,", "{id: a,"),
        11,
        "phases[0].tasks[1].id",
        "duplicate task id 'a'",
    ),
    (
        "unknown tool",
        GOOD.replace(
            "{name: dev, role: developer}", "{name: dev, role: developer, tools: [read, teleport]}"
        ),
        5,
        "agents[0].tools[1]",
        "unknown tool 'teleport'",
    ),
    (
        "bad model",
        GOOD.replace("model: anthropic/claude-sonnet-5-5", "model: gpt4"),
        3,
        "model",
        "provider/model",
    ),
    (
        "unknown provider",
        GOOD.replace("model: anthropic/", "model: acme/"),
        3,
        "model",
        "unknown provider 'acme'",
    ),
    (
        "task without role",
        GOOD.replace("{id: a, title: A, role: developer}", "{id: a, title: A}"),
        10,
        "phases[0].tasks[0]",
        "exactly one of 'role' or 'agent'",
    ),
    (
        "task role nobody has",
        GOOD.replace("{id: a, title: A, role: developer}", "{id: a, title: A, role: tui}"),
        10,
        "phases[0].tasks[0].role",
        "no agent has role 'tui'",
    ),
    (
        "unknown agent",
        GOOD.replace("{id: a, title: A, role: developer}", "{id: a, title: A, agent: ghost}"),
        10,
        "phases[0].tasks[0].agent",
        "unknown agent 'ghost'",
    ),
    (
        "unknown topology",
        GOOD.replace("goal: test", "goal: test\ntopology: blob"),
        3,
        "topology",
        "unknown topology 'blob'",
    ),
    (
        "edge to unknown agent",
        GOOD.replace("goal: test", "goal: test\ntopology: {kind: custom, edges: [[dev, nobody]]}"),
        3,
        "topology.edges[0]",
        "unknown agent 'nobody'",
    ),
    (
        "duplicate key",
        GOOD.replace("goal: test", "goal: test\ngoal: again"),
        3,
        "goal",
        "duplicate key",
    ),
    (
        "negative budget",
        GOOD.replace("goal: test", "goal: test\nbudget: {max_usd: -1}"),
        3,
        "budget.max_usd",
        "greater than 0",
    ),
    ("empty phases", GOOD.split("phases:")[0] + "phases: []\n", 7, "phases", "at least 1"),
    ("not a mapping", "- just\n- a list\n", 1, None, "must be a YAML mapping"),
    (
        "recursive alias",
        GOOD.replace("goal: test", "goal: test\nextra: &r [1, *r]"),
        3,
        "extra[1]",
        "recursive YAML alias",
    ),
    (
        "alias bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n"
            for i in range(5)
        ),
        1,
        "e[7][8][8][8][9]",
        "expand to more than 100000 values",
    ),
    (
        "unknown model setting",
        GOOD.replace("agents:", "models:\n  anthropic/claude-sonnet-5-5: {temprature: 1}\nagents:"),
        5,
        "models.anthropic/claude-sonnet-5-5.temprature",
        "unknown field",
    ),
    (
        "output larger than half the window",
        GOOD.replace(
            "agents:",
            "models:\n  anthropic/claude-sonnet-5-5:\n    context_window: 8000\n"
            "    max_output_tokens: 6000\nagents:",
        ),
        5,
        "models.anthropic/claude-sonnet-5-5",
        "at most half the context window (8000)",
    ),
    (
        "thinking budget above the output",
        GOOD.replace(
            "{name: dev, role: developer}",
            "{name: dev, role: developer, model_settings: "
            "{max_output_tokens: 2000, thinking_budget: 4000}}",
        ),
        5,
        "agents[0].model_settings",
        "thinking_budget (4000) must be below max_output_tokens (2000)",
    ),
    (
        "bad reasoning effort",
        GOOD.replace(
            "{name: dev, role: developer}",
            "{name: dev, role: developer, model_settings: {reasoning_effort: max}}",
        ),
        5,
        "agents[0].model_settings.reasoning_effort",
        "Input should be",
    ),
    (
        "prune after compact",
        GOOD.replace("agents:", "context: {prune_at: 0.8, compact_at: 0.6}\nagents:"),
        4,
        "context.prune_at",
        "prune_at must be below compact_at",
    ),
    (
        "models key not provider/model",
        GOOD.replace("agents:", "models:\n  sonnet: {context_window: 8000}\nagents:"),
        5,
        "models.sonnet",
        "provider/model",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_bad_config_is_located(
    tmp_path: Path, text: str, line: int, field: str | None, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    exc = info.value
    assert exc.file == str(path)
    assert exc.line == line, str(exc)
    assert exc.field == field, str(exc)
    assert words in exc.message, str(exc)
    assert str(exc).startswith(f"{path}:{line}:")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(Path("/nonexistent/swarm.yaml"))


def test_shipped_configs_are_valid() -> None:
    for name in ("demo.yaml", "mesh10.yaml"):
        load_config(DATA_DIR / "configs" / name)


def test_mesh10_has_the_reference_agents() -> None:
    loaded = load_config(DATA_DIR / "configs" / "mesh10.yaml")
    assert [a.name for a in loaded.agents] == [
        "auth-specialist",
        "tool-developer-1",
        "tool-developer-2",
        "provider-specialist-1",
        "provider-specialist-2",
        "session-developer",
        "cli-developer",
        "tui-developer",
        "test-engineer",
        "doc-specialist",
    ]
    assert loaded.topology_kind == "mesh"
    assert len(loaded.topology_edges) == 45


@pytest.mark.parametrize("command", ["validate", "launch"])
def test_cli_exits_2_with_location(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, GOOD.replace("needs: [a]", "needs: [zz]"))
    proc = subprocess.run(
        [sys.executable, "-m", "swarm.cli", command, str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{path}:11: phases[0].tasks[1].needs[0]: unknown task id 'zz'" in proc.stderr
    assert not (tmp_path / ".swarm").exists()  # nothing was started or written


def test_model_settings_resolve_in_layers(tmp_path: Path) -> None:
    text = GOOD.replace(
        "agents:",
        "models:\n  anthropic/claude-sonnet-5-5: {context_window: 50000, temperature: 0.5}\n"
        "agents:",
    ).replace(
        "{name: dev, role: developer}",
        "{name: dev, role: developer, model_settings: {temperature: 0.1, thinking_budget: 2048}}",
    )
    dev, doc = load_config(write(tmp_path, text)).agents
    assert (dev.info.context_window, dev.info.context_window_source) == (50_000, "config")
    assert dev.info.options.temperature == 0.1 and dev.info.options.thinking_budget == 2048
    assert doc.info.options.temperature == 0.5 and doc.info.options.thinking_budget is None
    assert dev.info.max_output_tokens == 8192


def test_unknown_models_get_a_conservative_window(tmp_path: Path) -> None:
    text = GOOD.replace("model: anthropic/claude-sonnet-5-5", "model: openai/llama-local")
    info = load_config(write(tmp_path, text)).agents[0].info
    assert (info.context_window, info.context_window_source) == (32_768, "default")
    known = load_config(write(tmp_path, GOOD)).agents[0].info
    assert (known.context_window, known.context_window_source) == (200_000, "built-in")
