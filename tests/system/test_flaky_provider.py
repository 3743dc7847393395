"""A provider that is slow and fails at random: every job still ends, with its story recorded.

The stub answers after 0.1-1.5 s (over the 1.3 s client timeout now and then) and, at random, with
429 (retry-after 1 s), 500, a 200 whose JSON is cut short, a dropped connection, or (for schema
jobs) JSON that does not match the schema. 200 jobs, a third of them structured. Every job must
end completed (with provider, tokens and cost) or failed (with a reason), with its provider
attempts stored; jobs that lost every quick retry go through `retrying` and one-off retry
schedules (fired by the scheduler about every 30 s), at most LLM_JOB_MAX_RETRIES times.
"""

from __future__ import annotations

import httpx
import pytest

from .conftest import Stack, submit_jobs_code

pytestmark = pytest.mark.system

JOBS = 200
MAX_RETRIES = 2


def test_every_job_ends_completed_or_failed_with_a_reason(stack: Stack) -> None:
    _, url = stack.start_stub(
        "--latency-ms",
        "100",
        "--jitter-ms",
        "1400",
        "--rate-429",
        "0.06",
        "--rate-500",
        "0.06",
        "--rate-malformed",
        "0.06",
        "--rate-drop",
        "0.06",
        "--rate-invalid",
        "0.15",
        "--retry-after",
        "1",
        "--seed",
        "8",
    )
    stack.use_stub(
        url,
        LLM_TIMEOUT=1.3,
        LLM_JOB_MAX_RETRIES=MAX_RETRIES,
        # Retries are due at once; the scheduler's ~30 s cycle is the real wait.
        LLM_JOB_BACKOFF_BASE=0.5,
        LLM_JOB_BACKOFF_CAP=2,
        Q_WORKERS=8,
        Q_WORKERS_HIGH=1,
        Q_TIMEOUT=30,
        Q_RETRY=45,
    )
    stack.migrate()
    stack.install_transition_log()
    stack.start_qcluster("qcluster-default")
    stack.start_qcluster("qcluster-high", cluster="high")

    ids = stack.django(submit_jobs_code(JOBS, schema_every=3))
    counts = stack.wait_all_terminal(JOBS, timeout=200)
    assert counts.get("completed", 0) + counts.get("failed", 0) == JOBS
    assert counts.get("completed", 0) > JOBS // 2, counts

    # The faults really happened.
    faults = httpx.get(url.removesuffix("/v1") + "/stats", timeout=5).json()["counts"]
    for fault in ("429", "500", "malformed", "drop", "invalid"):
        assert faults.get(fault, 0) > 0, faults

    rows = stack.sql(
        """
        SELECT id::text, status, attempts, provider, model, input_tokens, output_tokens, cost_usd,
               error, error_code, provider_chain, json_schema IS NOT NULL, parsed IS NOT NULL,
               completed_at IS NOT NULL, raw_response
        FROM llmcore_llmoutput
        """
    )
    assert {row[0] for row in rows} == set(ids)
    claims = dict(
        stack.sql(
            "SELECT output_id::text, count(*) FROM sys_transitions WHERE status = 'processing' "
            "GROUP BY output_id"
        )
    )
    retried = {
        pk
        for (pk,) in stack.sql(
            "SELECT DISTINCT output_id::text FROM sys_transitions WHERE status = 'retrying'"
        )
    }
    finishes = stack.sql(
        "SELECT output_id, count(*) FROM sys_transitions WHERE status IN ('completed', 'failed') "
        "GROUP BY output_id"
    )
    assert len(finishes) == JOBS
    assert all(n == 1 for _, n in finishes)

    quick_retries = 0
    for (
        pk,
        status,
        attempts,
        provider,
        model,
        tokens_in,
        tokens_out,
        cost,
        error,
        error_code,
        chain,
        structured,
        parsed,
        finished,
        answer,
    ) in rows:
        assert finished, pk
        assert attempts == claims[pk], (pk, attempts, claims.get(pk))
        assert 1 <= attempts <= MAX_RETRIES + 1
        assert chain, f"{pk}: no provider attempts recorded"
        assert all(step["provider"] == "custom" for step in chain)
        quick_retries += sum(step["status"] == "retry" for step in chain)
        if pk in retried:
            assert attempts >= 2 or status == "failed", pk
        if status == "completed":
            assert provider == "custom"
            assert model
            assert tokens_in > 0
            assert tokens_out > 0
            assert cost > 0
            assert answer
            assert error == ""
            assert error_code == ""
            if structured:
                assert parsed, f"{pk}: a schema job completed without a parsed answer"
            assert chain[-1]["status"] == "ok"
        else:
            assert status == "failed"
            assert error.strip(), f"{pk}: failed without a reason"
            assert error_code, f"{pk}: failed without an error code"
    assert quick_retries > 0
    assert retried, "no job needed a job-level retry: the faults were too gentle to test it"
