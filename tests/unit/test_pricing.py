"""Cost accounting: genai-prices' data (tiers, cache rates, dated names), the ceiling for
unknown models, Copilot at $0, config overrides; offline and cached."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from genai_prices import data_snapshot
from genai_prices.data import providers as bundled

from swarm.config import load_config
from swarm.hosting import agent_specs
from swarm.plan import RunPlan
from swarm.providers import pricing
from swarm.providers.pricing import (
    PROVIDERS,
    cost_usd,
    data_source,
    price_info,
    price_of,
    unknown_price,
)
from swarm.providers.registry import describe_models
from swarm.providers.types import Usage

USAGE = Usage(
    input_tokens=1_000_000,
    output_tokens=100_000,
    cache_read_tokens=2_000_000,
    cache_creation_tokens=400_000,
)
SOURCE = f"genai-prices {genai_prices.__version__}"


def test_the_configured_models_are_priced_from_genai_prices() -> None:
    # genai-prices knows the 5.5 tier (these are its figures, not the old hand-written ones)
    sonnet = price_info("anthropic/claude-sonnet-5-5")
    assert sonnet.source == SOURCE == data_source()
    assert sonnet.price == (2.0, 10.0, 0.1, 2.5)
    assert price_of("anthropic/claude-opus-5-5") == (4.0, 20.0, 0.2, 5.0)
    assert price_info("anthropic/claude-haiku-5-5").matched == "claude-haiku-5-5"
    assert price_of("openai/gpt-5") == (1.25, 10.0, 0.125, 1.25)  # no cache-write rate: input
    # dated names get their model's price
    assert price_of("anthropic/claude-sonnet-4-5-20250929") == price_of(
        "anthropic/claude-sonnet-4-5"
    )
    assert price_info("anthropic/claude-sonnet-5-5-20260101").matched == "claude-sonnet-5-5"
    assert cost_usd("anthropic/claude-sonnet-5-5", USAGE) == pytest.approx(2.0 + 1.0 + 0.2 + 1.0)


def test_long_context_tiers_apply_to_the_whole_request() -> None:
    info = price_info("anthropic/claude-sonnet-4-5")  # 3/15 up to 200k prompt tokens, then 6/22.5
    assert info.tiered and info.price == (3.0, 15.0, 0.3, 3.75)
    small = Usage(input_tokens=100_000, output_tokens=1_000, cache_read_tokens=100_000)
    assert cost_usd("anthropic/claude-sonnet-4-5", small) == pytest.approx(
        (100_000 * 3.0 + 1_000 * 15.0 + 100_000 * 0.3) / 1e6
    )
    # the prompt counts cache reads and writes: 100k + 100k + 1 > 200k
    big = small.model_copy(update={"cache_creation_tokens": 1})
    assert cost_usd("anthropic/claude-sonnet-4-5", big) == pytest.approx(
        (100_000 * 6.0 + 1_000 * 22.5 + 100_000 * 0.6 + 1 * 7.5) / 1e6
    )


def _current_token_models() -> list[tuple[str, str]]:
    out = []
    now = datetime.now(UTC)
    for p in bundled:
        if p.id not in PROVIDERS:
            continue
        for m in p.models:
            prices = m.get_prices(now)
            if m.deprecated or prices.input_mtok is None or prices.output_mtok is None:
                continue
            if prices.requests_kcount is not None:  # a per-request fee: not a token price
                continue
            if not m.is_match(m.id):  # reached by other names only (codestral-latest)
                continue
            out.append((p.id, m.id))
    return out


@pytest.mark.parametrize("prompt", [1_000, 150_000, 300_000, 1_200_000])
def test_costs_match_genai_prices_own_calculation(prompt: int) -> None:
    """Exactly what genai-prices' calc_price says, for every current model of each provider
    (its usage counts cache reads and writes inside input_tokens; ours apart)."""
    models = _current_token_models()
    assert len(models) > 50
    for provider, model in models:
        usage = Usage(
            input_tokens=prompt // 2,
            output_tokens=prompt // 50,
            cache_read_tokens=prompt // 3,
            cache_creation_tokens=prompt - prompt // 2 - prompt // 3,
        )
        theirs = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=prompt,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_creation_tokens,
            ),
            model,
            provider_id=provider,
        ).total_price
        ours = cost_usd(f"{provider}/{model}", usage)
        assert ours == pytest.approx(float(theirs), rel=1e-9), (provider, model, prompt)


def test_unknown_models_pay_the_providers_highest_current_price() -> None:
    now = datetime.now(UTC)
    for provider in PROVIDERS:
        ceiling = unknown_price(provider)
        assert ceiling.source == f"unknown model: highest {provider} price"
        info = price_info(f"{provider}/no-such-model-9")
        assert info.price == ceiling.price and info.source == ceiling.source
        assert info.model == f"{provider}/no-such-model-9"
        # never below what any current model of the provider charges, at any tier
        for p in bundled:
            if p.id != provider:
                continue
            for m in p.models:
                rates = pricing._rates(m.get_prices(now))
                if m.deprecated or rates is None:
                    continue
                for k in range(4):
                    assert ceiling.price[k] >= rates[k].top, (provider, m.id, k)
        # and it is some current model's rate: the highest, not a made-up figure
        assert ceiling.price[0] in {
            r.top
            for p in bundled
            if p.id == provider
            for m in p.models
            if not m.deprecated and (rs := pricing._rates(m.get_prices(now)))
            for r in rs[:1]
        }
    # a budget never undercounts an unknown model: it costs at least the dearest known one
    assert price_of("anthropic/claude-unknown")[1] >= price_of("anthropic/claude-opus-5-5")[1]
    assert price_info("nowhere/model").source == "unknown model: highest known price"


def test_copilot_is_free_unless_overridden() -> None:
    assert cost_usd("copilot/gpt-4.1", USAGE) == 0.0
    assert cost_usd("copilot/anything-new", USAGE) == 0.0
    assert price_info("copilot/gpt-5").source == "copilot subscription ($0 per token)"
    own = {"copilot/gpt-5": (1.0, 2.0, 0.1, 1.25)}
    assert price_info("copilot/gpt-5", own).source == "config pricing"
    assert cost_usd("copilot/gpt-5", USAGE, own) == pytest.approx(1.0 + 0.2 + 0.2 + 0.5)


def test_overrides_win_and_cover_dated_variants() -> None:
    own = {
        "anthropic/claude-sonnet-5-5": (1.0, 1.0, 1.0, 1.0),
        "openai/my-ft": (2.0, 8.0, 0.2, 2.5),
        "openai/my-ft-long": (3.0, 9.0, 0.3, 3.0),
    }
    assert price_of("anthropic/claude-sonnet-5-5", own) == (1.0, 1.0, 1.0, 1.0)
    assert price_of("openai/my-ft-2026-01-01", own) == (2.0, 8.0, 0.2, 2.5)
    assert price_of("openai/my-ft-long-v2", own) == (3.0, 9.0, 0.3, 3.0)  # the longest match
    assert price_info("anthropic/claude-sonnet-5-5-20260101", own).source == "config pricing"
    # a price that crossed JSON (a list) works the same
    assert price_of("openai/my-ft", {"openai/my-ft": [2.0, 8.0, 0.2, 2.5]}) == (2.0, 8.0, 0.2, 2.5)  # type: ignore[dict-item]


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
    overrides = spec.swarm["pricing"]
    assert overrides == {"openai/my-finetune": (2.0, 8.0, 0.2, 2.5)}
    assert cost_usd("openai/my-finetune", USAGE, overrides) == pytest.approx(2.0 + 0.8 + 0.4 + 1.0)


def test_prices_never_come_from_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """genai-prices can fetch fresh data (UpdatePrices) and then prices from that process-wide
    snapshot: swarm never starts it, opens no connection, and reads the bundled data even
    when another library installed a snapshot of its own."""

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("pricing opened a connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    pricing._lookup.cache_clear()
    pricing._ceiling.cache_clear()
    pricing._snapshot.cache_clear()
    bogus = data_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", bogus)
    assert price_of("anthropic/claude-sonnet-5-5") == (2.0, 10.0, 0.1, 2.5)
    assert unknown_price("openai").price[1] > 0
    from genai_prices.update_prices import _shared_updater

    assert _shared_updater.thread is None and _shared_updater.ref_count == 0


def test_lookups_are_cached_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    pricing._lookup.cache_clear()
    snap = pricing._snapshot()
    calls: list[str] = []
    real = snap.find_provider_model

    def counting(model_ref: str, *args: object) -> object:
        calls.append(model_ref)
        return real(model_ref, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(snap, "find_provider_model", counting)
    for _ in range(100):
        cost_usd("anthropic/claude-sonnet-5-5", USAGE)
        cost_usd("openai/unknown-thing", USAGE)
    assert calls == ["claude-sonnet-5-5", "unknown-thing"]


def test_decimal_prices_become_floats() -> None:
    rate = pricing._rate(Decimal("0.125"))
    assert rate is not None and isinstance(rate.base, float) and rate.base == 0.125


def test_swarm_models_says_which_price_and_from_where(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = describe_models(
        models=["anthropic/claude-sonnet-5-5", "openai/my-local-llama", "mistral/mystery"],
        pricing={"openai/my-local-llama": (0.0, 0.0, 0.0, 0.0)},
    )
    by = {r["provider"]: r for r in rows}
    prices = {
        f"{r['provider']}/{p['model']}": p for r in rows for p in [*r["prices"], r["unknown_price"]]
    }
    assert prices["anthropic/claude-sonnet-5-5"]["source"] == SOURCE
    assert prices["anthropic/claude-sonnet-5-5"]["input"] == 2.0
    assert prices["anthropic/claude-sonnet-4-5"]["tiers"][0]["above_prompt_tokens"] == 200_000
    assert prices["openai/my-local-llama"]["source"] == "config pricing"
    assert prices["mistral/mystery"]["source"] == "unknown model: highest mistral price"
    assert prices["mistral/*"]["input"] == unknown_price("mistral").price[0]
    assert prices["copilot/gpt-4.1"]["source"].startswith("copilot subscription")
    assert "my-local-llama" in by["openai"]["models"]
