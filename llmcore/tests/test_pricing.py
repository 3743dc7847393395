"""Cost per call from the price table, overrides, cached input and unknown models."""

from __future__ import annotations

import pytest

from llmcore.cache import cache_key, request_cache_key
from llmcore.pricing import Price, cost_usd, is_priced, price_for
from llmcore.types import LLMRequest, Message, Usage

MILLION = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


def test_a_known_model_costs_its_list_price():
    # Seed 004: GPT-4o-mini $0.15 in / $0.60 out per 1M tokens.
    assert cost_usd("openai", "gpt-4o-mini", MILLION) == pytest.approx(0.75)
    assert cost_usd("openai", "gpt-4o", Usage(1000, 500)) == pytest.approx(0.0025 + 0.005)


def test_dated_snapshots_use_their_family_price():
    assert price_for("openai", "gpt-4o-mini-2024-07-18") == price_for("openai", "gpt-4o-mini")
    assert price_for("anthropic", "claude-3-5-sonnet-20241022").input == 3.0
    # The longest matching family wins: gpt-4o-mini is not priced as gpt-4o.
    assert price_for("openai", "gpt-4o-mini-2024-07-18").input == 0.15


def test_cached_input_tokens_are_billed_at_the_cached_price():
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cached_tokens=400_000)
    # 600k at $2.50 + 400k at $1.25
    assert cost_usd("openai", "gpt-4o", usage) == pytest.approx(1.5 + 0.5)


def test_cached_tokens_without_a_cached_price_cost_the_input_price():
    usage = Usage(input_tokens=1_000_000, cached_tokens=1_000_000)
    assert cost_usd("openai", "gpt-4-turbo", usage) == pytest.approx(10.0)


def test_an_unknown_model_costs_zero_and_says_so():
    assert cost_usd("openai", "gpt-99-ultra", MILLION) == 0.0
    assert not is_priced("openai", "gpt-99-ultra")
    assert not is_priced("huggingface", "meta-llama/Llama-3.1-8B-Instruct")
    assert not is_priced("custom", "house-model")


@pytest.mark.parametrize("provider", ["ollama", "vllm", "llamacpp", "offline"])
def test_local_providers_are_free_and_known(provider):
    assert cost_usd(provider, "anything", MILLION) == 0.0
    assert is_priced(provider, "anything")


def test_github_models_free_tier_is_known_to_be_free():
    assert is_priced("github", "openai/gpt-4.1")
    assert cost_usd("github", "openai/gpt-4.1", MILLION) == 0.0


def test_overrides_win_and_accept_dicts_lists_and_wildcards():
    overrides = {
        "openai": {"gpt-4o": {"input": 1.0, "output": 2.0, "cached_input": 0.5}},
        "huggingface": {"*": [0.1, 0.2]},
        "ollama": {"*": {"input": 0.01, "output": 0.01}},
    }
    assert cost_usd("openai", "gpt-4o-2024-08-06", MILLION, overrides) == pytest.approx(3.0)
    # Overriding a family does not reprice a more specific model the table knows.
    assert cost_usd("openai", "gpt-4o-mini", MILLION, overrides) == pytest.approx(0.75)
    assert cost_usd("openai", "gpt-4.1", MILLION, overrides) == pytest.approx(10.0)
    assert cost_usd("huggingface", "any/model", MILLION, overrides) == pytest.approx(0.3)
    assert cost_usd("ollama", "llama3.2", MILLION, overrides) == pytest.approx(0.02)
    assert cost_usd("openai", "gpt-4o", MILLION, {"openai": {"*": [0, 0]}}) == 0.0


def test_a_bad_override_is_a_clear_error():
    with pytest.raises(ValueError, match="a price is"):
        Price.from_value("cheap")


def test_cache_keys_are_stable_and_sensitive_to_what_matters():
    a = cache_key("openai", "gpt-4o", "prompt", {"temperature": 0.2, "max_tokens": 10})
    b = cache_key("openai", "gpt-4o", "prompt", {"max_tokens": 10, "temperature": 0.2})
    assert a == b
    assert a.startswith("llmcore:response:")
    assert cache_key("openai", "gpt-4o", "prompt", {"temperature": 0.3, "max_tokens": 10}) != a
    assert cache_key("groq", "gpt-4o", "prompt", {"temperature": 0.2, "max_tokens": 10}) != a
    assert "prompt" not in a
    r1 = LLMRequest(messages=[Message("user", "x")], temperature=0.1)
    r2 = LLMRequest(messages=[Message("user", "x")], temperature=0.1, metadata={"job": 1})
    r3 = LLMRequest(messages=[Message("user", "y")], temperature=0.1)
    assert request_cache_key("openai", "m", r1) == request_cache_key("openai", "m", r2)
    assert request_cache_key("openai", "m", r1) != request_cache_key("openai", "m", r3)
