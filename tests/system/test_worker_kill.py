"""SIGKILL in the middle of LLM jobs: every job still ends completed, exactly once.

First one busy worker process is killed (django-q2's sentinel starts a new one; the task, never
acknowledged, is delivered again after Q_RETRY seconds), then the whole `qcluster` with jobs in
flight, which is restarted. The jobs it was running stay `processing` in the database until
redelivery or the sweeper hands them to a worker again; the claim token lets only the newest
claim finish a job. A trigger in the test database records every claim and completion, so
"exactly once" is a count, not a belief.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from .conftest import Proc, Stack, submit_jobs_code, wait_for

pytestmark = pytest.mark.system

JOBS = 30
READY = re.compile(r"^(?P<name>\S+) ready for work at (?P<pid>\d+)$")
PROCESSING = re.compile(r"^(?P<name>\S+) processing (?P<task>llm-[0-9a-f-]+) ")


def _count(stack: Stack, status: str) -> int:
    return stack.status_counts().get(status, 0)


def _busy_worker(cluster: Proc, stack: Stack) -> tuple[int, str] | None:
    """(pid, output id) of a worker whose current task is a job the database shows running."""
    pids: dict[str, int] = {}
    current: dict[str, str] = {}
    for line in cluster.lines():
        try:
            message = json.loads(line)["message"]
        except (ValueError, KeyError, TypeError):
            continue
        if match := READY.match(message):
            pids[match["name"]] = int(match["pid"])
        elif match := PROCESSING.match(message):
            current[match["name"]] = match["task"]
    running = {
        f"llm-{job_id}": str(pk)
        for pk, job_id in stack.sql(
            "SELECT id, job_id FROM llmcore_llmoutput WHERE status = 'processing'"
        )
    }
    for name, task in current.items():
        if task in running and name in pids:
            return pids[name], running[task]
    return None


def test_every_job_completes_exactly_once_when_workers_are_killed(stack: Stack) -> None:
    _, url = stack.start_stub("--latency-ms", "1000")
    # Recovery windows shortened for the test; timeout stays below retry as in production.
    stack.use_stub(
        url,
        STUCK_AFTER_SECONDS=5,
        Q_TIMEOUT=4,
        Q_RETRY=8,
        Q_WORKERS=3,
        Q_WORKERS_HIGH=1,
    )
    stack.migrate()
    stack.install_transition_log()
    default = stack.start_qcluster("qcluster-default")
    stack.start_qcluster("qcluster-high", cluster="high")  # runs the sweeper, as in the Procfile

    ids = stack.django(submit_jobs_code(JOBS))
    assert len(ids) == JOBS

    # 1. One worker dies mid-job; the cluster goes on.
    wait_for(lambda: _count(stack, "completed") >= 3, timeout=60, what="3 jobs completed")
    victim_pid, victim_job = wait_for(
        lambda: _busy_worker(default, stack), timeout=30, what="a worker busy with a job"
    )
    os.kill(victim_pid, signal.SIGKILL)

    # 2. The whole cluster dies with jobs in flight.
    wait_for(
        lambda: _count(stack, "completed") >= 12 and _count(stack, "processing") >= 1,
        timeout=90,
        what="12 jobs completed with others running",
    )
    default.kill_group(signal.SIGKILL)
    default.popen.wait(10)
    in_flight = {
        str(pk)
        for (pk,) in stack.sql("SELECT id FROM llmcore_llmoutput WHERE status = 'processing'")
    }
    assert in_flight, "the cluster was killed with no job in flight: the test proved nothing"

    stack.start_qcluster("qcluster-default-restarted")
    counts = stack.wait_all_terminal(JOBS, timeout=150)
    assert counts == {"completed": JOBS}

    # Exactly once: one transition to completed per job, and never a failed or retrying one.
    completions = stack.sql(
        "SELECT output_id, count(*) FROM sys_transitions WHERE status = 'completed' "
        "GROUP BY output_id"
    )
    assert len(completions) == JOBS
    assert all(n == 1 for _, n in completions), completions
    assert not stack.sql("SELECT 1 FROM sys_transitions WHERE status IN ('failed', 'retrying')")

    # Every claim is counted in `attempts`; the jobs that were running when their worker died
    # were claimed again, and finished with a result, a cost and their attempts recorded.
    claims = dict(
        stack.sql(
            "SELECT output_id::text, count(*) FROM sys_transitions WHERE status = 'processing' "
            "GROUP BY output_id"
        )
    )
    rows = stack.sql(
        "SELECT id::text, attempts, provider, cost_usd, completed_at IS NOT NULL, "
        "jsonb_array_length(provider_chain), raw_response FROM llmcore_llmoutput"
    )
    assert {row[0] for row in rows} == set(ids)
    for pk, attempts, provider, cost, has_completed_at, chain, answer in rows:
        assert attempts == claims[pk], (pk, attempts, claims.get(pk))
        assert provider == "custom"
        assert cost > 0
        assert has_completed_at
        assert chain >= 1
        assert answer
    attempts_of = {row[0]: row[1] for row in rows}
    assert attempts_of[victim_job] >= 2
    assert all(attempts_of[pk] >= 2 for pk in in_flight)


def test_a_job_whose_worker_always_times_out_ends_failed(stack: Stack) -> None:
    # Every call takes 3 s against a 1 s client timeout: with quick retries one attempt needs
    # about 4 s, over the 2 s task timeout, so django-q2 stops the task every time. The job
    # stays `processing`; the sweeper hands it out again. With no retries allowed, the second
    # claim must end it (failed, with a reason) instead of running it again.
    _, url = stack.start_stub("--latency-ms", "3000")
    stack.use_stub(
        url,
        LLM_TIMEOUT=1,
        LLM_JOB_MAX_RETRIES=0,
        Q_TIMEOUT=2,
        Q_RETRY=4,
        STUCK_AFTER_SECONDS=3,
        Q_WORKERS=1,
        Q_WORKERS_HIGH=1,
    )
    stack.migrate()
    stack.start_qcluster("qcluster-default")
    stack.start_qcluster("qcluster-high", cluster="high")  # the sweeper
    [pk] = stack.django(submit_jobs_code(1))

    def row() -> tuple[str, int]:
        return stack.sql("SELECT status, attempts FROM llmcore_llmoutput WHERE id = %s", (pk,))[0]

    wait_for(
        lambda: row()[0] in ("completed", "failed") or row()[1] >= 2,
        timeout=120,
        what="the job to end or be claimed a second time",
    )
    time.sleep(2)  # a second claim that runs the job again is still `processing` now
    status, attempts = row()
    assert status == "failed", (status, attempts)
