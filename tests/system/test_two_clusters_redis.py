"""Two `qcluster` processes on the Redis broker and PostgreSQL share one queue; no job runs twice.

Both serve the `default` cluster from the same Redis list. Each task delivery is logged by the
process that ran it ("Processed ... (llm-<job id>)"), and the test database records every claim,
so "ran once" is checked three ways: the broker handed each task to one process, each job was
claimed once (attempts == 1), and completed once.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter

import pytest

from .conftest import Proc, Stack, redis_available, submit_jobs_code

pytestmark = pytest.mark.system

JOBS = 200
# A database number of its own, flushed before and after (SYSTEM_REDIS_URL overrides it).
REDIS_URL = os.environ.get("SYSTEM_REDIS_URL", "redis://127.0.0.1:6379/13")
PROCESSED = re.compile(r"^Processed 'llmcore\.tasks\.run_llm_job' \((llm-[0-9a-f-]+)\)$")


def _processed(cluster: Proc) -> list[str]:
    names = []
    for line in cluster.lines():
        try:
            message = json.loads(line)["message"]
        except (ValueError, KeyError, TypeError):
            continue
        if match := PROCESSED.match(message):
            names.append(match[1])
    return names


@pytest.fixture
def redis_url():
    reason = redis_available(REDIS_URL)
    if reason:
        pytest.skip(reason)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()


def test_two_clusters_share_the_redis_queue_and_run_each_job_once(
    stack: Stack, redis_url: str
) -> None:
    _, url = stack.start_stub("--latency-ms", "20", "--jitter-ms", "30")
    stack.use_stub(url, REDIS_URL=redis_url, Q_WORKERS=2)
    stack.migrate()
    stack.install_transition_log()
    # Start both before submitting, so neither has drained the queue before the other is up.
    first = stack.start_qcluster("qcluster-a")
    second = stack.start_qcluster("qcluster-b")

    ids = stack.django(submit_jobs_code(JOBS))
    counts = stack.wait_all_terminal(JOBS, timeout=120)
    assert counts == {"completed": JOBS}

    # Each task delivered to exactly one process, and both processes took a share.
    ran_by_first, ran_by_second = _processed(first), _processed(second)
    everything = Counter(ran_by_first + ran_by_second)
    job_ids = {f"llm-{job_id}" for (job_id,) in stack.sql("SELECT job_id FROM llmcore_llmoutput")}
    assert set(everything) == job_ids
    assert all(n == 1 for n in everything.values()), everything.most_common(3)
    assert ran_by_first, "the first cluster ran nothing"
    assert ran_by_second, "the second cluster ran nothing"

    # Each job claimed once and completed once.
    assert stack.sql("SELECT DISTINCT attempts FROM llmcore_llmoutput") == [(1,)]
    per_job = stack.sql(
        "SELECT output_id::text, "
        "count(*) FILTER (WHERE status = 'processing'), "
        "count(*) FILTER (WHERE status = 'completed') "
        "FROM sys_transitions GROUP BY output_id"
    )
    assert {pk for pk, _, _ in per_job} == set(ids)
    assert all(claims == 1 and done == 1 for _, claims, done in per_job), per_job[:5]

    # The broker really was Redis: nothing went through the ORM queue table.
    assert stack.sql("SELECT count(*) FROM django_q_ormq") == [(0,)]
