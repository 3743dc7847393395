"""`manage.py llm_check`: one small request per provider, mocked at the transport."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command

from grimoire.testing import RecordingTransport, json_response
from llmcore.management.commands import llm_check
from llmcore.router import HEALTH_KEY

ROOT = Path(__file__).resolve().parents[2]
OPENAI_KEY = "sk-test-" + "o" * 40
ANTHROPIC_KEY = "sk-ant-test-" + "a" * 40
HOSTS = {
    "api.openai.com": "openai",
    "api.anthropic.com": "anthropic",
    "api.groq.com": "groq",
}
# Variables that choose or configure providers: cleared so the developer's own setup never leaks
# into a test (or a real key into a request).
_PROVIDER_VARS = re.compile(
    r"^(LLM_|OPENAI_|ANTHROPIC_|GROQ_|GITHUB_TOKEN|GITHUB_MODELS_|HUGGINGFACE_|HF_TOKEN|"
    r"CLOUDFLARE_|OLLAMA_|VLLM_|LLAMACPP_|CUSTOM_)"
)


def openai_ok(text: str = "OK", model: str = "gpt-4o-mini-2024-07-18") -> httpx.Response:
    return json_response(
        200,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21},
        },
    )


def anthropic_ok(text: str = "OK") -> httpx.Response:
    return json_response(
        200,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 20, "output_tokens": 1},
        },
    )


def openai_error(status: int, message: str, type_: str, code: str | None, headers=None):
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return json_response(status, body, headers)


class FakeProviders:
    def __init__(self) -> None:
        self.scripts: dict[str, list] = {name: [] for name in HOSTS.values()}
        self.transport = RecordingTransport(self._answer)
        self.sleeps: list[float] = []

    def _answer(self, request: httpx.Request) -> httpx.Response:
        name = HOSTS[request.url.host]
        if not self.scripts[name]:
            raise AssertionError(f"unexpected request to {name}")
        item = self.scripts[name].pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def requests_to(self, name: str) -> list[httpx.Request]:
        return [r for r in self.transport.requests if HOSTS[r.url.host] == name]


@pytest.fixture
def env(monkeypatch):
    """Set the provider environment for the command (and nothing else of the developer's)."""
    for name in list(os.environ):
        if _PROVIDER_VARS.match(name):
            monkeypatch.delenv(name)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


@pytest.fixture
def fake(monkeypatch):
    fake = FakeProviders()
    monkeypatch.setattr(llm_check, "client_factory", lambda: httpx.Client(transport=fake.transport))
    monkeypatch.setattr(llm_check, "sleep", fake.sleeps.append)
    return fake


def anthropic_refused() -> httpx.Response:
    """Anthropic's answer to a key it does not accept."""
    return json_response(
        401,
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        },
    )


def run(*args: str) -> tuple[str, CommandError | None]:
    out = StringIO()
    try:
        call_command("llm_check", *args, stdout=out, no_color=True)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def line_for(output: str, provider: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(provider + " ")]
    assert len(lines) == 1, output
    return lines[0]


def test_every_configured_provider_is_checked_and_reported(env, fake):
    env(
        LLM_PROVIDERS="openai,anthropic,offline",
        OPENAI_API_KEY=OPENAI_KEY,
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
    )
    fake.scripts["openai"] = [openai_ok()]
    fake.scripts["anthropic"] = [anthropic_ok()]
    output, error = run()
    assert error is None, output
    openai = line_for(output, "openai")
    assert re.search(r"openai\s+ok\s+gpt-4o-mini-2024-07-18\s+\d+ ms\s+answered 'OK'", openai)
    assert re.search(r"anthropic\s+ok\s+claude-sonnet-4-5-20250929\s+\d+ ms", output)
    assert "offline placeholder answers" in line_for(output, "offline")
    assert "3 of 3 provider(s) answered." in output


def test_the_request_is_one_small_call_with_the_provider_s_own_auth(env, fake):
    env(
        LLM_PROVIDERS="openai,anthropic", OPENAI_API_KEY=OPENAI_KEY, ANTHROPIC_API_KEY=ANTHROPIC_KEY
    )
    fake.scripts["openai"] = [openai_ok()]
    fake.scripts["anthropic"] = [anthropic_ok()]
    run()
    (openai,) = fake.requests_to("openai")
    (anthropic,) = fake.requests_to("anthropic")
    assert openai.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert anthropic.headers["x-api-key"] == ANTHROPIC_KEY
    openai_body = json.loads(openai.content)
    assert openai_body["max_completion_tokens"] == llm_check.MAX_TOKENS
    assert openai_body["model"] == "gpt-4o-mini"
    assert json.loads(anthropic.content)["max_tokens"] == llm_check.MAX_TOKENS


def test_a_refused_key_fails_with_plain_words_and_a_non_zero_exit(env, fake):
    env(
        LLM_PROVIDERS="openai,anthropic", OPENAI_API_KEY=OPENAI_KEY, ANTHROPIC_API_KEY=ANTHROPIC_KEY
    )
    fake.scripts["openai"] = [openai_ok()]
    fake.scripts["anthropic"] = [anthropic_refused()]
    output, error = run()
    assert error is not None
    assert error.returncode == 1
    assert "anthropic" in str(error)
    line = line_for(output, "anthropic")
    assert "FAILED" in line
    assert "claude-sonnet-4-5" in line
    assert "the API key was refused (HTTP 401); check ANTHROPIC_API_KEY: invalid x-api-key" in line
    assert "ok" in line_for(output, "openai")
    assert "1 of 2 provider(s) answered." in output
    assert len(fake.requests_to("anthropic")) == 1  # auth errors are not retried


@pytest.mark.parametrize(
    ("answers", "words"),
    [
        (
            [
                openai_error(
                    429,
                    "You exceeded your current quota, please check your plan.",
                    "insufficient_quota",
                    "insufficient_quota",
                )
            ],
            "out of quota or credits",
        ),
        (
            [
                openai_error(
                    404,
                    "The model `gpt-9` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                )
            ],
            "does not exist or this key may not use it; set OPENAI_MODEL",
        ),
        (
            [httpx.ConnectError("[Errno 111] Connection refused")] * 3,
            "could not connect to https://api.openai.com/v1",
        ),
        ([httpx.ReadTimeout("timed out")] * 3, "no answer in time"),
        (
            [openai_error(500, "The server had an error", "server_error", None)] * 3,
            "server error (HTTP 500)",
        ),
        (
            [
                httpx.Response(
                    200, content=b'{"choices": [', headers={"content-type": "application/json"}
                )
            ]
            * 3,
            "the answer was not what this API sends",
        ),
        (
            [
                openai_error(
                    429,
                    "Rate limit reached",
                    "requests",
                    "rate_limit_exceeded",
                    {"retry-after": "0"},
                )
            ]
            * 3,
            "rate limited",
        ),
    ],
    ids=["quota", "model", "connection", "timeout", "server-error", "malformed", "rate-limited"],
)
def test_each_kind_of_failure_is_explained(env, fake, answers, words):
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    fake.scripts["openai"] = list(answers)
    output, error = run()
    assert error is not None and error.returncode == 1
    line = line_for(output, "openai")
    assert "FAILED" in line
    assert words in line


def test_transient_errors_are_retried_like_the_gateway_does(env, fake):
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    fake.scripts["openai"] = [
        openai_error(
            429, "Rate limit reached", "requests", "rate_limit_exceeded", {"retry-after": "2"}
        ),
        openai_ok(),
    ]
    output, error = run()
    assert error is None, output
    assert fake.sleeps == [2.0]
    assert len(fake.requests_to("openai")) == 2


def test_no_retry_makes_one_request(env, fake):
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    fake.scripts["openai"] = [openai_error(503, "busy", "server_error", None), openai_ok()]
    output, error = run("--no-retry")
    assert error is not None
    assert "server error (HTTP 503)" in line_for(output, "openai")
    assert len(fake.requests_to("openai")) == 1
    assert fake.sleeps == []


def test_the_routers_own_warnings_show_only_when_verbose(env, fake, caplog):
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    fake.scripts["openai"] = [openai_error(503, "busy", "server_error", None)] * 2
    run("--no-retry")
    assert [r for r in caplog.records if r.name == "llmcore.router"] == []
    run("--no-retry", "--verbosity", "2")
    assert [r for r in caplog.records if r.name == "llmcore.router"]


def test_one_provider_can_be_checked_alone(env, fake):
    env(
        LLM_PROVIDERS="openai,anthropic", OPENAI_API_KEY=OPENAI_KEY, ANTHROPIC_API_KEY=ANTHROPIC_KEY
    )
    fake.scripts["anthropic"] = [anthropic_ok()]
    output, error = run("--provider", "Anthropic")
    assert error is None, output
    assert fake.requests_to("openai") == []
    assert "1 of 1 provider(s) answered." in output


def test_a_provider_outside_the_chain_can_be_checked_when_its_key_is_set(env, fake):
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY, GROQ_API_KEY="gsk_" + "g" * 52)
    fake.scripts["groq"] = [openai_ok(model="llama-3.3-70b-versatile")]
    output, error = run("--provider", "groq")
    assert error is None, output
    assert "llama-3.3-70b-versatile" in line_for(output, "groq")
    assert fake.requests_to("openai") == []


def test_an_unknown_provider_is_a_command_error(env, fake):
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    with pytest.raises(CommandError, match="unknown LLM provider 'bogus'") as info:
        call_command("llm_check", "--provider", "bogus", stdout=StringIO())
    assert info.value.returncode == 2
    assert fake.transport.requests == []


def test_a_provider_without_its_key_is_a_command_error(env, fake):
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    with pytest.raises(CommandError, match="GROQ_API_KEY") as info:
        call_command("llm_check", "--provider", "groq", stdout=StringIO())
    assert info.value.returncode == 2


def test_a_broken_configuration_is_reported_not_crashed_on(env, fake):
    env(LLM_PROVIDERS="openai,anthropic", OPENAI_API_KEY=OPENAI_KEY)
    with pytest.raises(CommandError, match="ANTHROPIC_API_KEY") as info:
        call_command("llm_check", stdout=StringIO())
    assert info.value.returncode == 2


def test_a_bad_timeout_is_a_command_error(env, fake):
    env(LLM_PROVIDERS="offline")
    with pytest.raises(CommandError, match="--timeout"):
        call_command("llm_check", "--timeout", "0", stdout=StringIO())


def test_json_output_has_one_object_per_provider(env, fake):
    env(LLM_PROVIDERS="openai,offline", OPENAI_API_KEY=OPENAI_KEY)
    fake.scripts["openai"] = [
        openai_error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
    ]
    output, error = run("--json")
    assert error is not None
    rows = [json.loads(line) for line in output.splitlines()]
    assert [(r["provider"], r["ok"]) for r in rows] == [("openai", False), ("offline", True)]
    assert rows[0]["model"] == "gpt-4o-mini"
    assert rows[0]["error"].startswith("the API key was refused")
    assert rows[1]["offline"] is True
    assert all(isinstance(r["latency_ms"], float) for r in rows)


def test_secrets_echoed_in_a_provider_error_are_not_printed(env, fake):
    leaked = "sk-proj-" + "Zq7" * 20
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    fake.scripts["openai"] = [
        openai_error(
            401,
            f"Incorrect API key provided: {leaked}.",
            "invalid_request_error",
            "invalid_api_key",
        )
    ]
    output, _ = run()
    assert leaked not in output
    assert "REDACTED" in output


@pytest.mark.django_db
def test_a_shared_cooldown_the_workers_see_is_reported(env, fake):
    from django.core.cache import cache

    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    cache.set(
        HEALTH_KEY.format(name="openai"),
        {"failures": 0, "until": time.time() + 600, "reason": "auth", "message": "401"},
        600,
    )
    fake.scripts["openai"] = [openai_ok()]
    output, error = run()
    assert error is None  # the check itself ignores the cooldown and calls the provider
    assert "workers skip this provider for another" in output
    assert "(auth)" in output


def _cool(name: str, reason: str = "auth") -> None:
    from django.core.cache import cache

    cache.set(
        HEALTH_KEY.format(name=name),
        {"failures": 0, "until": time.time() + 600, "reason": reason, "message": "401"},
        600,
    )


@pytest.mark.django_db
def test_reset_cooldowns_ends_the_cooldown_of_a_provider_that_answers_only(env, fake):
    from django.core.cache import cache

    env(
        LLM_PROVIDERS="openai,anthropic", OPENAI_API_KEY=OPENAI_KEY, ANTHROPIC_API_KEY=ANTHROPIC_KEY
    )
    _cool("openai")
    _cool("anthropic")
    fake.scripts["openai"] = [openai_ok()]
    fake.scripts["anthropic"] = [anthropic_refused()]
    output, error = run("--reset-cooldowns")
    assert error is not None and error.returncode == 1  # anthropic still fails
    assert cache.get(HEALTH_KEY.format(name="openai")) is None
    assert "shared cooldown (auth) ended" in output
    # The key still refused keeps its cooldown: workers go on skipping it.
    assert cache.get(HEALTH_KEY.format(name="anthropic"))["reason"] == "auth"
    assert "workers skip this provider for another" in output


@pytest.mark.django_db
def test_without_reset_cooldowns_a_cooldown_stays_even_when_the_provider_answers(env, fake):
    from django.core.cache import cache

    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    _cool("openai")
    fake.scripts["openai"] = [openai_ok()]
    output, error = run()
    assert error is None
    assert cache.get(HEALTH_KEY.format(name="openai"))["reason"] == "auth"
    assert "cooldown (auth) ended" not in output


def test_manage_py_exits_zero_when_all_answer_and_non_zero_otherwise(tmp_path):
    base = {
        k: v for k, v in os.environ.items() if not _PROVIDER_VARS.match(k) and k != "DATABASE_URL"
    }
    base["DATA_DIR"] = str(tmp_path)

    def manage(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "llm_check", *args],
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    ok = manage(LLM_PROVIDERS="offline")
    assert ok.returncode == 0, ok.stderr
    assert "1 of 1 provider(s) answered." in ok.stdout
    unknown = manage("--provider", "bogus", LLM_PROVIDERS="offline")
    assert unknown.returncode == 2
    assert "unknown LLM provider" in unknown.stderr
    # A server that is not there: connection refused on a closed loopback port, no waiting.
    down = manage(
        "--no-retry",
        LLM_PROVIDERS="custom",
        CUSTOM_BASE_URL="http://127.0.0.1:9/v1",
        CUSTOM_MODEL="m",
    )
    assert down.returncode == 1
    assert "could not connect to http://127.0.0.1:9/v1" in down.stdout


def test_reset_cooldowns_before_the_cache_table_exists_is_not_a_crash(env, fake, monkeypatch):
    from django.core import cache as cache_module

    class Broken:
        def get(self, key):
            raise RuntimeError("no such table: grimoire_cache")

        delete = get

    monkeypatch.setattr(cache_module, "cache", Broken())
    env(LLM_PROVIDERS="openai", OPENAI_API_KEY=OPENAI_KEY)
    fake.scripts["openai"] = [openai_ok()]
    output, error = run("--reset-cooldowns")
    assert error is None
    assert "1 of 1 provider(s) answered." in output
