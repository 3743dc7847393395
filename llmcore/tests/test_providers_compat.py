"""The OpenAI-compatible presets: URLs, auth, quirks, and each server's error shapes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmcore.config import providers_from_env
from llmcore.providers import make_provider
from llmcore.providers.base import (
    MODE_JSON_OBJECT,
    MODE_JSON_OBJECT_SCHEMA,
    MODE_JSON_SCHEMA,
    MODE_NONE,
    MODE_PROMPT,
    ProviderConfig,
)
from llmcore.providers.openai_compat import CloudflareProvider, LlamaCppProvider
from llmcore.types import LLMRequest, Message, ProviderError

SCHEMA = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["tags"],
}


def ok_body(content: str = "ok", model: str = "llama-3.3-70b-versatile") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


class Recorder:
    def __init__(self, response: Any) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response(request) if callable(self.response) else self.response

    def payload(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


ENV = {
    "GROQ_API_KEY": "gsk_test",
    "GITHUB_TOKEN": "ghp_test",
    "HUGGINGFACE_API_KEY": "hf_test",
    "CLOUDFLARE_API_KEY": "cf_test",
    "CLOUDFLARE_ACCOUNT_ID": "acc123",
    "OLLAMA_BASE_URL": "http://localhost:11434",
    "VLLM_BASE_URL": "http://gpu-box:8000/v1",
    "VLLM_MODEL": "Qwen/Qwen2.5-7B-Instruct",
    "LLAMACPP_BASE_URL": "http://localhost:8080/v1",
    "CUSTOM_BASE_URL": "https://llm.internal.example/v1",
    "CUSTOM_MODEL": "house-model",
}


def preset(kind: str) -> ProviderConfig:
    configs = {c.kind: c for c in providers_from_env(ENV)}
    return configs[kind]


def make(kind: str, response: Any):
    rec = Recorder(response)
    provider = make_provider(preset(kind))
    return provider, httpx.Client(transport=httpx.MockTransport(rec)), rec


def req(**kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=[Message("user", "Tag this issue: login button broken")], **kwargs)


def failure(kind: str, response: Any, mode: str = MODE_NONE, **kwargs: Any) -> ProviderError:
    provider, client, _ = make(kind, response)
    with pytest.raises(ProviderError) as info:
        provider.send(req(**kwargs), client=client, structured_mode=mode)
    return info.value


@pytest.mark.parametrize(
    ("kind", "url", "auth"),
    [
        ("groq", "https://api.groq.com/openai/v1/chat/completions", "Bearer gsk_test"),
        ("github", "https://models.github.ai/inference/chat/completions", "Bearer ghp_test"),
        ("huggingface", "https://router.huggingface.co/v1/chat/completions", "Bearer hf_test"),
        (
            "cloudflare",
            "https://api.cloudflare.com/client/v4/accounts/acc123/ai/v1/chat/completions",
            "Bearer cf_test",
        ),
        ("ollama", "http://localhost:11434/v1/chat/completions", None),
        ("vllm", "http://gpu-box:8000/v1/chat/completions", None),
        ("llamacpp", "http://localhost:8080/v1/chat/completions", None),
        ("custom", "https://llm.internal.example/v1/chat/completions", None),
    ],
)
def test_each_preset_posts_to_its_url_with_its_auth_and_max_tokens(kind, url, auth):
    provider, client, rec = make(kind, httpx.Response(200, json=ok_body()))
    result = provider.send(req(max_tokens=64), client=client, structured_mode=MODE_NONE)
    sent = rec.requests[0]
    assert str(sent.url) == url
    assert sent.headers.get("authorization") == auth
    payload = rec.payload()
    # Compatible servers all know max_tokens; llama.cpp ignores max_completion_tokens.
    assert payload["max_tokens"] == 64
    assert "max_completion_tokens" not in payload
    assert result.text == "ok"


def test_default_models_follow_the_seeds():
    assert preset("groq").model == "llama-3.3-70b-versatile"
    assert preset("github").model == "openai/gpt-4o-mini"
    assert preset("cloudflare").model == "@cf/meta/llama-3.1-8b-instruct"
    assert preset("vllm").model == "Qwen/Qwen2.5-7B-Instruct"


def test_github_models_sends_the_api_version_header():
    provider, client, rec = make("github", httpx.Response(200, json=ok_body()))
    provider.send(req(), client=client, structured_mode=MODE_NONE)
    assert rec.requests[0].headers["x-github-api-version"] == "2022-11-28"


def test_cloudflare_cannot_be_built_without_an_account_id():
    config = ProviderConfig(
        name="cloudflare",
        kind="cloudflare",
        base_url="https://api.cloudflare.com/client/v4/accounts/{account_id}/ai/v1",
        api_key="x",
        model="m",
    )
    with pytest.raises(ValueError, match="CLOUDFLARE_ACCOUNT_ID"):
        CloudflareProvider(config)


def test_llamacpp_starts_with_json_object_plus_schema():
    provider, client, rec = make("llamacpp", httpx.Response(200, json=ok_body('{"tags": []}')))
    assert isinstance(provider, LlamaCppProvider)
    assert provider.modes_for(req(json_schema=SCHEMA))[0] == MODE_JSON_OBJECT_SCHEMA
    provider.send(req(json_schema=SCHEMA), client=client, structured_mode=MODE_JSON_OBJECT_SCHEMA)
    assert rec.payload()["response_format"] == {"type": "json_object", "schema": SCHEMA}


def test_other_compatible_servers_negotiate_json_schema_then_json_object_then_prompt():
    provider = make_provider(preset("groq"))
    assert provider.modes_for(req(json_schema=SCHEMA)) == (
        MODE_JSON_SCHEMA,
        MODE_JSON_OBJECT,
        MODE_PROMPT,
    )
    assert provider.modes_for(req()) == (MODE_NONE,)


def test_groq_rejecting_json_schema_asks_for_a_weaker_mode():
    err = failure(
        "groq",
        httpx.Response(
            400,
            json={
                "error": {
                    "message": "This model does not support response format `json_schema`. See "
                    "supported models at https://console.groq.com/docs/structured-outputs",
                    "type": "invalid_request_error",
                    "param": "response_format",
                }
            },
        ),
        mode=MODE_JSON_SCHEMA,
        json_schema=SCHEMA,
    )
    assert (err.kind, err.code) == ("fatal", "structured_unsupported")


def test_github_daily_quota_fails_over_with_a_cooldown_for_the_wait_it_names():
    err = failure(
        "github",
        httpx.Response(
            429,
            headers={"retry-after": "41000"},
            json={
                "error": {
                    "code": "RateLimitReached",
                    "message": "Rate limit of 150 per 86400s exceeded for UserByModelByDay. "
                    "Please wait 41000 seconds before retrying.",
                    "details": "Rate limit of 150 per 86400s exceeded for UserByModelByDay.",
                }
            },
        ),
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "quota", True)
    assert err.retry_after == 41000.0


def test_github_per_minute_rate_limit_is_transient():
    err = failure(
        "github",
        httpx.Response(
            429,
            headers={"retry-after": "20"},
            json={
                "error": {
                    "code": "RateLimitReached",
                    "message": "Rate limit of 15 per 60s exceeded for UserByModelByMinute. "
                    "Please wait 20 seconds before retrying.",
                }
            },
        ),
    )
    assert (err.kind, err.code, err.retry_after) == ("transient", "rate_limited", 20.0)


def test_github_unknown_model_fails_over():
    err = failure(
        "github",
        httpx.Response(
            400, json={"error": {"code": "unknown_model", "message": "Unknown model: openai/gpt-9"}}
        ),
    )
    assert (err.kind, err.code) == ("failover", "model_not_found")


def test_cloudflare_error_3036_is_quota():
    err = failure(
        "cloudflare",
        httpx.Response(
            429,
            json={
                "result": None,
                "success": False,
                "errors": [
                    {
                        "code": 3036,
                        "message": "AiError: You have used up your daily free allocation of "
                        "10,000 neurons, please upgrade to Cloudflare's Workers Paid plan.",
                    }
                ],
                "messages": [],
            },
        ),
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "quota", True)


def test_cloudflare_capacity_errors_are_transient():
    err = failure(
        "cloudflare",
        httpx.Response(
            429,
            json={
                "success": False,
                "errors": [{"code": 3040, "message": "Capacity temporarily exceeded"}],
            },
        ),
    )
    assert (err.kind, err.code) == ("transient", "rate_limited")


def test_cloudflare_bad_token_fails_over():
    err = failure(
        "cloudflare",
        httpx.Response(
            401,
            json={"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]},
        ),
    )
    assert (err.kind, err.code) == ("failover", "auth")


def test_huggingface_string_errors_are_understood():
    err = failure(
        "huggingface",
        httpx.Response(503, json={"error": "Model is currently loading", "estimated_time": 20.0}),
    )
    assert err.kind == "transient"
    assert "currently loading" in err.message


def test_huggingface_spent_credits_are_quota():
    err = failure(
        "huggingface",
        httpx.Response(
            402,
            json={
                "error": "You have exceeded your monthly included credits for Inference Providers."
            },
        ),
    )
    assert (err.kind, err.code) == ("failover", "quota")


def test_ollama_missing_model_fails_over():
    err = failure(
        "ollama",
        httpx.Response(
            404,
            json={
                "error": {
                    "message": 'model "llama3.2" not found, try pulling it first',
                    "type": "api_error",
                }
            },
        ),
    )
    assert (err.kind, err.code) == ("failover", "model_not_found")


def test_ollama_not_running_is_a_transient_connection_error():
    def refused(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    err = failure("ollama", refused)
    assert (err.kind, err.code) == ("transient", "connection")


def test_vllm_context_overflow_fails_over():
    err = failure(
        "vllm",
        httpx.Response(
            400,
            json={
                "object": "error",
                "message": "This model's maximum context length is 32768 tokens. However, you "
                "requested 40000 tokens in the messages.",
                "type": "BadRequestError",
                "code": 400,
            },
        ),
    )
    assert (err.kind, err.code) == ("failover", "context_window")


def test_llamacpp_rejecting_a_format_asks_for_a_weaker_mode():
    err = failure(
        "llamacpp",
        httpx.Response(
            400,
            json={
                "error": {
                    "code": 400,
                    "message": 'response_format type must be one of "text" or "json_object", but got: json_schema',
                    "type": "invalid_request_error",
                }
            },
        ),
        mode=MODE_JSON_OBJECT_SCHEMA,
        json_schema=SCHEMA,
    )
    assert err.code == "structured_unsupported"


def test_an_error_body_inside_a_200_is_classified_by_its_code():
    err = failure(
        "custom",
        httpx.Response(200, json={"error": {"message": "upstream overloaded", "code": 503}}),
    )
    assert (err.kind, err.http_status) == ("transient", 503)


def test_json_object_mode_with_a_schema_on_a_compatible_server():
    provider, client, rec = make("ollama", httpx.Response(200, json=ok_body('{"tags": ["login"]}')))
    result = provider.send(req(json_schema=SCHEMA), client=client, structured_mode=MODE_JSON_OBJECT)
    assert rec.payload()["response_format"] == {"type": "json_object"}
    assert json.loads(result.text) == {"tags": ["login"]}
