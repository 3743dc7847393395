"""The router end to end over mocked transports: each failure ends where DESIGN.md's rules say."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from llmcore.cache import ResponseCache
from llmcore.providers import make_provider
from llmcore.providers.base import (
    MODE_JSON_OBJECT,
    MODE_JSON_SCHEMA,
    MODE_TOOL,
    Provider,
    ProviderConfig,
)
from llmcore.router import HEALTH_KEY, MemoryCooldownStore, Router, backoff_delay
from llmcore.types import (
    AllProvidersFailedError,
    AllProvidersTransientError,
    LLMRequest,
    Message,
    ProviderError,
    StructuredOutputError,
)

EPOCH = 1_700_000_000.0

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "confidence_score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["title", "confidence_score"],
    "additionalProperties": False,
}
VALID = {"title": "Pin numpy below 2", "confidence_score": 80}


def validate_json(text: str, schema: dict[str, Any]) -> tuple[Any | None, list[str]]:
    """Stand-in for llmcore.structured.validate_json (written in parallel)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return None, [f"not JSON: {exc}"]
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(value)]
    return (None, errors) if errors else (value, [])


class FakeTime:
    """Monotonic and wall clocks that only move when the router sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --- recorded-shape answers ---------------------------------------------------------------------


def chat(
    content: str | None = "ok", *, model: str = "gpt-4o-mini-2024-07-18", refusal: str | None = None
) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": refusal},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200},
        },
    )


def oai_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    type_: str = "invalid_request_error",
    headers: dict | None = None,
    param: str | None = None,
) -> httpx.Response:
    return httpx.Response(
        status,
        headers=headers or {},
        json={"error": {"message": message, "type": type_, "param": param, "code": code}},
    )


def anthropic_msg(tool_input: dict | None = None, text: str = "ok") -> httpx.Response:
    content = (
        [{"type": "tool_use", "id": "toolu_1", "name": "result", "input": tool_input}]
        if tool_input is not None
        else [{"type": "text", "text": text}]
    )
    return httpx.Response(
        200,
        json={
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": content,
            "stop_reason": "tool_use" if tool_input is not None else "end_turn",
            "usage": {"input_tokens": 100, "output_tokens": 20},
        },
    )


def overloaded() -> httpx.Response:
    return httpx.Response(
        529, json={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )


def server_error() -> httpx.Response:
    return oai_error(
        500, "The server had an error while processing your request.", type_="server_error"
    )


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def reset(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)


# --- a fake world of providers ------------------------------------------------------------------

HOSTS = {
    "openai": ("openai", "https://api.openai.com/v1", "gpt-4o-mini"),
    "groq": ("groq", "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile"),
    "anthropic": ("anthropic", "https://api.anthropic.com/v1", "claude-sonnet-4-5"),
    "llamacpp": ("llamacpp", "http://llama.local:8080/v1", "default"),
    "offline": ("offline", "", "offline"),
}

Script = list[httpx.Response | Callable[[httpx.Request], httpx.Response]]


class World:
    """Scripted answers per provider; each call pops the next one (the last one repeats)."""

    def __init__(self, **scripts: Script) -> None:
        self.scripts = scripts
        self.calls: dict[str, list[httpx.Request]] = {name: [] for name in scripts}
        self.hosts = {httpx.URL(HOSTS[n][1]).host: n for n in scripts if HOSTS[n][1]}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        name = self.hosts[request.url.host]
        self.calls[name].append(request)
        script = self.scripts[name]
        item = script.pop(0) if len(script) > 1 else script[0]
        return item(request) if callable(item) else item

    def payloads(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.calls[name]]

    def count(self, name: str) -> int:
        return len(self.calls[name])


def provider(name: str) -> Provider:
    kind, base_url, model = HOSTS[name]
    return make_provider(
        ProviderConfig(name=name, kind=kind, base_url=base_url, api_key=f"key-{name}", model=model)
    )


def make_router(world: World, *names: str, time: FakeTime | None = None, **kwargs: Any) -> Router:
    time = time or FakeTime()
    providers = [provider(n) for n in names]
    for p in providers:
        p.wall_clock = time.wall
    options: dict[str, Any] = {
        "cooldown_store": MemoryCooldownStore(time.monotonic),
        "clock": time.monotonic,
        "sleep": time.sleep,
        "wall_clock": time.wall,
        "jitter": lambda: 0.5,
        "validator": validate_json,
        "client": httpx.Client(transport=httpx.MockTransport(world)),
        "mode_memory": {},
    }
    options.update(kwargs)
    return Router(providers, **options)


def ask(**kwargs: Any) -> LLMRequest:
    return LLMRequest(
        messages=[Message("user", "Why did the build fail? ImportError: numpy")], **kwargs
    )


# --- success ------------------------------------------------------------------------------------


def test_the_first_provider_answers_and_the_response_says_who_what_and_how_much():
    world = World(openai=[chat("Pin numpy<2.")], groq=[chat()])
    response = make_router(world, "openai", "groq").complete(ask())
    assert response.text == "Pin numpy<2."
    assert (response.provider, response.model) == ("openai", "gpt-4o-mini-2024-07-18")
    assert response.usage.input_tokens == 1000
    # gpt-4o-mini: 1000 * 0.15 + 200 * 0.60 per million
    assert response.cost_usd == pytest.approx(0.00027)
    assert response.cost_known
    assert [a.status for a in response.attempts] == ["ok"]
    assert response.offline is False
    assert world.count("groq") == 0


# --- quick retries ------------------------------------------------------------------------------


def test_a_429_is_retried_after_retry_after_ms():
    world = World(
        openai=[
            oai_error(
                429,
                "Rate limit reached",
                code="rate_limit_exceeded",
                headers={"retry-after-ms": "250"},
            ),
            chat(),
        ]
    )
    time = FakeTime()
    response = make_router(world, "openai", time=time).complete(ask())
    assert time.sleeps == [0.25]
    assert [a.status for a in response.attempts] == ["retry", "ok"]
    assert response.attempts[0].http_status == 429
    assert response.attempts[0].retry_after == 0.25


def test_a_429_is_retried_after_retry_after_seconds():
    world = World(
        openai=[oai_error(429, "Rate limit reached", headers={"retry-after": "3"}), chat()]
    )
    time = FakeTime()
    make_router(world, "openai", time=time).complete(ask())
    assert time.sleeps == [3.0]


def test_a_429_is_retried_at_the_http_date_it_names():
    when = format_datetime(datetime.fromtimestamp(EPOCH + 20, tz=UTC), usegmt=True)
    world = World(
        openai=[oai_error(429, "Rate limit reached", headers={"retry-after": when}), chat()]
    )
    time = FakeTime()
    make_router(world, "openai", time=time).complete(ask())
    assert time.sleeps == [pytest.approx(20.0)]


def test_a_retry_after_over_the_cap_fails_over_at_once_and_cools_the_provider_down():
    world = World(
        openai=[oai_error(429, "Rate limit reached", headers={"retry-after": "600"})],
        groq=[chat("from groq")],
    )
    time = FakeTime()
    router = make_router(world, "openai", "groq", time=time)
    response = router.complete(ask())
    assert response.provider == "groq"
    assert time.sleeps == []
    assert [(a.provider, a.status) for a in response.attempts] == [
        ("openai", "failover"),
        ("groq", "ok"),
    ]
    # The next call does not even ask: the provider is cooling down for the 600 s it asked for.
    response = router.complete(ask())
    assert world.count("openai") == 1
    assert response.attempts[0].error_code == "cooldown"
    time.now += 601
    router.complete(ask())
    assert world.count("openai") == 2


def test_500s_are_retried_with_jittered_backoff_then_fail_over():
    world = World(openai=[server_error()], groq=[chat("from groq")])
    time = FakeTime()
    response = make_router(world, "openai", "groq", time=time).complete(ask())
    assert response.provider == "groq"
    assert world.count("openai") == 3  # first try + max_quick_retries (2)
    # equal jitter with jitter()=0.5: 0.5 * (0.5 + 0.25), then 1.0 * (0.5 + 0.25)
    assert time.sleeps == [pytest.approx(0.375), pytest.approx(0.75)]
    assert [a.status for a in response.attempts] == ["retry", "retry", "failover", "ok"]


def test_a_529_overloaded_from_anthropic_is_retried():
    world = World(anthropic=[overloaded(), anthropic_msg(text="recovered")])
    response = make_router(world, "anthropic").complete(ask())
    assert response.text == "recovered"
    assert [a.http_status for a in response.attempts] == [529, 200]


def test_a_timeout_is_retried():
    world = World(openai=[timeout, chat("after timeout")])
    response = make_router(world, "openai").complete(ask())
    assert response.text == "after timeout"
    assert response.attempts[0].error_code == "timeout"


def test_a_connection_reset_is_retried():
    world = World(openai=[reset, chat("after reset")])
    response = make_router(world, "openai").complete(ask())
    assert response.text == "after reset"
    assert response.attempts[0].error_code == "connection"


def test_a_malformed_json_body_is_retried():
    world = World(openai=[httpx.Response(200, text='{"choices": [{"mess'), chat("clean")])
    response = make_router(world, "openai").complete(ask())
    assert response.text == "clean"
    assert response.attempts[0].error_code == "malformed_response"


# --- failover -------------------------------------------------------------------------------------


def test_a_401_fails_over_at_once_and_the_provider_cools_down_across_routers():
    world = World(
        openai=[oai_error(401, "Incorrect API key provided", code="invalid_api_key")],
        groq=[chat("groq")],
    )
    time = FakeTime()
    store = MemoryCooldownStore(time.monotonic)
    router = make_router(world, "openai", "groq", time=time, cooldown_store=store)
    response = router.complete(ask())
    assert response.provider == "groq"
    assert time.sleeps == []
    assert store.get(HEALTH_KEY.format(name="openai"))["reason"] == "auth"
    # Another router (another process) sharing the store skips openai too.
    other = make_router(world, "openai", "groq", time=time, cooldown_store=store)
    response = other.complete(ask())
    assert world.count("openai") == 1
    assert response.attempts[0].status == "failover"
    assert "cooling down (auth)" in response.attempts[0].error


def test_a_404_model_fails_over_without_cooling_the_provider_down():
    world = World(
        openai=[
            oai_error(404, "The model `gpt-9` does not exist", code="model_not_found"),
            chat("second try"),
        ],
        groq=[chat("groq")],
    )
    router = make_router(world, "openai", "groq")
    assert router.complete(ask(model="gpt-9")).provider == "groq"
    assert router.complete(ask()).provider == "openai"


def test_quota_exhaustion_fails_over_and_cools_down():
    world = World(
        openai=[
            oai_error(
                429,
                "You exceeded your current quota",
                code="insufficient_quota",
                type_="insufficient_quota",
            )
        ],
        groq=[chat("groq")],
    )
    time = FakeTime()
    router = make_router(world, "openai", "groq", time=time)
    assert router.complete(ask()).provider == "groq"
    assert time.sleeps == []
    router.complete(ask())
    assert world.count("openai") == 1
    assert router.cooldowns()["openai"]["reason"] == "quota"


def test_a_context_window_error_fails_over():
    world = World(
        openai=[
            oai_error(
                400,
                "This model's maximum context length is 128000 tokens.",
                code="context_length_exceeded",
            )
        ],
        anthropic=[anthropic_msg(text="long context ok")],
    )
    response = make_router(world, "openai", "anthropic").complete(ask())
    assert response.provider == "anthropic"


def test_the_offline_provider_answers_when_every_real_one_fails():
    world = World(openai=[oai_error(401, "bad key")], offline=[])
    response = make_router(world, "openai", "offline").complete(ask(json_schema=SCHEMA))
    assert response.offline
    assert response.provider == "offline"
    assert response.parsed["confidence_score"] <= 20
    assert response.cost_usd == 0.0


def test_a_crashing_adapter_does_not_stop_the_chain():
    class Broken(Provider):
        kind = "openai"

        def send(self, request, *, client, structured_mode):
            raise KeyError("choices")

    broken = Broken(ProviderConfig(name="broken", kind="openai", base_url="https://x", model="m"))
    world = World(groq=[chat("groq")])
    router = make_router(world, "groq")
    router.providers.insert(0, broken)
    response = router.complete(ask())
    assert response.provider == "groq"
    assert response.attempts[0].error_code == "internal_error"


# --- failing fast -------------------------------------------------------------------------------


def test_a_plain_400_fails_fast_and_never_reaches_the_next_provider():
    world = World(
        openai=[oai_error(400, "Invalid type for 'messages[0].content'", code="invalid_type")],
        groq=[chat()],
    )
    with pytest.raises(ProviderError) as info:
        make_router(world, "openai", "groq").complete(ask())
    assert info.value.kind == "fatal"
    assert world.count("groq") == 0
    assert [a.status for a in info.value.attempts] == ["fatal"]


def test_a_refusal_fails_fast():
    world = World(openai=[chat(None, refusal="I can't help with that.")], groq=[chat()])
    with pytest.raises(ProviderError) as info:
        make_router(world, "openai", "groq").complete(ask())
    assert info.value.code == "refusal"
    assert world.count("groq") == 0


# --- when everything fails ----------------------------------------------------------------------


def test_every_provider_failing_transiently_asks_for_a_later_retry():
    world = World(
        openai=[oai_error(429, "Rate limit reached", headers={"retry-after": "2"})],
        anthropic=[overloaded()],
    )
    with pytest.raises(AllProvidersTransientError) as info:
        make_router(world, "openai", "anthropic").complete(ask())
    err = info.value
    assert world.count("openai") == 3
    assert world.count("anthropic") == 3
    assert len(err.attempts) == 6
    assert err.retry_after == 2.0


def test_a_mix_of_transient_and_permanent_failures_is_a_plain_failure():
    world = World(openai=[oai_error(401, "bad key")], groq=[server_error()])
    with pytest.raises(AllProvidersFailedError) as info:
        make_router(world, "openai", "groq").complete(ask())
    assert "openai" in str(info.value)
    assert [a.provider for a in info.value.attempts] == ["openai", "groq", "groq", "groq"]


def test_no_providers_is_a_clear_failure():
    with pytest.raises(AllProvidersFailedError, match="no LLM providers"):
        Router([], validator=validate_json).complete(ask())


# --- repeated failures cool a provider down -----------------------------------------------------


def test_consecutive_transient_give_ups_cool_the_provider_down_and_success_resets_them():
    world = World(openai=[server_error()], groq=[chat("groq")])
    time = FakeTime()
    router = make_router(
        world, "openai", "groq", time=time, failure_threshold=3, max_quick_retries=0
    )
    router.complete(ask())
    router.complete(ask())
    assert router.cooldowns()["openai"]["failures"] == 2
    router.complete(ask())
    assert router.cooldowns()["openai"]["reason"] == "failures"
    router.complete(ask())
    assert world.count("openai") == 3  # the 4th call skipped it

    world.scripts["openai"] = [chat("back")]
    time.now += 61
    assert router.complete(ask()).provider == "openai"


def test_a_success_clears_the_failure_count():
    world = World(openai=[server_error(), chat("ok")], groq=[chat("groq")])
    router = make_router(world, "openai", "groq", max_quick_retries=0)
    router.complete(ask())
    assert router.cooldowns()["openai"]["failures"] == 1
    router.complete(ask())
    assert router.cooldowns()["openai"] == {}


# --- structured output --------------------------------------------------------------------------


def test_a_valid_structured_answer_is_parsed():
    world = World(openai=[chat(json.dumps(VALID))])
    response = make_router(world, "openai").complete(ask(json_schema=SCHEMA))
    assert response.parsed == VALID
    assert response.structured_mode == MODE_JSON_SCHEMA
    assert world.payloads("openai")[0]["response_format"]["json_schema"]["strict"] is True


def test_anthropic_structured_output_is_tool_forced():
    world = World(anthropic=[anthropic_msg(tool_input=VALID)])
    response = make_router(world, "anthropic").complete(ask(json_schema=SCHEMA))
    assert response.parsed == VALID
    assert response.structured_mode == MODE_TOOL


def test_schema_invalid_json_gets_one_repair_attempt_that_succeeds():
    world = World(openai=[chat('{"title": "", "confidence_score": 250}'), chat(json.dumps(VALID))])
    response = make_router(world, "openai").complete(ask(json_schema=SCHEMA))
    assert response.parsed == VALID
    assert [a.status for a in response.attempts] == ["retry", "ok"]
    assert response.attempts[0].error_code == "schema_invalid"
    assert response.attempts[1].repair is True
    repair_messages = world.payloads("openai")[1]["messages"]
    assert repair_messages[-2] == {
        "role": "assistant",
        "content": '{"title": "", "confidence_score": 250}',
    }
    assert "250 is greater than the maximum of 100" in repair_messages[-1]["content"]
    # Both calls are paid for.
    assert response.usage.input_tokens == 2000


def test_schema_invalid_json_twice_is_a_structured_output_error():
    world = World(
        openai=[chat("Sure! Here is the JSON: {oops"), chat('{"title": "x"}')],
        groq=[chat(json.dumps(VALID))],
    )
    with pytest.raises(StructuredOutputError) as info:
        make_router(world, "openai", "groq").complete(ask(json_schema=SCHEMA))
    err = info.value
    assert world.count("openai") == 2
    assert world.count("groq") == 0
    assert any("confidence_score" in e for e in err.errors)
    assert err.response is not None
    assert err.response.text == '{"title": "x"}'
    assert [a.status for a in err.attempts] == ["retry", "fatal"]


def test_a_repair_call_that_errors_is_a_structured_output_error():
    world = World(openai=[chat("not json"), oai_error(400, "Invalid request", code="invalid")])
    with pytest.raises(StructuredOutputError, match="repair call failed"):
        make_router(world, "openai").complete(ask(json_schema=SCHEMA))


def test_a_rejected_structured_mode_steps_down_and_is_remembered():
    rejected = oai_error(
        400,
        'response_format type must be one of "text" or "json_object", but got: json_schema',
        param="response_format",
    )
    world = World(groq=[rejected, chat(json.dumps(VALID))])
    memory: dict = {}
    router = make_router(world, "groq", mode_memory=memory)
    response = router.complete(ask(json_schema=SCHEMA))
    assert response.structured_mode == MODE_JSON_OBJECT
    assert [a.status for a in response.attempts] == ["retry", "ok"]
    assert memory[("groq", "llama-3.3-70b-versatile")] == 1

    world.scripts["groq"] = [chat(json.dumps(VALID))]
    response = make_router(world, "groq", mode_memory=memory).complete(ask(json_schema=SCHEMA))
    assert [a.status for a in response.attempts] == ["ok"]
    assert world.payloads("groq")[-1]["response_format"] == {"type": "json_object"}


def test_when_even_the_weakest_mode_is_rejected_the_request_fails_fast():
    rejected = oai_error(400, "schema is not supported", param="response_format")
    world = World(llamacpp=[rejected])
    with pytest.raises(ProviderError) as info:
        make_router(world, "llamacpp").complete(ask(json_schema=SCHEMA))
    # json_object+schema was refused, then the prompt-only request was refused too.
    assert world.count("llamacpp") == 2
    assert info.value.kind == "fatal"


# --- model pinning and caching ------------------------------------------------------------------


def test_a_pinned_model_goes_only_to_its_provider():
    world = World(groq=[oai_error(503, "busy")], openai=[chat()])
    make_router(world, "groq", "openai", max_quick_retries=0).complete(ask(model="openai:gpt-4o"))
    assert world.payloads("groq")[0]["model"] == "llama-3.3-70b-versatile"
    assert world.payloads("openai")[0]["model"] == "gpt-4o"


def test_the_response_cache_is_off_unless_enabled():
    world = World(openai=[chat("fresh")])
    store = MemoryCooldownStore()
    router = make_router(world, "openai", response_cache=ResponseCache(store))
    router.complete(ask())
    router.complete(ask())
    assert world.count("openai") == 2

    router = make_router(world, "openai", response_cache=ResponseCache(store, enabled=True))
    router.complete(ask())
    cached = router.complete(ask())
    assert world.count("openai") == 3
    assert cached.text == "fresh"
    assert cached.attempts[-1].error_code == "cache_hit"
    assert cached.cost_usd == 0.0


# --- job-level backoff --------------------------------------------------------------------------


def test_backoff_delay_doubles_from_five_seconds_and_caps_at_five_minutes():
    no_jitter = {"jitter": lambda: 1.0}
    assert [backoff_delay(n, **no_jitter) for n in range(1, 8)] == [5, 10, 20, 40, 80, 160, 300]
    assert backoff_delay(100, **no_jitter) == 300


def test_backoff_delay_equal_jitter_never_waits_less_than_half():
    assert backoff_delay(1, jitter=lambda: 0.0) == 2.5
    assert backoff_delay(3, jitter=lambda: 0.0) == 10.0


def test_backoff_delay_full_jitter_spans_zero_to_the_exponential():
    assert backoff_delay(2, jitter=lambda: 0.0, strategy="full") == 0.0
    assert backoff_delay(2, jitter=lambda: 0.5, strategy="full") == 5.0


def test_backoff_delay_rejects_attempt_zero():
    with pytest.raises(ValueError, match="from 1"):
        backoff_delay(0)


# --- the call's deadline ------------------------------------------------------------------------


def _slow(time: FakeTime, seconds: float, answer: httpx.Response | None = None):
    """An answer that takes `seconds` (a timeout when `answer` is None)."""

    def respond(request: httpx.Request) -> httpx.Response:
        time.now += seconds
        if answer is None:
            raise httpx.ReadTimeout("timed out", request=request)
        return answer

    return respond


def _deadline_router(world: World, *names: str, time: FakeTime, deadline: float) -> Router:
    router = make_router(world, *names, time=time, deadline=deadline)
    for p in router.providers:
        p.clock = time.monotonic  # the providers' own total-timeout clock is the fake one too
    return router


def test_slow_providers_give_up_at_the_deadline_and_the_job_is_asked_to_retry_later():
    time = FakeTime()

    # Each attempt hangs for 100 s, then times out.
    world = World(openai=[_slow(time, 100)], groq=[chat("never asked")])
    router = _deadline_router(world, "openai", "groq", time=time, deadline=250)
    with pytest.raises(AllProvidersTransientError) as info:
        router.complete(ask())
    # Three attempts on openai (the third starts at ~201 s with ~49 s left), then no time for groq.
    assert world.count("openai") == 3
    assert world.count("groq") == 0
    last = info.value.attempts[-1]
    assert (last.provider, last.error_code) == ("groq", "deadline")
    assert "250s deadline" in (last.error or "")


def test_past_the_deadline_the_offline_provider_still_answers_last():
    time = FakeTime()

    world = World(openai=[_slow(time, 100)], groq=[chat("never asked")])
    router = _deadline_router(world, "openai", "groq", "offline", time=time, deadline=150)
    response = router.complete(ask())
    assert response.provider == "offline"
    assert world.count("groq") == 0
    assert [a.error_code for a in response.attempts if a.provider == "groq"] == ["deadline"]


def test_each_request_s_timeouts_are_capped_by_the_time_left():
    time = FakeTime()
    seen: list[dict[str, float]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        time.now += 20
        raise httpx.ReadTimeout("timed out", request=request)

    world = World(openai=[record, chat("in time")])
    response = _deadline_router(world, "openai", time=time, deadline=30).complete(ask())
    assert response.text == "in time"
    assert seen[0]["read"] == pytest.approx(30)  # not the provider's own 60 s
    assert seen[0]["connect"] == pytest.approx(5)  # already below the time left
    assert world.count("openai") == 2  # the retry went out within the ~9.6 s left


def test_a_retry_that_could_not_start_before_the_deadline_is_not_waited_for():
    time = FakeTime()
    world = World(
        openai=[oai_error(429, "Rate limit reached", headers={"retry-after": "20"})],
        groq=[chat("from groq")],
    )
    response = _deadline_router(world, "openai", "groq", time=time, deadline=10).complete(ask())
    assert response.provider == "groq"
    assert time.sleeps == []  # the 20 s wait would pass the 10 s deadline: fail over at once
    assert world.count("openai") == 1


def test_without_a_deadline_the_router_waits_as_before():
    time = FakeTime()
    world = World(
        openai=[oai_error(429, "Rate limit reached", headers={"retry-after": "20"}), chat("ok")]
    )
    response = make_router(world, "openai", time=time).complete(ask())
    assert response.text == "ok"
    assert time.sleeps == [20.0]


def test_a_request_cut_by_the_deadline_is_not_held_against_the_provider():
    time = FakeTime()
    world = World(openai=[_slow(time, 100)], groq=[_slow(time, 100)])
    router = _deadline_router(world, "openai", "groq", time=time, deadline=150)
    router.max_quick_retries = 0
    router.failure_threshold = 1  # one counted failure cools a provider down (for long)
    router.failure_cooldown = 3600
    with pytest.raises(AllProvidersTransientError) as info:
        router.complete(ask())
    groq = [a for a in info.value.attempts if a.provider == "groq"]
    assert [a.error_code for a in groq] == ["deadline"]
    assert "the call's deadline left 50.0s" in (groq[0].error or "")
    # openai timed out within its own limits (150 s left > its 120 s total): that counts.
    assert router.store.get(HEALTH_KEY.format(name="openai"))["reason"] == "failures"
    assert router.store.get(HEALTH_KEY.format(name="groq")) is None


def test_a_provider_never_asked_for_lack_of_time_keeps_the_outcome_transient():
    time = FakeTime()
    world = World(
        openai=[oai_error(401, "Incorrect API key provided", code="invalid_api_key")],
        groq=[_slow(time, 100)],
        anthropic=[anthropic_msg(text="never asked")],
    )
    router = _deadline_router(world, "openai", "groq", "anthropic", time=time, deadline=50)
    # A permanent failure (openai) alone would be AllProvidersFailedError; anthropic was not
    # asked, so the job must be retried, not failed.
    with pytest.raises(AllProvidersTransientError):
        router.complete(ask())
    assert world.count("anthropic") == 0


def test_no_repair_call_without_time_for_it_the_job_is_retried():
    time = FakeTime()
    world = World(openai=[_slow(time, 49, chat('{"title": ""}')), chat(json.dumps(VALID))])
    router = _deadline_router(world, "openai", time=time, deadline=50)
    with pytest.raises(AllProvidersTransientError, match="repair"):
        router.complete(ask(json_schema=SCHEMA))
    assert world.count("openai") == 1


def test_no_weaker_structured_mode_without_time_for_it():
    time = FakeTime()
    rejected = oai_error(
        400,
        'response_format type must be one of "text" or "json_object", but got: json_schema',
        param="response_format",
    )
    world = World(groq=[_slow(time, 49, rejected), chat(json.dumps(VALID))])
    router = _deadline_router(world, "groq", time=time, deadline=50)
    with pytest.raises(AllProvidersTransientError):
        router.complete(ask(json_schema=SCHEMA))
    assert world.count("groq") == 1


def test_a_short_deadline_still_lets_the_first_request_go_out():
    # Q_TIMEOUT=3 gives a 1.5 s deadline: less than the 2 s a request normally needs to start.
    time = FakeTime()
    world = World(openai=[_slow(time, 1, chat("in time"))])
    response = _deadline_router(world, "openai", time=time, deadline=1.5).complete(ask())
    assert response.text == "in time"
