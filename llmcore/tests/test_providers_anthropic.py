"""The Anthropic Messages adapter against recorded-shape answers, httpx mocked at the transport."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmcore.providers.anthropic import AnthropicProvider
from llmcore.providers.base import MODE_NONE, MODE_PROMPT, MODE_TOOL, ProviderConfig
from llmcore.types import LLMRequest, Message, ProviderError

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "confidence_score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["title", "confidence_score"],
}


def message_body(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    cache_read: int = 0,
    cache_write: int = 0,
) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 40,
            "output_tokens": 25,
            "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
        },
    }


def anthropic_error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


class Recorder:
    def __init__(self, response: Any) -> None:
        self.response = response
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response(request) if callable(self.response) else self.response

    def payload(self) -> dict[str, Any]:
        return json.loads(self.requests[-1].content)


def make(response: Any, **config: Any) -> tuple[AnthropicProvider, httpx.Client, Recorder]:
    rec = Recorder(response)
    cfg = {
        "name": "anthropic",
        "kind": "anthropic",
        "base_url": "https://api.anthropic.com/v1",
        "api_key": "sk-ant-test",
        "model": "claude-sonnet-4-5",
        **config,
    }
    return (
        AnthropicProvider(ProviderConfig(**cfg)),
        httpx.Client(transport=httpx.MockTransport(rec)),
        rec,
    )


def req(**kwargs: Any) -> LLMRequest:
    return LLMRequest(messages=[Message("user", "Summarise this failure.")], **kwargs)


def failure(response: Any, mode: str = MODE_NONE, **kwargs: Any) -> ProviderError:
    provider, client, _ = make(response)
    with pytest.raises(ProviderError) as info:
        provider.send(req(**kwargs), client=client, structured_mode=mode)
    return info.value


def test_it_posts_messages_with_api_key_version_and_top_level_system():
    provider, client, rec = make(
        httpx.Response(200, json=message_body([{"type": "text", "text": "ok"}]))
    )
    request = LLMRequest(
        messages=[
            Message("system", "Extra rule."),
            Message("user", "Summarise this failure."),
            Message("assistant", "Which one?"),
            Message("user", "The first."),
        ],
        system="You are terse.",
        temperature=0.1,
    )
    provider.send(request, client=client, structured_mode=MODE_NONE)
    sent = rec.requests[0]
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    payload = rec.payload()
    assert payload["system"] == "You are terse.\n\nExtra rule."
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user"]
    assert payload["max_tokens"] == 1024  # required by the API, so always sent
    assert payload["temperature"] == 0.1
    assert "tools" not in payload


def test_max_tokens_comes_from_the_request_then_the_config():
    provider, client, rec = make(
        httpx.Response(200, json=message_body([{"type": "text", "text": "ok"}])), max_tokens=500
    )
    provider.send(req(), client=client, structured_mode=MODE_NONE)
    assert rec.payload()["max_tokens"] == 500
    provider.send(req(max_tokens=77), client=client, structured_mode=MODE_NONE)
    assert rec.payload()["max_tokens"] == 77


def test_it_joins_text_blocks_and_counts_cache_reads_as_cached_input():
    body = message_body(
        [{"type": "text", "text": "Pin "}, {"type": "text", "text": "numpy<2."}],
        cache_read=100,
        cache_write=10,
    )
    provider, client, _ = make(httpx.Response(200, json=body))
    result = provider.send(req(), client=client, structured_mode=MODE_NONE)
    assert result.text == "Pin numpy<2."
    assert result.model == "claude-sonnet-4-5-20250929"
    assert result.usage.input_tokens == 150
    assert result.usage.cached_tokens == 100
    assert result.usage.output_tokens == 25


def test_tool_mode_forces_one_tool_whose_input_schema_is_the_schema():
    body = message_body(
        [
            {
                "type": "tool_use",
                "id": "toolu_01A09q90qw90lq917835lq9",
                "name": "spell",
                "input": {"title": "Pin numpy", "confidence_score": 70},
            }
        ],
        stop_reason="tool_use",
    )
    provider, client, rec = make(httpx.Response(200, json=body))
    result = provider.send(
        req(json_schema=SCHEMA, schema_name="spell"), client=client, structured_mode=MODE_TOOL
    )
    payload = rec.payload()
    assert payload["tools"][0]["name"] == "spell"
    assert payload["tools"][0]["input_schema"] == SCHEMA
    assert payload["tool_choice"] == {"type": "tool", "name": "spell"}
    assert json.loads(result.text) == {"title": "Pin numpy", "confidence_score": 70}
    assert result.structured_mode == MODE_TOOL


def test_tool_mode_wraps_and_unwraps_a_non_object_schema():
    schema = {"type": "array", "items": {"type": "string"}}
    body = message_body(
        [{"type": "tool_use", "id": "toolu_1", "name": "result", "input": {"result": ["a", "b"]}}],
        stop_reason="tool_use",
    )
    provider, client, rec = make(httpx.Response(200, json=body))
    result = provider.send(req(json_schema=schema), client=client, structured_mode=MODE_TOOL)
    assert rec.payload()["tools"][0]["input_schema"]["properties"]["result"] == schema
    assert json.loads(result.text) == ["a", "b"]


def test_prompt_mode_puts_the_schema_in_the_system_prompt():
    provider, client, rec = make(
        httpx.Response(200, json=message_body([{"type": "text", "text": "{}"}]))
    )
    provider.send(req(json_schema=SCHEMA), client=client, structured_mode=MODE_PROMPT)
    payload = rec.payload()
    assert "JSON Schema" in payload["system"]
    assert "tools" not in payload


def test_overloaded_529_is_transient():
    err = failure(httpx.Response(529, json=anthropic_error("overloaded_error", "Overloaded")))
    assert (err.kind, err.code, err.http_status) == ("transient", "overloaded", 529)


def test_a_rate_limit_carries_retry_after():
    err = failure(
        httpx.Response(
            429,
            headers={"retry-after": "12"},
            json=anthropic_error(
                "rate_limit_error",
                "This request would exceed the rate limit for your organization of 50 input "
                "tokens per minute.",
            ),
        )
    )
    assert (err.kind, err.code, err.retry_after) == ("transient", "rate_limited", 12.0)


def test_api_error_500_is_transient():
    err = failure(httpx.Response(500, json=anthropic_error("api_error", "Internal server error")))
    assert err.kind == "transient"


def test_a_connection_reset_is_transient():
    def reset(request):
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )

    assert failure(reset).kind == "transient"


def test_an_invalid_key_fails_over_with_cooldown():
    err = failure(
        httpx.Response(401, json=anthropic_error("authentication_error", "invalid x-api-key"))
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "auth", True)


def test_an_unknown_model_fails_over():
    err = failure(
        httpx.Response(404, json=anthropic_error("not_found_error", "model: claude-9-opus"))
    )
    assert (err.kind, err.code) == ("failover", "model_not_found")


def test_a_prompt_too_long_fails_over():
    err = failure(
        httpx.Response(
            400,
            json=anthropic_error(
                "invalid_request_error", "prompt is too long: 215000 tokens > 200000 maximum"
            ),
        )
    )
    assert (err.kind, err.code) == ("failover", "context_window")


def test_an_empty_credit_balance_is_quota():
    err = failure(
        httpx.Response(
            400,
            json=anthropic_error(
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans "
                "& Billing to upgrade or purchase credits.",
            ),
        )
    )
    assert (err.kind, err.code, err.cooldown) == ("failover", "quota", True)


def test_other_invalid_requests_are_fatal():
    err = failure(
        httpx.Response(
            400,
            json=anthropic_error(
                "invalid_request_error", "messages: roles must alternate between user and assistant"
            ),
        )
    )
    assert (err.kind, err.code) == ("fatal", "bad_request")


def test_a_rejected_tool_schema_asks_for_a_weaker_mode():
    err = failure(
        httpx.Response(
            400,
            json=anthropic_error(
                "invalid_request_error", "tools.0.input_schema: JSON schema is invalid"
            ),
        ),
        mode=MODE_TOOL,
        json_schema=SCHEMA,
    )
    assert (err.kind, err.code) == ("fatal", "structured_unsupported")


def test_a_refusal_stop_reason_is_a_clear_fatal_error():
    err = failure(
        httpx.Response(
            200,
            json=message_body(
                [{"type": "text", "text": "I can't help with that."}], stop_reason="refusal"
            ),
        )
    )
    assert (err.kind, err.code) == ("fatal", "refusal")
    assert "can't help" in err.message


def test_a_malformed_body_is_transient():
    err = failure(httpx.Response(200, text="<html>502 Bad Gateway</html>"))
    assert (err.kind, err.code) == ("transient", "malformed_response")


def test_a_body_without_content_blocks_is_transient():
    err = failure(httpx.Response(200, json={"type": "message", "role": "assistant"}))
    assert err.code == "malformed_response"
