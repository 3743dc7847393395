"""Provider faults through the whole job path: `run_llm_job` → real router → real adapters →
httpx mocked at the transport with the shapes OpenAI and Anthropic really answer with.

Every job must end where DESIGN.md's retry rules say (retried in the call, failed over, failed
fast, or retried later on the backoff schedule) and never be left `processing`. The canary test
plants secrets of several kinds and proves none reaches a provider, the database or the logs.
"""

from __future__ import annotations

import json
import logging
import random
import string
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from django.forms.models import model_to_dict
from django.utils import timezone

from grimoire.testing import RecordingTransport, json_response
from llmcore import gateway, services
from llmcore.models import JobStatus, LLMOutput
from llmcore.tasks import run_llm_job

pytestmark = pytest.mark.django_db

OPENAI_KEY = "sk-test-" + "o" * 40
ANTHROPIC_KEY = "sk-ant-test-" + "a" * 40
OPENAI = {"LLM_PROVIDERS": "openai", "OPENAI_API_KEY": OPENAI_KEY}
ANTHROPIC = {"LLM_PROVIDERS": "anthropic", "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
BOTH = {
    "LLM_PROVIDERS": "openai,anthropic",
    "OPENAI_API_KEY": OPENAI_KEY,
    "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
}

# --- Recorded-shape answers ---------------------------------------------------------------------


def openai_ok(text: str = "Pin numpy<2 and rebuild.") -> httpx.Response:
    return json_response(
        200,
        {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 19,
                "completion_tokens": 10,
                "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_06737a9306",
        },
        headers={"x-request-id": "req_1", "openai-processing-ms": "412"},
    )


def openai_error(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return json_response(status, body, headers)


def openai_429(retry_after: str = "2") -> httpx.Response:
    return openai_error(
        429,
        "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): "
        "Limit 3, Used 3, Requested 1. Please try again in 20s.",
        "requests",
        "rate_limit_exceeded",
        {
            "retry-after": retry_after,
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": "0",
        },
    )


def openai_500() -> httpx.Response:
    return openai_error(
        500,
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )


def openai_401() -> httpx.Response:
    return openai_error(
        401,
        "Incorrect API key provided: sk-test-****oooo. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )


def openai_404_model() -> httpx.Response:
    return openai_error(
        404,
        "The model `gpt-9-turbo` does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    )


def openai_quota() -> httpx.Response:
    return openai_error(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
    )


def openai_400() -> httpx.Response:
    return openai_error(
        400,
        "Invalid value for 'temperature': expected a number between 0 and 2.",
        "invalid_request_error",
        "invalid_value",
    )


def openai_malformed() -> httpx.Response:
    # A 200 cut short mid-body (proxy reset, truncated by a load balancer).
    return httpx.Response(
        200,
        content=b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"index": 0, "mess',
        headers={"content-type": "application/json"},
    )


def openai_html_502() -> httpx.Response:
    return httpx.Response(
        502,
        content=b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>",
        headers={"content-type": "text/html"},
    )


def openai_refusal() -> httpx.Response:
    return json_response(
        200,
        {
            "id": "chatcmpl-2",
            "object": "chat.completion",
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": "I'm sorry, I can't assist with that request.",
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 19, "completion_tokens": 9, "total_tokens": 28},
        },
    )


def anthropic_ok(text: str = "Pin numpy<2 and rebuild.") -> httpx.Response:
    return json_response(
        200,
        {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 11,
            },
        },
        headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"},
    )


def anthropic_error(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return json_response(status, body, {"request-id": "req_err", **(headers or {})})


def anthropic_529() -> httpx.Response:
    return anthropic_error(529, "overloaded_error", "Overloaded")


def anthropic_429(retry_after: str = "3") -> httpx.Response:
    return anthropic_error(
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization of 50 requests per minute.",
        {"retry-after": retry_after, "anthropic-ratelimit-requests-remaining": "0"},
    )


def anthropic_401() -> httpx.Response:
    return anthropic_error(401, "authentication_error", "invalid x-api-key")


def anthropic_404_model() -> httpx.Response:
    return anthropic_error(404, "not_found_error", "model: claude-9-opus")


def anthropic_credit() -> httpx.Response:
    return anthropic_error(
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits.",
    )


def anthropic_refusal() -> httpx.Response:
    return json_response(
        200,
        {
            "id": "msg_02",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [],
            "stop_reason": "refusal",
            "stop_sequence": None,
            "usage": {"input_tokens": 25, "output_tokens": 0},
        },
    )


def read_timeout() -> Exception:
    return httpx.ReadTimeout("The read operation timed out")


def connection_reset() -> Exception:
    return httpx.ConnectError("[Errno 104] Connection reset by peer")


# --- Harness ------------------------------------------------------------------------------------

Answer = httpx.Response | Exception | Callable[[], httpx.Response | Exception]


class Providers:
    """Scripted answers per provider host, the requests each one saw, the router's sleeps."""

    HOSTS = {"api.openai.com": "openai", "api.anthropic.com": "anthropic"}

    def __init__(self) -> None:
        self.scripts: dict[str, list[Answer]] = {"openai": [], "anthropic": []}
        self.sleeps: list[float] = []
        self.transport = RecordingTransport(self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        name = self.HOSTS[request.url.host]
        script = self.scripts[name]
        if not script:
            raise AssertionError(f"unexpected request to {name}: {request.url}")
        item = script.pop(0)
        if callable(item) and not isinstance(item, httpx.Response):
            item = item()
        if isinstance(item, Exception):
            raise item
        return item

    def requests_to(self, name: str) -> list[httpx.Request]:
        return [r for r in self.transport.requests if self.HOSTS[r.url.host] == name]

    def bodies(self) -> list[dict]:
        return [json.loads(r.content) for r in self.transport.requests]


@pytest.fixture
def providers():
    """`providers(env, openai=[...], anthropic=[...])` installs a real router over the script."""
    contexts = []

    def install(env, *, openai=(), anthropic=()) -> Providers:
        fake = Providers()
        fake.scripts["openai"] = list(openai)
        fake.scripts["anthropic"] = list(anthropic)
        router = gateway.build_router(
            env, client=httpx.Client(transport=fake.transport), sleep=fake.sleeps.append
        )
        ctx = gateway.use_router(router)
        ctx.__enter__()
        contexts.append(ctx)
        return fake

    yield install
    for ctx in reversed(contexts):
        ctx.__exit__(None, None, None)


def new_job(**kwargs) -> LLMOutput:
    kwargs.setdefault("prompt", "Why does the build fail with {{error}}?")
    kwargs.setdefault("context", {"error": "ImportError: numpy.core.multiarray failed to import"})
    return services.llm_job_submit(**kwargs)


def run(output: LLMOutput) -> LLMOutput:
    """One delivery of the job, then the invariant: terminal, or retrying with a due time."""
    run_llm_job(str(output.pk))
    output.refresh_from_db()
    assert output.status != JobStatus.PROCESSING, "a job was left processing"
    if output.status == JobStatus.RETRYING:
        assert output.next_attempt_at is not None
        assert output.next_attempt_at > timezone.now()
        assert output.error
    else:
        assert output.status in (JobStatus.COMPLETED, JobStatus.FAILED)
        assert output.completed_at is not None
        assert output.next_attempt_at is None
        if output.status == JobStatus.FAILED:
            assert output.error
            assert output.error_code
    return output


def chain(output: LLMOutput) -> list[tuple[str, str]]:
    return [(a["provider"], a["status"]) for a in output.provider_chain]


def retry_schedules(output: LLMOutput) -> int:
    from django_q.models import Schedule

    return Schedule.objects.filter(name__startswith=f"llm-retry-{output.pk}").count()


# --- Quick retries inside one attempt -----------------------------------------------------------


def test_openai_429_with_retry_after_is_waited_for_then_succeeds(providers):
    fake = providers(OPENAI, openai=[openai_429("2"), openai_ok()])
    output = run(new_job())
    assert output.status == JobStatus.COMPLETED
    assert fake.sleeps == [2.0]
    assert chain(output) == [("openai", "retry"), ("openai", "ok")]
    assert output.provider_chain[0]["http_status"] == 429
    assert output.provider_chain[0]["retry_after"] == 2.0
    assert output.attempts == 1


def test_openai_429_with_retry_after_ms_is_honoured(providers):
    answer = openai_429("20")
    answer.headers["retry-after-ms"] = "1500"
    fake = providers(OPENAI, openai=[answer, openai_ok()])
    assert run(new_job()).status == JobStatus.COMPLETED
    assert fake.sleeps == [1.5]  # the millisecond header wins over the seconds one


def test_anthropic_429_with_retry_after_then_success(providers):
    fake = providers(ANTHROPIC, anthropic=[anthropic_429("3"), anthropic_ok()])
    output = run(new_job())
    assert output.status == JobStatus.COMPLETED
    assert output.provider == "anthropic"
    assert fake.sleeps == [3.0]


def test_openai_500_is_retried_with_a_short_backoff_then_succeeds(providers):
    fake = providers(OPENAI, openai=[openai_500(), openai_ok()])
    output = run(new_job())
    assert output.status == JobStatus.COMPLETED
    assert output.raw_response == "Pin numpy<2 and rebuild."
    assert len(fake.sleeps) == 1
    assert 0 < fake.sleeps[0] <= 1.0
    assert chain(output) == [("openai", "retry"), ("openai", "ok")]


def test_an_html_502_from_a_proxy_is_retried(providers):
    providers(OPENAI, openai=[openai_html_502(), openai_ok()])
    output = run(new_job())
    assert output.status == JobStatus.COMPLETED
    assert output.provider_chain[0]["http_status"] == 502


def test_anthropic_529_overloaded_is_retried_then_succeeds(providers):
    providers(ANTHROPIC, anthropic=[anthropic_529(), anthropic_529(), anthropic_ok()])
    output = run(new_job())
    assert output.status == JobStatus.COMPLETED
    assert chain(output) == [("anthropic", "retry")] * 2 + [("anthropic", "ok")]
    assert output.provider_chain[0]["error_code"] == "overloaded"
    assert output.input_tokens == 25
    assert output.output_tokens == 11


@pytest.mark.parametrize(
    ("env", "name", "fault", "ok", "code"),
    [
        (OPENAI, "openai", read_timeout, openai_ok, "timeout"),
        (OPENAI, "openai", connection_reset, openai_ok, "connection"),
        (OPENAI, "openai", openai_malformed, openai_ok, "malformed_response"),
        (ANTHROPIC, "anthropic", read_timeout, anthropic_ok, "timeout"),
        (ANTHROPIC, "anthropic", connection_reset, anthropic_ok, "connection"),
    ],
)
def test_transport_faults_are_retried_then_succeed(providers, env, name, fault, ok, code):
    fake = providers(env, **{name: [fault(), ok()]})
    output = run(new_job())
    assert output.status == JobStatus.COMPLETED
    assert output.provider_chain[0]["error_code"] == code
    assert len(fake.requests_to(name)) == 2


# --- Every provider failing transiently: retried later, on the backoff schedule -----------------


@pytest.mark.parametrize(
    ("env", "name", "fault"),
    [
        (OPENAI, "openai", openai_500),
        (OPENAI, "openai", read_timeout),
        (OPENAI, "openai", connection_reset),
        (OPENAI, "openai", openai_malformed),
        (OPENAI, "openai", lambda: openai_429("1")),
        (ANTHROPIC, "anthropic", anthropic_529),
        (ANTHROPIC, "anthropic", read_timeout),
    ],
)
def test_a_provider_that_keeps_failing_transiently_leaves_the_job_retrying(
    providers, env, name, fault
):
    fake = providers(env, **{name: [fault() for _ in range(3)]})
    before = timezone.now()
    output = run(new_job())
    assert output.status == JobStatus.RETRYING
    assert output.error_code == "transient"
    assert len(fake.requests_to(name)) == 3  # the first try and two quick retries
    assert len(fake.sleeps) == 2
    # The first job-level retry waits 2.5 to 5 s (5 s base, equal jitter).
    delay = (output.next_attempt_at - before).total_seconds()
    assert 2.4 <= delay <= 6
    assert retry_schedules(output) == 1
    assert run_llm_job(str(output.pk)) is None  # not due yet: a second delivery does nothing


def test_both_providers_failing_transiently_leaves_the_job_retrying(providers):
    fake = providers(
        BOTH,
        openai=[openai_500() for _ in range(3)],
        anthropic=[anthropic_529() for _ in range(3)],
    )
    output = run(new_job())
    assert output.status == JobStatus.RETRYING
    assert len(fake.requests_to("openai")) == 3
    assert len(fake.requests_to("anthropic")) == 3
    assert ("openai", "failover") in chain(output)
    assert ("anthropic", "failover") in chain(output)


def test_a_retry_after_over_the_cap_is_not_slept_on_and_delays_the_job(providers):
    fake = providers(OPENAI, openai=[openai_429("120")])
    before = timezone.now()
    output = run(new_job())
    assert output.status == JobStatus.RETRYING
    assert fake.sleeps == []  # 120 s is over the 60 s cap: the worker does not block on it
    delay = (output.next_attempt_at - before).total_seconds()
    assert 119 <= delay <= 122  # the job waits what the provider asked for
    # The provider is cooling down: the next job does not even call it, and waits as well.
    second = run(new_job())
    assert second.status == JobStatus.RETRYING
    assert len(fake.requests_to("openai")) == 1
    assert second.provider_chain[0]["error_code"] == "cooldown"


def test_transient_failures_end_in_failed_after_the_last_retry(providers, settings):
    settings.LLM_JOB_MAX_RETRIES = 2
    providers(ANTHROPIC, anthropic=[anthropic_529() for _ in range(9)])
    output = new_job()
    for _ in range(3):
        LLMOutput.objects.filter(pk=output.pk).update(next_attempt_at=None)  # due now
        output = run(output)
    assert output.status == JobStatus.FAILED
    assert output.attempts == 3
    assert "Overloaded" in output.error
    assert retry_schedules(output) == 2


def test_a_retry_recovers_when_the_provider_comes_back(providers):
    providers(OPENAI, openai=[connection_reset() for _ in range(3)] + [openai_ok("back")])
    output = run(new_job())
    assert output.status == JobStatus.RETRYING
    LLMOutput.objects.filter(pk=output.pk).update(next_attempt_at=timezone.now())
    output = run(output)
    assert output.status == JobStatus.COMPLETED
    assert output.raw_response == "back"
    assert output.attempts == 2
    assert output.error == ""


# --- Fail over, or fail when alone --------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (openai_401, "auth"),
        (openai_404_model, "model_not_found"),
        (openai_quota, "quota"),
    ],
)
def test_openai_failover_errors_move_to_anthropic_at_once(providers, fault, code):
    fake = providers(BOTH, openai=[fault()], anthropic=[anthropic_ok("from claude")])
    output = run(new_job())
    assert output.status == JobStatus.COMPLETED
    assert output.provider == "anthropic"
    assert output.raw_response == "from claude"
    assert chain(output) == [("openai", "failover"), ("anthropic", "ok")]
    assert output.provider_chain[0]["error_code"] == code
    assert len(fake.requests_to("openai")) == 1  # no quick retry of a failover error
    assert fake.sleeps == []


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (openai_401, "Incorrect API key"),
        (openai_404_model, "does not exist"),
        (openai_quota, "exceeded your current quota"),
    ],
)
def test_openai_failover_errors_fail_the_job_when_it_is_the_only_provider(providers, fault, words):
    fake = providers(OPENAI, openai=[fault()])
    output = run(new_job())
    assert output.status == JobStatus.FAILED
    assert words in output.error
    assert len(fake.requests_to("openai")) == 1
    assert retry_schedules(output) == 0  # waiting would not help: no retry is scheduled


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (anthropic_401, "auth"),
        (anthropic_404_model, "model_not_found"),
        (anthropic_credit, "quota"),
    ],
)
def test_anthropic_failover_errors_fail_the_job_when_it_is_the_only_provider(
    providers, fault, code
):
    providers(ANTHROPIC, anthropic=[fault()])
    output = run(new_job())
    assert output.status == JobStatus.FAILED
    assert output.provider_chain[0]["error_code"] == code


def test_an_auth_failure_cools_the_provider_down_for_later_jobs(providers):
    fake = providers(BOTH, openai=[openai_401()], anthropic=[anthropic_ok(), anthropic_ok()])
    run(new_job())
    second = run(new_job())
    assert second.status == JobStatus.COMPLETED
    assert second.provider == "anthropic"
    assert len(fake.requests_to("openai")) == 1  # skipped while cooling down
    assert second.provider_chain[0]["error_code"] == "cooldown"


def test_a_cooled_down_only_provider_fails_new_jobs_without_calling_it(providers):
    fake = providers(OPENAI, openai=[openai_401()])
    run(new_job())
    second = run(new_job())
    assert second.status == JobStatus.FAILED
    assert len(fake.requests_to("openai")) == 1
    assert "cooling down" in second.error


# --- Fail fast ----------------------------------------------------------------------------------


def test_an_openai_refusal_fails_the_job_without_failing_over(providers):
    fake = providers(BOTH, openai=[openai_refusal()], anthropic=[])
    output = run(new_job())
    assert output.status == JobStatus.FAILED
    assert output.error_code == "refusal"
    assert "can't assist" in output.error
    assert fake.requests_to("anthropic") == []


def test_an_anthropic_refusal_fails_the_job(providers):
    providers(ANTHROPIC, anthropic=[anthropic_refusal()])
    output = run(new_job())
    assert output.status == JobStatus.FAILED
    assert output.error_code == "refusal"


def test_a_bad_request_fails_fast(providers):
    fake = providers(BOTH, openai=[openai_400()], anthropic=[])
    output = run(new_job())
    assert output.status == JobStatus.FAILED
    assert output.error_code == "bad_request"
    assert len(fake.transport.requests) == 1
    assert fake.sleeps == []


# --- Structured output --------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "confidence_score": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["title", "confidence_score"],
    "additionalProperties": False,
}


def test_schema_invalid_json_gets_one_repair_then_completes(providers):
    fake = providers(
        OPENAI,
        openai=[
            openai_ok(json.dumps({"title": "Pin numpy"})),
            openai_ok(json.dumps({"title": "Pin numpy", "confidence_score": 80})),
        ],
    )
    output = run(new_job(json_schema=SCHEMA))
    assert output.status == JobStatus.COMPLETED
    assert output.parsed == {"title": "Pin numpy", "confidence_score": 80}
    repair = fake.bodies()[1]["messages"]
    assert "does not validate" in repair[-1]["content"]


def test_schema_invalid_json_after_the_repair_fails_the_job(providers):
    providers(OPENAI, openai=[openai_ok('{"title": 1}'), openai_ok("not json at all")])
    output = run(new_job(json_schema=SCHEMA))
    assert output.status == JobStatus.FAILED
    assert "schema" in output.error


def test_anthropic_structured_output_comes_from_the_forced_tool(providers):
    tool_answer = json_response(
        200,
        {
            "id": "msg_03",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "result",
                    "input": {"title": "Pin numpy", "confidence_score": 70},
                }
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 40, "output_tokens": 20},
        },
    )
    fake = providers(ANTHROPIC, anthropic=[tool_answer])
    output = run(new_job(json_schema=SCHEMA))
    assert output.status == JobStatus.COMPLETED
    assert output.parsed == {"title": "Pin numpy", "confidence_score": 70}
    assert fake.bodies()[0]["tool_choice"] == {"type": "tool", "name": "result"}


# --- Canary secrets -----------------------------------------------------------------------------

_rng = random.Random(4242)
_ALNUM = string.ascii_letters + string.digits
_UPPER = string.ascii_uppercase + string.digits
_B64 = _ALNUM + "+/"


def _rand(alphabet: str, n: int) -> str:
    # Built at run time so the repository holds nothing a secret scanner would flag.
    extras = [c for c in "7Qk" if c in alphabet]
    return "".join([_rng.choice(alphabet) for _ in range(n - len(extras))] + extras)


GITHUB_TOKEN = "ghp_" + _rand(_ALNUM, 36)
AWS_KEY_ID = "AKIA" + _rand(_UPPER, 16)
OPENAI_LEAK = "sk-proj-" + _rand(_ALNUM + "-_", 64)
DB_PASSWORD = "Hunter2" + _rand(_ALNUM, 10)
KEY_BODY = [_rand(_B64, 64) for _ in range(4)]
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    + "\n".join(KEY_BODY)
    + "\n-----END OPENSSH PRIVATE KEY-----"
)
# What must never leave: whole secrets, and distinctive pieces of the multi-line key.
CANARIES = {
    "github token": GITHUB_TOKEN,
    "aws key id": AWS_KEY_ID,
    "openai key": OPENAI_LEAK,
    "password in a URL": DB_PASSWORD,
    "private key line 1": KEY_BODY[0],
    "private key line 3": KEY_BODY[2],
}

CANARY_LOG = f"""\
Cloning into 'widgets'...
remote: Invalid username or password. token {GITHUB_TOKEN} rejected
Found credentials in environment variables: AWS_ACCESS_KEY_ID={AWS_KEY_ID}
openai.AuthenticationError: Incorrect API key provided: {OPENAI_LEAK}
django.db.utils.OperationalError: could not connect to postgres://app:{DB_PASSWORD}@db.internal:5432/app
deploy key written to ~/.ssh/id_ed25519:
{PRIVATE_KEY}
ERROR: build failed
"""


class RawRecords(logging.Handler):
    """Every record as emitted, before any handler's filter could redact it."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        parts = [record.getMessage(), repr(record.__dict__)]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
        self.texts.append("\n".join(parts))


def leaked(text: str) -> list[str]:
    return [name for name, secret in CANARIES.items() if secret in text]


@pytest.fixture
def all_logs(caplog):
    """caplog at DEBUG for everything involved, plus the raw records before any filter."""
    names = ["", "llmcore", "grimoire", "httpx", "httpcore", "django", "django-q", "django_q"]
    previous = {name: logging.getLogger(name).level for name in names}
    for name in names:
        caplog.set_level(logging.DEBUG, logger=name or None)
    raw = RawRecords()
    root = logging.getLogger()
    root.handlers.insert(0, raw)  # first, so no other handler's filter has touched the record
    try:
        yield caplog, raw
    finally:
        root.removeHandler(raw)
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)


def test_canary_secrets_reach_no_provider_no_row_and_no_log(
    providers, all_logs, alice, alice_client, django_capture_on_commit_callbacks
):
    caplog, raw = all_logs
    template = services.prompt_template_save(
        name="diagnose",
        system_prompt="You diagnose builds of {{repo}}.",
        body="Build log:\n{{log}}\nWhat failed?",
    )
    # Every path a request takes: retries (logged), a failover (logged), a success.
    fake = providers(
        BOTH,
        openai=[openai_500(), read_timeout(), connection_reset(), openai_ok(), openai_ok()],
        anthropic=[anthropic_529(), anthropic_ok()],
    )
    context = {
        "log": CANARY_LOG,
        "repo": f"https://x-access-token:{GITHUB_TOKEN}@github.com/acme/widgets.git",
        "env": {"AWS_ACCESS_KEY_ID": AWS_KEY_ID, "DATABASE_PASSWORD": DB_PASSWORD},
    }
    with django_capture_on_commit_callbacks(execute=True):
        by_template = alice_client.post(
            "/api/v1/llm_jobs", {"template": "diagnose", "context": context}, format="json"
        )
        by_prompt = alice_client.post(
            "/api/v1/llm_jobs",
            {"prompt": "Explain:\n{{log}}", "system_prompt": "Repo {{repo}}", "context": context},
            format="json",
        )
        generate = alice_client.post(
            "/api/ai/generate", {"prompt": "Fix this", "context": CANARY_LOG}, format="json"
        )
    assert {r.status_code for r in (by_template, by_prompt, generate)} == {202}
    outputs = list(LLMOutput.objects.all())
    assert len(outputs) == 3
    assert {o.status for o in outputs} == {JobStatus.COMPLETED}
    assert {o.template_id for o in outputs} == {template.pk, None}

    # The provider saw the job (redacted), never the secrets.
    assert len(fake.transport.requests) == 7
    assert {o.provider for o in outputs} == {"openai", "anthropic"}
    for request in fake.transport.requests:
        sent = request.content.decode() + str(request.url)
        assert leaked(sent) == [], f"sent to {request.url.host}"
        assert "widgets" in sent or "Fix this" in sent  # the job itself did go out
        assert "[REDACTED" in sent

    # Nothing stored: the prompt, system prompt, context, chain, errors.
    for output in outputs:
        stored = json.dumps(model_to_dict(output), default=str)
        assert leaked(stored) == [], f"stored on {output.purpose}"
        assert "ERROR: build failed" in output.prompt  # the rest of the log is still there

    # Nothing logged, not even at DEBUG, neither through the configured handlers nor raw.
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    assert raw.texts
    assert leaked(caplog.text) == []
    for record in caplog.records:
        assert leaked(repr(record.__dict__)) == [], record.getMessage()
    for text in raw.texts:
        assert leaked(text) == [], text[:500]
    # Nor the provider keys themselves.
    for text in [caplog.text, *raw.texts]:
        assert OPENAI_KEY not in text
        assert ANTHROPIC_KEY not in text


def test_canaries_in_a_failing_job_do_not_leak_through_the_error_path(providers, all_logs):
    caplog, raw = all_logs

    # The provider echoes part of the prompt back in its error (some servers do).
    def echo_400() -> httpx.Response:
        sent = fake.transport.requests[-1].content.decode()
        return openai_error(400, f"Invalid prompt: {sent[:3000]}", "invalid_request_error", None)

    fake = providers(OPENAI, openai=[echo_400])
    output = run(new_job(prompt="Explain {{log}}", context={"log": CANARY_LOG}))
    assert output.status == JobStatus.FAILED
    assert leaked(json.dumps(model_to_dict(output), default=str)) == []
    assert leaked(caplog.text) == []
    for text in raw.texts:
        assert leaked(text) == []


def test_a_job_past_its_claim_timeout_is_taken_over_not_left_processing(providers, settings):
    providers(OPENAI, openai=[openai_ok("recovered")])
    output = new_job()
    LLMOutput.objects.filter(pk=output.pk).update(
        status=JobStatus.PROCESSING,
        attempts=1,
        claimed_at=timezone.now() - timedelta(seconds=settings.STUCK_AFTER_SECONDS + 1),
    )
    output = run(output)
    assert output.status == JobStatus.COMPLETED
    assert output.attempts == 2
