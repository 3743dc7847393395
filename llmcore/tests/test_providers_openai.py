"""The OpenAI adapter against recorded-shape answers, with httpx mocked at the transport."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from llmcore.providers import openai as openai_module
from llmcore.providers.base import (
    MODE_JSON_OBJECT,
    MODE_JSON_SCHEMA,
    MODE_NONE,
    MODE_PROMPT,
    ProviderConfig,
    parse_retry_after,
)
from llmcore.providers.openai import OpenAIProvider, is_strict_compatible
from llmcore.types import LLMRequest, Message, ProviderError

NOW = 1_700_000_000.0

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "confidence_score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["title", "confidence_score"],
    "additionalProperties": False,
}


def ok_body(
    content: str | None = "Hello!",
    *,
    model: str = "gpt-4o-mini-2024-07-18",
    refusal: str | None = None,
    cached: int = 0,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-9abc",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": 120,
            "completion_tokens": 30,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_0ba0d124f1",
    }


def openai_error(message: str, *, type_: str, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class Recorder:
    def __init__(self, *responses: httpx.Response | Callable[[httpx.Request], httpx.Response]):
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return item(request) if callable(item) else item

    def payload(self, i: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[i].content)


def make(*responses: Any, **config: Any) -> tuple[OpenAIProvider, httpx.Client, Recorder]:
    recorder = Recorder(*responses)
    cfg = {
        "name": "openai",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "api_key": "sk-test-key",
        "model": "gpt-4o-mini",
        **config,
    }
    provider = OpenAIProvider(ProviderConfig(**cfg))
    provider.wall_clock = lambda: NOW
    return provider, httpx.Client(transport=httpx.MockTransport(recorder)), recorder


def req(**kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=[Message("user", "Why did the build fail?")], **kwargs)


def failure(*responses: Any, mode: str = MODE_NONE, **kwargs: Any) -> ProviderError:
    provider, client, _ = make(*responses)
    with pytest.raises(ProviderError) as info:
        provider.send(req(**kwargs), client=client, structured_mode=mode)
    return info.value


@pytest.fixture(autouse=True)
def _forget_dropped_params():
    openai_module._DROPPED_PARAMS.clear()
    yield
    openai_module._DROPPED_PARAMS.clear()


# --- success ------------------------------------------------------------------------------------


def test_it_posts_chat_completions_with_bearer_auth_and_max_completion_tokens():
    provider, client, rec = make(httpx.Response(200, json=ok_body()))
    provider.send(
        req(system="Be brief.", max_tokens=300, temperature=0.2),
        client=client,
        structured_mode=MODE_NONE,
    )
    sent = rec.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-key"
    payload = rec.payload()
    assert payload["model"] == "gpt-4o-mini"
    assert payload["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why did the build fail?"},
    ]
    assert payload["max_completion_tokens"] == 300
    assert "max_tokens" not in payload
    assert payload["temperature"] == 0.2
    assert "response_format" not in payload


def test_it_returns_text_model_and_usage_with_cached_tokens():
    provider, client, _ = make(httpx.Response(200, json=ok_body("Pin numpy<2.", cached=64)))
    result = provider.send(req(), client=client, structured_mode=MODE_NONE)
    assert result.text == "Pin numpy<2."
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (120, 30)
    assert result.usage.cached_tokens == 64
    assert result.finish_reason == "stop"


def test_the_request_model_overrides_the_configured_one():
    provider, client, rec = make(httpx.Response(200, json=ok_body()))
    provider.send(req(model="gpt-4o"), client=client, structured_mode=MODE_NONE)
    assert rec.payload()["model"] == "gpt-4o"


def test_a_model_pinned_to_another_provider_leaves_the_default():
    provider, client, rec = make(httpx.Response(200, json=ok_body()))
    provider.send(
        req(model="anthropic:claude-sonnet-4-5"), client=client, structured_mode=MODE_NONE
    )
    assert rec.payload()["model"] == "gpt-4o-mini"


def test_json_schema_mode_sends_a_strict_response_format_for_a_closed_schema():
    provider, client, rec = make(httpx.Response(200, json=ok_body('{"title":"x"}')))
    provider.send(
        req(json_schema=SCHEMA, schema_name="spell draft"),
        client=client,
        structured_mode=MODE_JSON_SCHEMA,
    )
    fmt = rec.payload()["response_format"]
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "spell_draft", "schema": SCHEMA, "strict": True},
    }


def test_json_schema_mode_is_not_strict_when_the_schema_has_optional_fields():
    open_schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": []}
    assert not is_strict_compatible(open_schema)
    provider, client, rec = make(httpx.Response(200, json=ok_body("{}")))
    provider.send(req(json_schema=open_schema), client=client, structured_mode=MODE_JSON_SCHEMA)
    assert rec.payload()["response_format"]["json_schema"]["strict"] is False


def test_json_object_and_prompt_modes_put_the_schema_in_the_system_prompt():
    provider, client, rec = make(httpx.Response(200, json=ok_body("{}")))
    provider.send(req(json_schema=SCHEMA), client=client, structured_mode=MODE_JSON_OBJECT)
    payload = rec.payload()
    assert payload["response_format"] == {"type": "json_object"}
    assert payload["messages"][0]["role"] == "system"
    assert "JSON Schema" in payload["messages"][0]["content"]
    assert '"confidence_score"' in payload["messages"][0]["content"]

    provider.send(req(json_schema=SCHEMA), client=client, structured_mode=MODE_PROMPT)
    payload = rec.payload()
    assert "response_format" not in payload
    assert "JSON Schema" in payload["messages"][0]["content"]


# --- errors the router retries ------------------------------------------------------------------


def test_a_429_with_retry_after_ms_is_transient_with_that_wait():
    err = failure(
        httpx.Response(
            429,
            headers={"retry-after-ms": "250", "retry-after": "1"},
            json=openai_error(
                "Rate limit reached for gpt-4o-mini in organization org-x on requests per min "
                "(RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
                type_="requests",
                code="rate_limit_exceeded",
            ),
        )
    )
    assert (err.kind, err.code, err.http_status) == ("transient", "rate_limited", 429)
    assert err.retry_after == pytest.approx(0.25)


def test_a_429_with_retry_after_seconds_is_transient_with_that_wait():
    err = failure(
        httpx.Response(
            429,
            headers={"retry-after": "7"},
            json=openai_error("slow down", type_="requests", code="rate_limit_exceeded"),
        )
    )
    assert err.kind == "transient"
    assert err.retry_after == 7.0


def test_a_429_with_retry_after_as_http_date_waits_until_that_date():
    when = format_datetime(datetime.fromtimestamp(NOW + 30, tz=UTC), usegmt=True)
    err = failure(httpx.Response(429, headers={"retry-after": when}, text="Too Many Requests"))
    assert err.kind == "transient"
    assert err.retry_after == pytest.approx(30.0)


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504, 529])
def test_server_side_failures_are_transient(status):
    err = failure(
        httpx.Response(
            status,
            json=openai_error(
                "The server had an error while processing your request. Sorry about that!",
                type_="server_error",
                code=None,
            ),
        )
    )
    assert err.kind == "transient"
    assert err.http_status == status


def test_a_read_timeout_is_transient():
    def timeout(request):
        raise httpx.ReadTimeout("timed out", request=request)

    err = failure(timeout)
    assert (err.kind, err.code) == ("transient", "timeout")


def test_a_connection_reset_is_transient():
    def reset(request):
        raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)

    err = failure(reset)
    assert (err.kind, err.code) == ("transient", "connection")


def test_a_refused_connection_is_transient():
    def refused(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    assert failure(refused).code == "connection"


def test_an_answer_slower_than_the_total_timeout_is_a_timeout():
    provider, client, _ = make(httpx.Response(200, json=ok_body()), timeout_total=10.0)
    ticks = iter([0.0, 11.0, 11.0, 11.0])
    provider.clock = lambda: next(ticks)
    with pytest.raises(ProviderError) as info:
        provider.send(req(), client=client, structured_mode=MODE_NONE)
    assert (info.value.kind, info.value.code) == ("transient", "timeout")
    assert "total 10.0s" in info.value.message


def test_a_malformed_json_body_is_transient():
    err = failure(
        httpx.Response(
            200,
            text='{"id": "chatcmpl-1", "choices": [',
            headers={"content-type": "application/json"},
        )
    )
    assert (err.kind, err.code) == ("transient", "malformed_response")


def test_a_body_without_choices_is_transient():
    err = failure(httpx.Response(200, json={"id": "chatcmpl-1", "object": "chat.completion"}))
    assert (err.kind, err.code) == ("transient", "malformed_response")


# --- errors that fail over ----------------------------------------------------------------------


def test_a_401_fails_over_and_asks_for_a_cooldown():
    err = failure(
        httpx.Response(
            401,
            json=openai_error(
                "Incorrect API key provided: sk-test***. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                type_="invalid_request_error",
                code="invalid_api_key",
            ),
        )
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "auth", True)


def test_a_403_fails_over_with_cooldown():
    err = failure(
        httpx.Response(
            403,
            json=openai_error(
                "Country not supported",
                type_="request_forbidden",
                code="unsupported_country_region_territory",
            ),
        )
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "auth", True)


def test_an_unknown_model_fails_over_without_cooldown():
    err = failure(
        httpx.Response(
            404,
            json=openai_error(
                "The model `gpt-9` does not exist or you do not have access to it.",
                type_="invalid_request_error",
                code="model_not_found",
            ),
        )
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "model_not_found", False)


def test_insufficient_quota_fails_over_with_cooldown_even_though_it_is_a_429():
    err = failure(
        httpx.Response(
            429,
            json=openai_error(
                "You exceeded your current quota, please check your plan and billing details.",
                type_="insufficient_quota",
                code="insufficient_quota",
            ),
        )
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "quota", True)


def test_a_context_window_overflow_fails_over():
    err = failure(
        httpx.Response(
            400,
            json=openai_error(
                "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 130211 tokens. Please reduce the length of the messages.",
                type_="invalid_request_error",
                code="context_length_exceeded",
                param="messages",
            ),
        )
    )
    assert (err.kind, err.code) == ("failover", "context_window")


# --- errors that stop -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422])
def test_other_bad_requests_are_fatal(status):
    err = failure(
        httpx.Response(
            status,
            json=openai_error(
                "Invalid type for 'messages[0].content': expected one of a string or array.",
                type_="invalid_request_error",
                code="invalid_type",
                param="messages[0].content",
            ),
        )
    )
    assert (err.kind, err.code) == ("fatal", "bad_request")


def test_a_refusal_is_a_clear_fatal_error():
    err = failure(
        httpx.Response(200, json=ok_body(None, refusal="I'm sorry, I can't help with that."))
    )
    assert (err.kind, err.code) == ("fatal", "refusal")
    assert "refused" in err.message
    assert "can't help with that" in err.message


def test_a_rejected_response_format_is_reported_as_unsupported_structured_mode():
    rejected = httpx.Response(
        400,
        json=openai_error(
            "Invalid schema for response_format 'result': In context=(), 'additionalProperties' "
            "is required to be supplied and to be false.",
            type_="invalid_request_error",
            code=None,
            param="response_format",
        ),
    )
    err = failure(rejected, mode=MODE_JSON_SCHEMA, json_schema=SCHEMA)
    assert (err.kind, err.code) == ("fatal", "structured_unsupported")
    # Without a structured mode in play the same words are just a bad request.
    assert failure(rejected, mode=MODE_PROMPT, json_schema=SCHEMA).code == "bad_request"


def test_an_unsupported_temperature_is_dropped_once_and_remembered():
    rejected = httpx.Response(
        400,
        json=openai_error(
            "Unsupported value: 'temperature' does not support 0.2 with this model. Only the "
            "default (1) value is supported.",
            type_="invalid_request_error",
            code="unsupported_value",
            param="temperature",
        ),
    )
    provider, client, rec = make(rejected, httpx.Response(200, json=ok_body()))
    result = provider.send(req(temperature=0.2), client=client, structured_mode=MODE_NONE)
    assert result.text == "Hello!"
    assert "temperature" in rec.payload(0)
    assert "temperature" not in rec.payload(1)
    provider.send(req(temperature=0.2), client=client, structured_mode=MODE_NONE)
    assert len(rec.requests) == 3
    assert "temperature" not in rec.payload(2)


# --- retry-after parsing ------------------------------------------------------------------------


def test_parse_retry_after_prefers_milliseconds_and_ignores_garbage():
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "1500"})) == 1.5
    assert parse_retry_after(httpx.Headers({"retry-after": "0"})) == 0.0
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"retry-after": "-3"})) is None
    assert parse_retry_after(httpx.Headers({})) is None
    past = format_datetime(datetime.fromtimestamp(NOW - 60, tz=UTC), usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": past}), now=lambda: NOW) == 0.0
