from __future__ import annotations

import pytest
from django.db import transaction
from django_q.models import OrmQ, Schedule

from grimoire import jobs

pytestmark = pytest.mark.django_db(transaction=True)

CALLS: list[tuple] = []


def record_call(*args, **kwargs):
    CALLS.append((args, kwargs))


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()


def test_a_job_enqueued_in_a_committed_transaction_runs():
    with transaction.atomic():
        jobs.enqueue("grimoire.tests.test_jobs.record_call", 1, queue="high", flag=True)
        assert CALLS == []  # not before commit: the worker must see the row
    assert CALLS == [((1,), {"flag": True})]


def test_a_job_enqueued_in_a_rolled_back_transaction_never_runs():
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.enqueue("grimoire.tests.test_jobs.record_call", 1)
        raise RuntimeError("rollback")
    assert CALLS == []


def test_with_the_orm_broker_the_task_lands_on_its_queue(settings):
    from django_q.conf import Conf

    Conf.SYNC = False
    with transaction.atomic():
        jobs.enqueue("grimoire.tests.test_jobs.record_call", 7, queue="low")
    assert OrmQ.objects.filter(key="low").count() == 1
    assert OrmQ.objects.filter(key="default").count() == 0

    from grimoire.testing import drain_queue

    assert drain_queue("low") == 1
    assert CALLS == [((7,), {})]
    assert OrmQ.objects.count() == 0


def test_with_the_orm_broker_a_rolled_back_transaction_leaves_no_queued_task():
    from django_q.conf import Conf

    Conf.SYNC = False
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.enqueue("grimoire.tests.test_jobs.record_call", 8, queue="default")
        assert OrmQ.objects.filter(key="default").count() == 1  # in the transaction only
        raise RuntimeError("rollback")
    assert OrmQ.objects.count() == 0


def test_unknown_queue_is_refused():
    with pytest.raises(ValueError, match="unknown queue"):
        jobs.enqueue("grimoire.tests.test_jobs.record_call", queue="urgent")


def test_a_broker_failure_after_commit_does_not_break_the_request(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobs, "async_task", broken)
    with transaction.atomic():
        jobs.enqueue("grimoire.tests.test_jobs.record_call", 1)
    # robust on_commit: the error is logged, the caller carries on, the sweeper retries later.
    assert CALLS == []


def test_sweeper_runs_every_registered_sweeper_and_survives_a_failing_one(monkeypatch):
    monkeypatch.setattr(jobs, "_sweepers", {})

    @jobs.register_sweeper("ok")
    def ok() -> int:
        return 3

    @jobs.register_sweeper("broken")
    def broken() -> int:
        raise RuntimeError("nope")

    assert jobs.sweep_stuck_work() == {"ok": 3, "broken": -1}


def test_migrate_installs_the_periodic_sweeper_schedule():
    schedule = Schedule.objects.get(name="grimoire.sweep_stuck_work")
    assert schedule.func == "grimoire.jobs.sweep_stuck_work"
    assert schedule.schedule_type == Schedule.MINUTES
    assert schedule.repeats == -1
    jobs.ensure_schedules()  # idempotent
    assert Schedule.objects.filter(name="grimoire.sweep_stuck_work").count() == 1
