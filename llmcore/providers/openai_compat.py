"""One adapter for every OpenAI-compatible server, with presets for the ones Grimoire knows.

A preset is a base URL, how to authenticate, a default model and the quirks that matter:
- GitHub Models answers a spent daily quota with a 429 that mentions `UserByModelByDay`
  (classified as quota in base.py, not as a retryable rate limit);
- Cloudflare Workers AI needs the account id in the URL and reports a spent daily allocation as
  error code 3036 in an `errors` list;
- llama.cpp's own server accepts only `{"type": "json_object", "schema": ...}` and ignores
  `max_completion_tokens`, so it starts there;
- every compatible server gets `max_tokens`, the parameter they all understand.
"""

from __future__ import annotations

from llmcore.providers.base import (
    MODE_JSON_OBJECT,
    MODE_JSON_OBJECT_SCHEMA,
    MODE_JSON_SCHEMA,
    MODE_PROMPT,
    ProviderConfig,
    ProviderSpec,
    register,
)
from llmcore.providers.openai import OpenAIProvider

DEFAULT_COMPAT_MODES = (MODE_JSON_SCHEMA, MODE_JSON_OBJECT, MODE_PROMPT)
LLAMACPP_MODES = (MODE_JSON_OBJECT_SCHEMA, MODE_PROMPT)

CLOUDFLARE_BASE_URL = "https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1"


class OpenAICompatProvider(OpenAIProvider):
    kind = "custom"
    structured_modes = DEFAULT_COMPAT_MODES
    max_tokens_field = "max_tokens"


class GroqProvider(OpenAICompatProvider):
    kind = "groq"


class GitHubModelsProvider(OpenAICompatProvider):
    kind = "github"

    def headers(self) -> dict[str, str]:
        headers = super().headers()
        headers["x-github-api-version"] = "2022-11-28"
        return headers


class HuggingFaceProvider(OpenAICompatProvider):
    kind = "huggingface"


class CloudflareProvider(OpenAICompatProvider):
    kind = "cloudflare"

    def __init__(self, config: ProviderConfig) -> None:
        if "{account_id}" in config.base_url:
            raise ValueError("cloudflare needs CLOUDFLARE_ACCOUNT_ID to build its base URL")
        super().__init__(config)


class OllamaProvider(OpenAICompatProvider):
    kind = "ollama"
    local = True


class VLLMProvider(OpenAICompatProvider):
    kind = "vllm"
    local = True


class LlamaCppProvider(OpenAICompatProvider):
    kind = "llamacpp"
    local = True
    structured_modes = LLAMACPP_MODES


PRESETS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        kind="groq",
        factory=GroqProvider,
        base_url="https://api.groq.com/openai/v1",
        default_model="llama-3.3-70b-versatile",
        key_envs=("GROQ_API_KEY",),
    ),
    ProviderSpec(
        kind="github",
        factory=GitHubModelsProvider,
        base_url="https://models.github.ai/inference",
        default_model="openai/gpt-4o-mini",
        key_envs=("GITHUB_TOKEN", "GITHUB_MODELS_TOKEN"),
    ),
    ProviderSpec(
        kind="huggingface",
        factory=HuggingFaceProvider,
        base_url="https://router.huggingface.co/v1",
        default_model="meta-llama/Llama-3.1-8B-Instruct",
        key_envs=("HUGGINGFACE_API_KEY", "HF_TOKEN"),
    ),
    ProviderSpec(
        kind="cloudflare",
        factory=CloudflareProvider,
        base_url=CLOUDFLARE_BASE_URL,
        default_model="@cf/meta/llama-3.1-8b-instruct",
        key_envs=("CLOUDFLARE_API_KEY", "CLOUDFLARE_API_TOKEN"),
    ),
    ProviderSpec(
        kind="ollama",
        factory=OllamaProvider,
        base_url="http://localhost:11434/v1",
        default_model="llama3.2",
        key_optional=True,
        local=True,
    ),
    ProviderSpec(
        kind="vllm",
        factory=VLLMProvider,
        base_url="http://localhost:8000/v1",
        key_envs=("VLLM_API_KEY",),
        key_optional=True,
        local=True,
        needs_model=True,
    ),
    ProviderSpec(
        kind="llamacpp",
        factory=LlamaCppProvider,
        base_url="http://localhost:8080/v1",
        # llama.cpp serves whatever model it was started with and ignores the name.
        default_model="default",
        key_envs=("LLAMACPP_API_KEY",),
        key_optional=True,
        local=True,
    ),
    ProviderSpec(
        kind="custom",
        factory=OpenAICompatProvider,
        key_envs=("CUSTOM_API_KEY",),
        key_optional=True,
        needs_base_url=True,
        needs_model=True,
    ),
)

for _spec in PRESETS:
    register(_spec)
