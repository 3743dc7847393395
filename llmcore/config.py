"""Which LLM providers to use, in which order, read from the environment.

Three ways to say it, most explicit first:

1. `LLM_PROVIDERS=groq,openai,offline`: exactly these, in this order. Naming a provider without
   its key is an error (say what you mean, find out at start-up, not at the first job).
2. The seeds' single-provider form `LLM_PROVIDER=openai` (+ `LLM_MODEL`): that provider, then
   `offline` so nothing is left without an answer.
3. Neither: every provider whose key is set, in the seeds' order (groq, openai, anthropic,
   github, huggingface, cloudflare), then local servers whose base URL is set (ollama, vllm,
   llamacpp, custom), then `offline`.

Per provider `<NAME>` (GROQ, OPENAI, ANTHROPIC, GITHUB_MODELS, HUGGINGFACE, CLOUDFLARE, OLLAMA,
VLLM, LLAMACPP, CUSTOM): `<NAME>_MODEL`, `<NAME>_BASE_URL`, `<NAME>_TIMEOUT`,
`<NAME>_MAX_TOKENS`. Keys: OPENAI_API_KEY, ANTHROPIC_API_KEY, GROQ_API_KEY, GITHUB_TOKEN,
HUGGINGFACE_API_KEY (or HF_TOKEN), CLOUDFLARE_API_KEY + CLOUDFLARE_ACCOUNT_ID, and optional
VLLM_API_KEY, LLAMACPP_API_KEY, CUSTOM_API_KEY. Everyone: `LLM_TIMEOUT` (total seconds per call,
default 60), `LLM_CONNECT_TIMEOUT` (default 5), `LLM_READ_TIMEOUT` (default the total),
`LLM_MAX_TOKENS`. GitHub Models uses the GITHUB_MODELS_ prefix because GITHUB_BASE_URL and
friends usually mean the GitHub REST API.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from llmcore.providers import SPECS
from llmcore.providers.base import ProviderConfig, ProviderSpec

# The seeds' provider order: AION-R's fallback chain, with the other seeds' Anthropic after OpenAI.
DEFAULT_ORDER = ("groq", "openai", "anthropic", "github", "huggingface", "cloudflare")
# Servers without a key join the default chain only when their base URL is set.
LOCAL_ORDER = ("ollama", "vllm", "llamacpp", "custom")
OFFLINE = "offline"

ALIASES = {
    "github_models": "github",
    "github-models": "github",
    "githubmodels": "github",
    "hf": "huggingface",
    "hugging_face": "huggingface",
    "hugging-face": "huggingface",
    "cloudflare_ai": "cloudflare",
    "workers_ai": "cloudflare",
    "workers-ai": "cloudflare",
    "llama.cpp": "llamacpp",
    "llama_cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "openai_compatible": "custom",
    "openai-compatible": "custom",
}

ENV_PREFIX = {"github": "GITHUB_MODELS"}

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 5.0


def env_prefix(kind: str) -> str:
    return ENV_PREFIX.get(kind, kind.upper())


def normalize_name(raw: str) -> str:
    """The provider kind for a user-written name; ValueError listing valid names otherwise."""
    name = raw.strip().lower()
    name = ALIASES.get(name, name)
    if name not in SPECS:
        valid = ", ".join(sorted(SPECS))
        raise ValueError(f"unknown LLM provider {raw.strip()!r}; valid names: {valid}")
    return name


def _split_names(value: str, variable: str) -> list[str]:
    names = [normalize_name(part) for part in value.replace(";", ",").split(",") if part.strip()]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{variable} names {name!r} twice")
        seen.add(name)
    if not names:
        raise ValueError(f"{variable} is set but names no provider")
    return names


def _get(env: Mapping[str, str], name: str) -> str:
    return (env.get(name) or "").strip()


def _number(env: Mapping[str, str], name: str, *, integer: bool = False) -> float | None:
    raw = _get(env, name)
    if not raw:
        return None
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        what = "a whole number" if integer else "a number of seconds"
        raise ValueError(f"{name} must be {what}, got {raw!r}") from None
    if value <= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be greater than zero, got {raw!r}")
    return value


def _first_number(
    env: Mapping[str, str], names: list[str], *, integer: bool = False
) -> float | None:
    for name in names:
        value = _number(env, name, integer=integer)
        if value is not None:
            return value
    return None


def _key_for(spec: ProviderSpec, env: Mapping[str, str]) -> str | None:
    for name in spec.key_envs:
        value = _get(env, name)
        if value:
            return value
    return None


def _has_key(kind: str, env: Mapping[str, str]) -> bool:
    return _key_for(SPECS[kind], env) is not None


def _base_url(kind: str, spec: ProviderSpec, env: Mapping[str, str]) -> str:
    prefix = env_prefix(kind)
    base = _get(env, f"{prefix}_BASE_URL") or spec.base_url
    if spec.needs_base_url and not base:
        raise ValueError(f"LLM provider {kind!r} needs {prefix}_BASE_URL")
    if kind == "cloudflare":
        account = _get(env, "CLOUDFLARE_ACCOUNT_ID")
        if "{account_id}" in base:
            if not account:
                raise ValueError(
                    "LLM provider 'cloudflare' needs CLOUDFLARE_ACCOUNT_ID as well as "
                    "CLOUDFLARE_API_KEY"
                )
            base = base.format(account_id=account)
    if kind == "ollama" and urlsplit(base).path in ("", "/"):
        # OLLAMA_BASE_URL conventionally points at the server root; the OpenAI API is under /v1.
        base = base.rstrip("/") + "/v1"
    if base:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{prefix}_BASE_URL must be an http(s) URL, got {base!r}")
    return base.rstrip("/")


def provider_config(
    kind: str, env: Mapping[str, str], *, model_override: str | None = None
) -> ProviderConfig:
    """The ProviderConfig for one provider kind; ValueError when it cannot work as configured."""
    spec = SPECS[kind]
    prefix = env_prefix(kind)
    api_key = _key_for(spec, env)
    if not api_key and not spec.key_optional:
        raise ValueError(f"LLM provider {kind!r} needs {spec.key_envs[0]}, which is not set")
    model = _get(env, f"{prefix}_MODEL") or model_override or spec.default_model
    if spec.needs_model and not model:
        raise ValueError(f"LLM provider {kind!r} needs {prefix}_MODEL (the served model name)")
    total = _first_number(env, [f"{prefix}_TIMEOUT", "LLM_TIMEOUT"]) or DEFAULT_TIMEOUT
    connect = _number(env, "LLM_CONNECT_TIMEOUT") or min(DEFAULT_CONNECT_TIMEOUT, total)
    read = _number(env, "LLM_READ_TIMEOUT") or total
    max_tokens = _first_number(env, [f"{prefix}_MAX_TOKENS", "LLM_MAX_TOKENS"], integer=True)
    return ProviderConfig(
        name=kind,
        kind=kind,
        base_url=_base_url(kind, spec, env) if kind != OFFLINE else "",
        api_key=api_key,
        model=model,
        timeout_connect=min(connect, total),
        timeout_read=min(read, total),
        timeout_total=total,
        max_tokens=int(max_tokens) if max_tokens else None,
    )


def provider_names_from_env(env: Mapping[str, str]) -> list[str]:
    """The provider kinds to use, in order (see the module docstring for the three forms)."""
    explicit = _get(env, "LLM_PROVIDERS")
    if explicit:
        return _split_names(explicit, "LLM_PROVIDERS")
    single = _get(env, "LLM_PROVIDER")
    if single:
        name = normalize_name(single)
        return [name] if name == OFFLINE else [name, OFFLINE]
    names = [kind for kind in DEFAULT_ORDER if _has_key(kind, env)]
    names += [kind for kind in LOCAL_ORDER if _get(env, f"{env_prefix(kind)}_BASE_URL")]
    return [*names, OFFLINE]


def providers_from_env(env: Mapping[str, str]) -> list[ProviderConfig]:
    """Ordered ProviderConfigs from `env` (os.environ or a dict); ValueError on bad settings.

    `LLM_MODEL` (the seeds' form) sets the model of the `LLM_PROVIDER` provider, or of the first
    provider when LLM_PROVIDER is not set; `<NAME>_MODEL` always wins over it.
    """
    names = provider_names_from_env(env)
    llm_model = _get(env, "LLM_MODEL") or None
    target = None
    if llm_model:
        single = _get(env, "LLM_PROVIDER")
        target = normalize_name(single) if single else names[0]
    return [
        provider_config(name, env, model_override=llm_model if name == target else None)
        for name in names
    ]


def describe_providers(configs: list[ProviderConfig]) -> list[str]:
    """One line per provider for the start-up log; shows whether a key is set, never the key."""
    return [f"{i}. {c.describe()}" for i, c in enumerate(configs, start=1)]


def prices_from_env(env: Mapping[str, str]) -> dict[str, Any] | None:
    """`LLM_PRICES` as JSON ({"openai": {"gpt-4o": {"input": 2.5, "output": 10}}}) or None."""
    raw = _get(env, "LLM_PRICES")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"LLM_PRICES must be JSON: {exc}") from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ValueError('LLM_PRICES must look like {"provider": {"model": {"input", "output"}}}')
    return value


def explicit_call_deadline(env: Mapping[str, str]) -> float | None:
    """LLM_CALL_DEADLINE when it is set (ValueError when it is not a number), else None."""
    return _number(env, "LLM_CALL_DEADLINE")


def call_deadline_from_env(env: Mapping[str, str]) -> float:
    """Seconds one routed call may take over every provider, retry and wait
    (LLM_CALL_DEADLINE). By default a little less than the time limit of the jobs this process
    runs: Q_TIMEOUT (default 300), or Q_LOW_TIMEOUT (default 1800) in the `low` cluster's
    workers (Q_CLUSTER_NAME=low), less 30 s or, for short limits, half of it. A call that
    cannot finish then gives up in time for its job to be retried, instead of being killed."""
    given = explicit_call_deadline(env)
    if given is not None:
        return given
    if _get(env, "Q_CLUSTER_NAME") == "low":
        job_limit = _number(env, "Q_LOW_TIMEOUT") or 1800.0
    else:
        job_limit = _number(env, "Q_TIMEOUT") or 300.0
    return max(job_limit / 2, job_limit - 30.0)


def response_cache_enabled(env: Mapping[str, str]) -> bool:
    return _get(env, "LLM_RESPONSE_CACHE").lower() in ("1", "true", "yes", "on")
