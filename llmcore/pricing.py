"""What a call cost, from a per-provider, per-model price table (USD per 1M tokens).

Prices are list prices at the time of writing; override any of them (LLM_PRICES in settings)
with the same shape:

    {"openai": {"gpt-4o": {"input": 2.5, "output": 10.0, "cached_input": 1.25}},
     "groq": {"*": {"input": 0, "output": 0}}}          # "*": every model of the provider

A model name matches the longest table key it starts with, so dated snapshots
("gpt-4o-mini-2024-07-18", "claude-3-5-sonnet-20241022") find their family's price. A model the
table does not know costs 0 and is reported as unknown (`is_priced` / `price_for` → None), never
silently as free. Local providers (Ollama, vLLM, llama.cpp, offline) are free.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmcore.types import Usage

logger = logging.getLogger(__name__)

PER_TOKENS = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    output: float
    # Price of prompt tokens served from the provider's cache; None means the input price.
    cached_input: float | None = None

    @classmethod
    def from_value(cls, value: Any) -> Price:
        if isinstance(value, Price):
            return value
        if isinstance(value, list | tuple) and len(value) in (2, 3):
            return cls(*(float(v) for v in value))
        if isinstance(value, Mapping):
            cached = value.get("cached_input")
            return cls(
                input=float(value.get("input", 0)),
                output=float(value.get("output", 0)),
                cached_input=None if cached is None else float(cached),
            )
        raise ValueError(f"a price is {{'input', 'output', 'cached_input'}}, got {value!r}")


FREE = Price(0.0, 0.0, 0.0)

LOCAL_PROVIDERS = frozenset({"ollama", "vllm", "llamacpp", "offline"})

PRICES: dict[str, dict[str, Price]] = {
    "openai": {
        "gpt-5": Price(1.25, 10.0, 0.125),
        "gpt-5-mini": Price(0.25, 2.0, 0.025),
        "gpt-5-nano": Price(0.05, 0.40, 0.005),
        "gpt-4.1": Price(2.0, 8.0, 0.50),
        "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
        "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
        "gpt-4o": Price(2.50, 10.0, 1.25),
        "gpt-4o-mini": Price(0.15, 0.60, 0.075),
        "gpt-4-turbo": Price(10.0, 30.0),
        "gpt-4": Price(30.0, 60.0),
        "gpt-3.5-turbo": Price(0.50, 1.50),
        "o1": Price(15.0, 60.0, 7.50),
        "o1-mini": Price(1.10, 4.40, 0.55),
        "o3": Price(2.0, 8.0, 0.50),
        "o3-mini": Price(1.10, 4.40, 0.55),
        "o4-mini": Price(1.10, 4.40, 0.275),
    },
    "anthropic": {
        "claude-opus-4-5": Price(5.0, 25.0, 0.50),
        "claude-opus-4-1": Price(15.0, 75.0, 1.50),
        "claude-opus-4": Price(15.0, 75.0, 1.50),
        "claude-sonnet-4-5": Price(3.0, 15.0, 0.30),
        "claude-sonnet-4": Price(3.0, 15.0, 0.30),
        "claude-haiku-4-5": Price(1.0, 5.0, 0.10),
        "claude-3-7-sonnet": Price(3.0, 15.0, 0.30),
        "claude-3-5-sonnet": Price(3.0, 15.0, 0.30),
        "claude-3-5-haiku": Price(0.80, 4.0, 0.08),
        "claude-3-opus": Price(15.0, 75.0, 1.50),
        "claude-3-haiku": Price(0.25, 1.25, 0.03),
    },
    "groq": {
        "llama-3.3-70b-versatile": Price(0.59, 0.79),
        "llama-3.1-70b-versatile": Price(0.59, 0.79),
        "llama-3.1-8b-instant": Price(0.05, 0.08),
        "openai/gpt-oss-120b": Price(0.15, 0.75),
        "openai/gpt-oss-20b": Price(0.10, 0.50),
    },
    # GitHub Models' free tier is rate-limited rather than billed.
    "github": {"*": FREE},
    "cloudflare": {
        "@cf/meta/llama-3.1-8b-instruct": Price(0.282, 0.827),
    },
}


def _best_key(table: Mapping[str, Any], model: str) -> str | None:
    """The exact key, else the longest key `model` starts with ("*" never matches here)."""
    if model in table and model != "*":
        return model
    best = None
    for key in table:
        if key != "*" and model.startswith(key) and (best is None or len(key) > len(best)):
            best = key
    return best


def price_for(
    provider: str, model: str, overrides: Mapping[str, Any] | None = None
) -> Price | None:
    """The price of `model` at `provider`, or None when nobody knows it.

    An override for a model family wins unless the built-in table knows a more specific one
    (overriding "gpt-4o" does not reprice "gpt-4o-mini"); an override "*" covers the rest of
    that provider's models.
    """
    table = overrides.get(provider) if overrides else None
    custom: Mapping[str, Any] = table if isinstance(table, Mapping) else {}
    builtin = PRICES.get(provider, {})
    custom_key = _best_key(custom, model)
    builtin_key = _best_key(builtin, model)
    if custom_key is not None and (builtin_key is None or len(custom_key) >= len(builtin_key)):
        return Price.from_value(custom[custom_key])
    if "*" in custom:
        return Price.from_value(custom["*"])
    if provider in LOCAL_PROVIDERS:
        return FREE
    if builtin_key is not None:
        return builtin[builtin_key]
    return builtin.get("*")


def is_priced(provider: str, model: str, overrides: Mapping[str, Any] | None = None) -> bool:
    return price_for(provider, model, overrides) is not None


_warned: set[tuple[str, str]] = set()


def cost_usd(
    provider: str,
    model: str,
    usage: Usage,
    overrides: Mapping[str, Any] | None = None,
) -> float:
    """USD for `usage`; 0.0 for a model without a price (see `is_priced`)."""
    price = price_for(provider, model, overrides)
    if price is None:
        if (provider, model) not in _warned:
            _warned.add((provider, model))
            logger.warning(
                "no price for this model; its calls are recorded at cost 0",
                extra={"provider": provider, "model": model},
            )
        return 0.0
    cached = min(max(usage.cached_tokens, 0), usage.input_tokens)
    uncached = usage.input_tokens - cached
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = uncached * price.input + cached * cached_price + usage.output_tokens * price.output
    return round(total / PER_TOKENS, 8)
