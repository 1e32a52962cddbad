"""USD per million tokens, by model: pydantic's genai-prices data, overridable per config.

Where a model's price comes from, first match wins:

1. ``pricing:`` in the config (``overrides`` here): the exact ``provider/model``, or the
   longest configured name the model starts with (dated variants).
2. ``copilot/*``: $0. Copilot is paid by subscription, not per token, so only
   ``budget.max_tokens`` limits its turns (genai-prices lists Copilot's per-credit rates;
   they are not charged here).
3. genai-prices' data for the provider (``anthropic``, ``openai``, ``mistral``), as
   bundled with the installed package, at the prices in force today (some prices change
   on a start date). Its own model matching applies, so dated names
   (``claude-sonnet-4-5-20250929``) get their model's price. The data is never fetched:
   genai-prices updates from the network only when its ``UpdatePrices`` is started, which
   swarm never does, and this module reads the bundled snapshot itself, so a snapshot
   another library in the process installed is not used either.
4. A model genai-prices does not know: the highest price of its provider's current
   models, so a budget holds whatever the model costs (never undercounted). Current means
   every model genai-prices lists for the provider without its ``deprecated`` flag (the
   data has no release or retirement dates), priced per text token. Each of the four rates
   is the maximum over those models separately of what they charge for that kind of token
   (a model without a cache rate bills cached tokens as input), at its top long-context
   tier (the request's size is not known in advance). This is deliberately expensive
   (OpenAI's is o1-pro's $150/$600 in genai-prices 0.2.3): give such a model a price in
   ``pricing:`` (a local model behind ``openai`` at a custom base URL: ``{input: 0,
   output: 0}``). ``swarm models`` shows each model's price and its source.

Costs follow genai-prices' rules exactly: the neutral ``Usage`` counts uncached input,
cache reads and cache writes apart (Anthropic's way); a model with no cache-read or
cache-write rate bills those tokens at its input rate; a tiered price (e.g. above 200k
prompt tokens) applies its tier's rate to every token of a request whose prompt (input +
cache reads + cache writes) exceeds the tier's start. Cache writes are charged at the
5-minute rate (``cache_write_mtok``), the TTL swarm's cache breakpoints use.
``price_of`` gives the rates below the first tier; ``cost_usd`` applies the tiers.

Lookups are cached per model (and day), so the per-turn calls cost a dict lookup.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from swarm.providers.types import Usage

# (input, output, cache_read, cache_write) USD per 1M tokens
Price = tuple[float, float, float, float]

PROVIDERS = ("anthropic", "openai", "mistral")  # priced from genai-prices' data
FREE_PROVIDERS = ("copilot",)  # paid by subscription: $0 per token unless overridden
# Shown by `swarm models` (with any model a config names); any other name works too.
LISTED_MODELS: dict[str, tuple[str, ...]] = {
    "anthropic": (
        "claude-opus-5-5",
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
        "claude-opus-4-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
    ),
    "openai": ("gpt-5", "gpt-5-mini", "gpt-4.1"),
    "mistral": ("mistral-large-latest", "mistral-medium-latest", "codestral-latest"),
    "copilot": ("gpt-4.1", "gpt-5", "claude-sonnet-4.5"),
}
CONFIG_SOURCE = "config pricing"
COPILOT_SOURCE = "copilot subscription ($0 per token)"


@dataclass(frozen=True)
class Rate:
    """One kind of token's price: a base rate and, for long prompts, higher tiers."""

    base: float
    tiers: tuple[tuple[int, float], ...] = ()  # (prompt tokens it starts above, rate), ascending

    def at(self, prompt_tokens: int) -> float:
        rate = self.base
        for start, tier_rate in self.tiers:
            if prompt_tokens <= start:
                break
            rate = tier_rate
        return rate

    @property
    def top(self) -> float:
        return max([self.base, *(r for _, r in self.tiers)])


@dataclass(frozen=True)
class PriceInfo:
    """The price one model gets, and where it comes from."""

    model: str  # provider/model as asked
    rates: tuple[Rate, Rate, Rate, Rate]  # input, output, cache read, cache write
    source: str  # "genai-prices 0.2.3", "config pricing", "unknown model: highest ..."
    matched: str = ""  # the genai-prices model id the name matched, if any

    @property
    def price(self) -> Price:
        """Rates below the first tier."""
        i, o, r, w = self.rates
        return (i.base, o.base, r.base, w.base)

    @property
    def tiered(self) -> bool:
        return any(rate.tiers for rate in self.rates)

    def cost(self, usage: Usage) -> float:
        prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_creation_tokens
        i, o, r, w = (rate.at(prompt) for rate in self.rates)
        return (
            usage.input_tokens * i
            + usage.output_tokens * o
            + usage.cache_read_tokens * r
            + usage.cache_creation_tokens * w
        ) / 1_000_000

    def describe(self) -> dict[str, Any]:
        """For `swarm models --json`."""
        i, o, r, w = self.price
        out: dict[str, Any] = {
            "model": self.model.split("/", 1)[-1],
            "input": i,
            "output": o,
            "cache_read": r,
            "cache_write": w,
            "source": self.source,
        }
        if self.tiered:
            out["tiers"] = [
                {"above_prompt_tokens": start, "input": rates[0], "output": rates[1]}
                for start, rates in self._tier_table()
            ]
        if self.matched:
            out["matched"] = self.matched
        return out

    def _tier_table(self) -> list[tuple[int, tuple[float, ...]]]:
        starts = sorted({s for rate in self.rates for s, _ in rate.tiers})
        return [(s, tuple(rate.at(s + 1) for rate in self.rates)) for s in starts]


def price_of(model: str, overrides: dict[str, Price] | None = None) -> Price:
    """(input, output, cache_read, cache_write) USD per 1M tokens, below any tier."""
    return price_info(model, overrides).price


def cost_usd(model: str, usage: Usage, overrides: dict[str, Price] | None = None) -> float:
    """What ``usage`` of ``model`` costs, tiers included."""
    return price_info(model, overrides).cost(usage)


def usage_fields(
    model: str, usage: Usage, overrides: dict[str, Price] | None = None
) -> dict[str, float]:
    """``usage`` and its cost as the board's usage counters record them."""
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_creation_tokens": usage.cache_creation_tokens,
        "usd": cost_usd(model, usage, overrides),
    }


def price_info(model: str, overrides: dict[str, Price] | None = None) -> PriceInfo:
    if overrides:
        name = _override_name(model, overrides)
        if name is not None:
            p = overrides[name]  # a list once it crossed JSON
            return _flat(model, (p[0], p[1], p[2], p[3]), CONFIG_SOURCE)
    return _lookup(model, _today())


def unknown_price(provider: str) -> PriceInfo:
    """What a model of ``provider`` that genai-prices does not know is charged."""
    if provider in FREE_PROVIDERS:
        return _flat(f"{provider}/*", (0.0, 0.0, 0.0, 0.0), COPILOT_SOURCE)
    return _ceiling(provider, _today())


def data_source() -> str:
    import genai_prices

    return f"genai-prices {genai_prices.__version__}"


def _today() -> date:
    return datetime.now(UTC).date()


def _override_name(model: str, overrides: dict[str, Price]) -> str | None:
    if model in overrides:
        return model
    provider = model.split("/", 1)[0] + "/"
    best: str | None = None
    for name in overrides:  # dated variants: my-finetune-2026-01-01
        if name.startswith(provider) and model.startswith(name):
            if best is None or len(name) > len(best):
                best = name
    return best


@functools.lru_cache(maxsize=256)
def _flat(model: str, price: Price, source: str) -> PriceInfo:
    i, o, r, w = (float(x) for x in price)
    return PriceInfo(model, (Rate(i), Rate(o), Rate(r), Rate(w)), source)


@functools.lru_cache(maxsize=1024)
def _lookup(model: str, day: date) -> PriceInfo:
    provider, _, name = model.partition("/")
    if provider in FREE_PROVIDERS:
        return _flat(model, (0.0, 0.0, 0.0, 0.0), COPILOT_SOURCE)
    if provider not in PROVIDERS or not name:
        return _with_model(_ceiling("", day), model)
    try:
        _, info = _snapshot().find_provider_model(name, None, provider, None)
    except LookupError:
        return _with_model(_ceiling(provider, day), model)
    rates = _rates(info.get_prices(_noon(day)))
    if rates is None:  # listed, but not priced per token (e.g. an OCR model)
        return _with_model(_ceiling(provider, day), model)
    return PriceInfo(model, rates, data_source(), info.id)


@functools.lru_cache(maxsize=16)
def _ceiling(provider: str, day: date) -> PriceInfo:
    """The highest rates of the provider's current models ('' = of every priced provider)."""
    tops: list[list[float]] = [[], [], [], []]
    for p in _snapshot().providers:
        if p.id != provider and (provider or p.id not in PROVIDERS):
            continue
        for m in p.models:
            rates = None if m.deprecated else _rates(m.get_prices(_noon(day)))
            for k, rate in enumerate(rates or ()):
                tops[k].append(rate.top)
    if not tops[0]:
        raise LookupError(f"genai-prices lists no priced models for {provider!r}")
    i, o, r, w = (Rate(max(t)) for t in tops)
    who = provider or "known"
    return PriceInfo(f"{provider}/*", (i, o, r, w), f"unknown model: highest {who} price")


def _with_model(info: PriceInfo, model: str) -> PriceInfo:
    return PriceInfo(model, info.rates, info.source)


def _noon(day: date) -> datetime:
    """The instant a day's prices are taken at (start-date prices switch per UTC day; no
    priced provider has time-of-day prices)."""
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def _rates(prices: Any) -> tuple[Rate, Rate, Rate, Rate] | None:
    """genai-prices' ModelPrice as our four rates; None if not priced per text token."""
    i, o = _rate(prices.input_mtok), _rate(prices.output_mtok)
    if i is None or o is None:
        return None
    r = _rate(_cache_rate(prices, "read"))
    w = _rate(_cache_rate(prices, "write"))
    # no rate for cache reads (or writes): those tokens are billed as input
    return (i, o, i if r is None else r, i if w is None else w)


def _cache_rate(prices: Any, kind: str) -> Any:
    if kind == "read":
        return prices.cache_read_mtok
    if prices.cache_write_mtok is not None:
        return prices.cache_write_mtok
    return prices.cache_write_5m_mtok


def _rate(value: Any) -> Rate | None:
    if value is None:
        return None
    tiers = getattr(value, "tiers", None)
    if tiers is None:
        return Rate(float(value))
    return Rate(
        float(value.base),
        tuple((int(t.start), float(t.price)) for t in sorted(tiers, key=lambda t: t.start)),
    )


@functools.lru_cache(maxsize=1)
def _snapshot() -> Any:
    """The bundled data only (never genai-prices' process-wide, possibly fetched, one)."""
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False)
