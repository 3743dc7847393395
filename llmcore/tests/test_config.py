"""Provider configuration from the environment: the three forms, defaults and clear errors."""

from __future__ import annotations

import pytest

from llmcore.config import (
    call_deadline_from_env,
    describe_providers,
    prices_from_env,
    provider_names_from_env,
    providers_from_env,
    response_cache_enabled,
)
from llmcore.providers import build_providers

ALL_KEYS = {
    "OPENAI_API_KEY": "sk-proj-SECRETopenai",
    "ANTHROPIC_API_KEY": "sk-ant-SECRETanthropic",
    "GROQ_API_KEY": "gsk_SECRETgroq",
    "GITHUB_TOKEN": "ghp_SECRETgithub",
    "HUGGINGFACE_API_KEY": "hf_SECREThf",
    "CLOUDFLARE_API_KEY": "SECRETcloudflare",
    "CLOUDFLARE_ACCOUNT_ID": "acc123",
}


def names(env):
    return [c.name for c in providers_from_env(env)]


def by_name(env):
    return {c.name: c for c in providers_from_env(env)}


def test_with_nothing_set_only_the_offline_provider_answers():
    assert names({}) == ["offline"]


def test_by_default_every_provider_with_a_key_is_used_in_the_seeds_order_then_offline():
    assert names(ALL_KEYS) == [
        "groq",
        "openai",
        "anthropic",
        "github",
        "huggingface",
        "cloudflare",
        "offline",
    ]
    assert names({"OPENAI_API_KEY": "sk-1", "GROQ_API_KEY": "gsk_1"}) == [
        "groq",
        "openai",
        "offline",
    ]


def test_local_servers_join_the_default_chain_when_their_base_url_is_set():
    env = {"OLLAMA_BASE_URL": "http://localhost:11434", "OPENAI_API_KEY": "sk-1"}
    assert names(env) == ["openai", "ollama", "offline"]
    assert by_name(env)["ollama"].base_url == "http://localhost:11434/v1"


def test_llm_providers_sets_exactly_the_chain_and_its_order():
    env = {**ALL_KEYS, "LLM_PROVIDERS": "anthropic, openai"}
    assert names(env) == ["anthropic", "openai"]


def test_llm_providers_accepts_common_spellings():
    env = {**ALL_KEYS, "LLM_PROVIDERS": "GitHub-Models,HF,llama.cpp,Offline"}
    assert names(env) == ["github", "huggingface", "llamacpp", "offline"]


def test_an_unknown_provider_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown LLM provider 'gpt'; valid names: .*openai"):
        providers_from_env({"LLM_PROVIDERS": "openai,gpt", **ALL_KEYS})
    with pytest.raises(ValueError, match="unknown LLM provider 'chatgpt'"):
        providers_from_env({"LLM_PROVIDER": "chatgpt"})


def test_a_provider_named_twice_is_an_error():
    with pytest.raises(ValueError, match="twice"):
        providers_from_env({"LLM_PROVIDERS": "groq,groq", **ALL_KEYS})


def test_naming_a_provider_without_its_key_is_an_error():
    with pytest.raises(ValueError, match="'openai' needs OPENAI_API_KEY"):
        providers_from_env({"LLM_PROVIDERS": "openai,offline"})


def test_cloudflare_needs_its_account_id():
    with pytest.raises(ValueError, match="CLOUDFLARE_ACCOUNT_ID"):
        providers_from_env({"CLOUDFLARE_API_KEY": "x"})
    config = by_name(ALL_KEYS)["cloudflare"]
    assert config.base_url == "https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1"


def test_the_seeds_single_provider_form_still_works():
    env = {
        "LLM_PROVIDER": "anthropic",
        "LLM_MODEL": "claude-3-5-sonnet-20241022",
        "ANTHROPIC_API_KEY": "sk-ant-1",
        "OPENAI_API_KEY": "sk-1",
        "LLM_TIMEOUT": "30",
        "LLM_MAX_TOKENS": "1000",
    }
    configs = providers_from_env(env)
    assert [c.name for c in configs] == ["anthropic", "offline"]
    anthropic = configs[0]
    assert anthropic.model == "claude-3-5-sonnet-20241022"
    assert anthropic.timeout_total == 30.0
    assert anthropic.timeout_read == 30.0
    assert anthropic.timeout_connect == 5.0
    assert anthropic.max_tokens == 1000


def test_llm_model_without_llm_provider_applies_to_the_first_provider_only():
    env = {"OPENAI_API_KEY": "sk-1", "GROQ_API_KEY": "gsk_1", "LLM_MODEL": "llama-3.1-8b-instant"}
    configs = by_name(env)
    assert configs["groq"].model == "llama-3.1-8b-instant"
    assert configs["openai"].model == "gpt-4o-mini"


def test_per_provider_settings_win_over_global_ones():
    env = {
        "OPENAI_API_KEY": "sk-1",
        "OPENAI_MODEL": "gpt-4.1",
        "OPENAI_BASE_URL": "https://proxy.example/v1/",
        "OPENAI_TIMEOUT": "90",
        "OPENAI_MAX_TOKENS": "2000",
        "LLM_PROVIDER": "openai",
        "LLM_MODEL": "gpt-4-turbo",
        "LLM_TIMEOUT": "30",
        "LLM_MAX_TOKENS": "1000",
    }
    openai = by_name(env)["openai"]
    assert openai.model == "gpt-4.1"
    assert openai.base_url == "https://proxy.example/v1"
    assert openai.timeout_total == 90.0
    assert openai.max_tokens == 2000


def test_github_models_uses_its_own_prefix_so_github_api_settings_do_not_leak_in():
    env = {
        "GITHUB_TOKEN": "ghp_1",
        "GITHUB_BASE_URL": "https://github.example.com/api/v3",
        "GITHUB_MODELS_MODEL": "openai/gpt-4.1",
    }
    github = by_name(env)["github"]
    assert github.base_url == "https://models.github.ai/inference"
    assert github.model == "openai/gpt-4.1"


def test_vllm_needs_a_model_name_and_custom_needs_a_base_url():
    with pytest.raises(ValueError, match="VLLM_MODEL"):
        providers_from_env({"LLM_PROVIDERS": "vllm"})
    with pytest.raises(ValueError, match="CUSTOM_BASE_URL"):
        providers_from_env({"LLM_PROVIDERS": "custom", "CUSTOM_MODEL": "m"})
    custom = by_name({"CUSTOM_BASE_URL": "http://10.0.0.5:9000/v1", "CUSTOM_MODEL": "m"})["custom"]
    assert custom.api_key is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLM_TIMEOUT": "soon"}, "LLM_TIMEOUT must be a number"),
        ({"LLM_TIMEOUT": "-1"}, "greater than zero"),
        ({"LLM_MAX_TOKENS": "1.5"}, "LLM_MAX_TOKENS must be a whole number"),
        ({"OLLAMA_BASE_URL": "localhost:11434"}, "must be an http"),
    ],
)
def test_bad_numbers_and_urls_are_clear_errors(env, message):
    with pytest.raises(ValueError, match=message):
        providers_from_env(env)


def test_connect_and_read_timeouts_can_be_set_and_never_exceed_the_total():
    env = {
        "LLM_TIMEOUT": "20",
        "LLM_CONNECT_TIMEOUT": "2",
        "LLM_READ_TIMEOUT": "45",
        "GROQ_API_KEY": "g",
    }
    groq = by_name(env)["groq"]
    assert (groq.timeout_connect, groq.timeout_read, groq.timeout_total) == (2.0, 20.0, 20.0)


def test_describe_providers_lists_the_chain_without_any_key():
    lines = describe_providers(providers_from_env(ALL_KEYS))
    text = "\n".join(lines)
    assert lines[0].startswith("1. groq: model llama-3.3-70b-versatile")
    assert "key set" in lines[0]
    assert "offline" in lines[-1]
    assert "SECRET" not in text
    assert all("SECRET" not in repr(c) for c in providers_from_env(ALL_KEYS))


def test_every_configured_provider_can_be_built():
    env = {
        **ALL_KEYS,
        "OLLAMA_BASE_URL": "http://localhost:11434",
        "VLLM_BASE_URL": "http://gpu:8000/v1",
        "VLLM_MODEL": "m",
        "LLAMACPP_BASE_URL": "http://localhost:8080/v1",
        "CUSTOM_BASE_URL": "http://custom/v1",
        "CUSTOM_MODEL": "m",
    }
    providers = build_providers(providers_from_env(env))
    assert [p.name for p in providers][-1] == "offline"
    assert len(providers) == 11


def test_provider_names_from_env_matches_providers_from_env():
    assert provider_names_from_env(ALL_KEYS) == names(ALL_KEYS)


def test_prices_and_the_response_cache_switch_come_from_the_environment():
    assert prices_from_env({}) is None
    assert prices_from_env({"LLM_PRICES": '{"openai": {"gpt-4o": {"input": 1, "output": 2}}}'}) == {
        "openai": {"gpt-4o": {"input": 1, "output": 2}}
    }
    with pytest.raises(ValueError, match="LLM_PRICES must be JSON"):
        prices_from_env({"LLM_PRICES": "{nope"})
    with pytest.raises(ValueError, match="LLM_PRICES must look like"):
        prices_from_env({"LLM_PRICES": "[1, 2]"})
    assert response_cache_enabled({}) is False
    assert response_cache_enabled({"LLM_RESPONSE_CACHE": "true"}) is True


def test_a_routed_call_s_deadline_stays_below_the_job_s_time_limit():
    assert call_deadline_from_env({}) == 270  # Q_TIMEOUT's default 300, less 30 s
    assert call_deadline_from_env({"Q_TIMEOUT": "600"}) == 570
    assert call_deadline_from_env({"Q_TIMEOUT": "40"}) == 20  # short limits: half of it
    assert call_deadline_from_env({"Q_TIMEOUT": "4"}) == 2
    # The low cluster's workers run jobs with their own, longer limit.
    assert call_deadline_from_env({"Q_CLUSTER_NAME": "low"}) == 1770
    assert call_deadline_from_env({"Q_CLUSTER_NAME": "low", "Q_LOW_TIMEOUT": "900"}) == 870
    assert call_deadline_from_env({"LLM_CALL_DEADLINE": "90", "Q_TIMEOUT": "600"}) == 90


@pytest.mark.parametrize("raw", ["soon", "0", "-5"])
def test_a_bad_call_deadline_is_a_clear_error(raw):
    with pytest.raises(ValueError, match="LLM_CALL_DEADLINE"):
        call_deadline_from_env({"LLM_CALL_DEADLINE": raw})


@pytest.mark.django_db
def test_the_process_wide_router_gets_the_deadline():
    from llmcore.gateway import build_router

    assert build_router({"LLM_CALL_DEADLINE": "42"}).deadline == 42
