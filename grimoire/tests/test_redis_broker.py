"""The scale-out path: django-q2 on the Redis broker. Run by .ci/run with REDIS_URL set."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import transaction

from grimoire import jobs
from grimoire.testing import drain_queue

pytestmark = [
    pytest.mark.redis,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="REDIS_URL not set"),
]

SEEN: list[int] = []


def remember(value: int) -> None:
    SEEN.append(value)


@pytest.fixture
def redis_queues():
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    assert settings.Q_CLUSTER.get("redis") == settings.REDIS_URL
    Conf.SYNC = False
    brokers = {name: get_broker(name) for name in settings.JOB_QUEUES}
    for broker in brokers.values():
        broker.purge_queue()
    SEEN.clear()
    yield brokers
    for broker in brokers.values():
        broker.purge_queue()


def test_the_broker_answers_ping(redis_queues):
    assert all(broker.ping() for broker in redis_queues.values())


def test_committed_jobs_land_on_their_redis_queue_and_run(redis_queues):
    with transaction.atomic():
        jobs.enqueue("grimoire.tests.test_redis_broker.remember", 1, queue="high")
        jobs.enqueue("grimoire.tests.test_redis_broker.remember", 2, queue="low")
    assert redis_queues["high"].queue_size() == 1
    assert redis_queues["low"].queue_size() == 1
    assert redis_queues["default"].queue_size() == 0
    assert drain_queue("high") == 1
    assert drain_queue("low") == 1
    assert sorted(SEEN) == [1, 2]


def test_rolled_back_jobs_never_reach_redis(redis_queues):
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.enqueue("grimoire.tests.test_redis_broker.remember", 3)
        raise RuntimeError("rollback")
    assert redis_queues["default"].queue_size() == 0


def test_readyz_checks_the_redis_broker(client, redis_queues):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "ok"
