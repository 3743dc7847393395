"""LLM jobs end to end through the real router, with providers mocked at the httpx transport."""

from __future__ import annotations

import json

import httpx
import pytest
from django.db import transaction

from grimoire.testing import OPENAI_TEST_ENV, json_response, openai_chat
from llmcore import services
from llmcore.models import JobStatus, LLMOutput
from llmcore.tasks import run_llm_job

pytestmark = pytest.mark.django_db

OPENAI_ENV = OPENAI_TEST_ENV
CANARY = "ghp_" + "Z9" * 18


def openai_ok(text: str, *, prompt_tokens: int = 12, completion_tokens: int = 5) -> httpx.Response:
    return openai_chat(text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


@pytest.fixture
def provider(llm_script):
    """Script the provider's answers: `provider(resp, resp, ...)` returns the recording transport."""
    return llm_script


def submit(**kwargs) -> LLMOutput:
    kwargs.setdefault("prompt", "Explain {{error}}")
    kwargs.setdefault("context", {"error": "ImportError: no module named foo"})
    return services.llm_job_submit(**kwargs)


def test_a_job_runs_after_commit_and_stores_everything(
    provider, alice, django_capture_on_commit_callbacks
):
    transport = provider(openai_ok("Install foo."))
    with django_capture_on_commit_callbacks(execute=True):
        output = submit(user=alice)
        assert output.status == JobStatus.PENDING
    output.refresh_from_db()
    assert output.status == JobStatus.COMPLETED
    assert output.raw_response == "Install foo."
    assert output.provider == "openai"
    assert output.input_tokens == 12
    assert output.output_tokens == 5
    assert output.cost_usd > 0
    assert output.latency_ms is not None
    assert output.attempts == 1
    assert [a["status"] for a in output.provider_chain] == ["ok"]
    sent = json.loads(transport.requests[0].content)
    assert "ImportError: no module named foo" in sent["messages"][-1]["content"]


def test_a_job_in_a_rolled_back_transaction_never_runs(
    provider, django_capture_on_commit_callbacks
):
    transport = provider()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        submit()
        raise RuntimeError("rollback")
    assert LLMOutput.objects.count() == 0
    assert transport.requests == []


def test_a_second_delivery_of_a_finished_job_does_nothing(provider):
    transport = provider(openai_ok("once"))
    output = submit()
    run_llm_job(str(output.pk))
    run_llm_job(str(output.pk))
    output.refresh_from_db()
    assert output.status == JobStatus.COMPLETED
    assert output.attempts == 1
    assert len(transport.requests) == 1


def test_missing_template_variable_is_an_error_at_submit_time():
    with pytest.raises(services.MissingVariablesError, match="error"):
        services.llm_job_submit(prompt="Explain {{error}}", context={})
    assert LLMOutput.objects.count() == 0


def test_secrets_never_reach_the_provider_nor_the_stored_prompt(provider):
    transport = provider(openai_ok("ok"))
    output = submit(context={"error": f"auth failed with token {CANARY}"})
    assert CANARY not in output.prompt
    run_llm_job(str(output.pk))
    assert all(CANARY not in r.content.decode() for r in transport.requests)


def test_every_provider_failing_transiently_retries_with_backoff_then_fails(provider, settings):
    settings.LLM_JOB_MAX_RETRIES = 2
    busy = [json_response(503, {"error": {"message": "overloaded"}}) for _ in range(20)]
    provider(*busy)
    output = submit()
    delays = []
    for _ in range(3):
        LLMOutput.objects.filter(pk=output.pk).update(next_attempt_at=None)  # due now
        run_llm_job(str(output.pk))
        output.refresh_from_db()
        if output.next_attempt_at:
            delays.append((output.next_attempt_at - output.updated_at).total_seconds())
    assert output.status == JobStatus.FAILED
    assert output.attempts == 3
    assert output.error
    from django_q.models import Schedule

    assert Schedule.objects.filter(name__startswith=f"llm-retry-{output.pk}").count() == 2
    # Backoff: 5 s base doubling, with jitter between half and all of it.
    assert 2.4 <= delays[0] <= 5.1
    assert 4.9 <= delays[1] <= 10.1


def test_a_retrying_job_is_not_run_before_it_is_due(provider):
    provider(json_response(503, {}), json_response(503, {}), json_response(503, {}))
    output = submit()
    run_llm_job(str(output.pk))
    output.refresh_from_db()
    assert output.status == JobStatus.RETRYING
    assert run_llm_job(str(output.pk)) is None  # not due yet
    output.refresh_from_db()
    assert output.attempts == 1


def test_auth_error_fails_the_job_with_the_reason(provider):
    provider(
        json_response(
            401,
            {
                "error": {
                    "message": "Incorrect API key",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )
    )
    output = submit()
    run_llm_job(str(output.pk))
    output.refresh_from_db()
    assert output.status == JobStatus.FAILED
    assert "401" in output.error or "API key" in output.error


def test_a_schema_job_stores_parsed_json(provider):
    schema = {
        "type": "object",
        "properties": {
            "summary": {"type": "string"},
            "score": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "required": ["summary", "score"],
        "additionalProperties": False,
    }
    provider(openai_ok(json.dumps({"summary": "fine", "score": 140})))
    output = submit(json_schema=schema)
    run_llm_job(str(output.pk))
    output.refresh_from_db()
    assert output.status == JobStatus.COMPLETED
    assert output.parsed["summary"] == "fine"
    assert output.parsed["score"] == 100  # clamped to the schema's range


def test_with_no_provider_configured_the_offline_provider_answers(provider):
    provider(env={})
    output = submit()
    run_llm_job(str(output.pk))
    output.refresh_from_db()
    assert output.status == JobStatus.COMPLETED
    assert output.offline is True
    assert output.provider == "offline"


def test_completion_hook_runs_once_on_success(provider, monkeypatch):
    calls = []
    monkeypatch.setattr("llmcore.tests.test_jobs.HOOK_CALLS", calls, raising=False)
    provider(openai_ok("done"))
    output = submit(on_complete="llmcore.tests.test_jobs.record_hook")
    run_llm_job(str(output.pk))
    run_llm_job(str(output.pk))
    assert calls == [output.pk]


HOOK_CALLS: list = []


def record_hook(output):
    import llmcore.tests.test_jobs as me

    me.HOOK_CALLS.append(output.pk)


def test_a_stuck_job_is_picked_up_by_the_sweeper_and_completes_once(
    provider, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    transport = provider(openai_ok("recovered"))
    output = submit()
    # A worker claimed it and was killed: processing, claimed long ago.
    LLMOutput.objects.filter(pk=output.pk).update(
        status=JobStatus.PROCESSING,
        attempts=1,
        claimed_at=timezone.now() - timedelta(seconds=settings.STUCK_AFTER_SECONDS + 5),
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sweep_stuck_outputs() == 1
    output.refresh_from_db()
    assert output.status == JobStatus.COMPLETED
    assert output.raw_response == "recovered"
    assert len(transport.requests) == 1
    assert services.sweep_stuck_outputs() == 0


def test_a_worker_that_lost_its_claim_cannot_overwrite_the_result(provider):
    provider(openai_ok("first"))
    output = submit()
    claimed = services._claim(str(output.pk))
    assert claimed is not None
    _, stale_claim = claimed
    LLMOutput.objects.filter(pk=output.pk).update(
        claim=None, status=JobStatus.COMPLETED, raw_response="winner"
    )
    from llmcore.types import LLMResponse, Usage

    response = LLMResponse(
        text="late",
        parsed=None,
        provider="openai",
        model="m",
        usage=Usage(),
        cost_usd=0,
        latency_ms=1,
        attempts=[],
        structured_mode="text",
    )
    assert services._complete(output, stale_claim, response) is None
    output.refresh_from_db()
    assert output.raw_response == "winner"


def test_a_job_whose_worker_keeps_dying_ends_failed_instead_of_running_forever(provider, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.LLM_JOB_MAX_RETRIES = 1
    transport = provider(openai_ok("never sent"))
    output = submit()
    # Two claims already spent, both killed mid-call: the third may not start.
    LLMOutput.objects.filter(pk=output.pk).update(
        status=JobStatus.PROCESSING,
        attempts=2,
        claimed_at=timezone.now() - timedelta(seconds=settings.STUCK_AFTER_SECONDS + 5),
    )
    run_llm_job(str(output.pk))
    output.refresh_from_db()
    assert output.status == JobStatus.FAILED
    assert "gave up after" in output.error
    assert transport.requests == []


def test_the_optional_response_cache_answers_an_identical_request(provider):
    transport = provider(
        openai_ok("cached answer"), env={**OPENAI_ENV, "LLM_RESPONSE_CACHE": "true"}
    )
    first, second = submit(), submit()
    run_llm_job(str(first.pk))
    run_llm_job(str(second.pk))
    second.refresh_from_db()
    assert second.raw_response == "cached answer"
    assert len(transport.requests) == 1


def test_the_response_cache_is_off_by_default(provider):
    transport = provider(openai_ok("one"), openai_ok("two"))
    first, second = submit(), submit()
    run_llm_job(str(first.pk))
    run_llm_job(str(second.pk))
    assert len(transport.requests) == 2
