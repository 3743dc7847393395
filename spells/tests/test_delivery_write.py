"""The receiver's one write (spells/deliveries.py) with the real ORM broker, not sync mode.

On PostgreSQL a delivery and its job are one statement; elsewhere one transaction. Either way the
job exists exactly when the row does, a redelivery writes nothing, and the job, run as a worker
would, processes the stored delivery.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from django.db import DataError, OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django_q.conf import Conf
from django_q.models import OrmQ

from grimoire import jobs
from grimoire.testing import drain_queue
from issues.models import Issue
from spells import deliveries
from spells.models import DeliveryStatus, WebhookDelivery
from spells.tests.test_webhooks import SECRET, fixture_body, post_hook

pytestmark = pytest.mark.django_db(transaction=True)

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _orm_broker(settings):
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    previous, Conf.SYNC = Conf.SYNC, False
    yield
    Conf.SYNC = previous


def test_a_delivery_is_stored_with_its_job_and_the_job_processes_it(client):
    body = fixture_body("issues__opened")
    delivery = str(uuid.uuid4())

    response = post_hook(client, "issues", body, delivery=delivery)

    assert response.status_code == 202
    assert response.json()["jobs"] == [f"gh-{delivery}"]
    row = WebhookDelivery.objects.get()
    assert (row.delivery_id, row.event, row.action, row.status) == (
        delivery,
        "issues",
        "opened",
        DeliveryStatus.RECEIVED,
    )
    assert row.repository == json.loads(body)["repository"]["full_name"]
    assert row.payload == json.loads(body)
    assert (row.result, row.error, row.attempts, row.processed_at) == ({}, "", 0, None)
    assert row.received_at is not None
    assert OrmQ.objects.filter(key="high").count() == 1

    assert drain_queue("high") == 1
    row.refresh_from_db()
    assert row.status == DeliveryStatus.PROCESSED
    assert Issue.objects.count() == 1


def test_a_redelivery_writes_neither_a_row_nor_a_job(client):
    body, delivery = fixture_body("issues__opened"), str(uuid.uuid4())
    assert post_hook(client, "issues", body, delivery=delivery).status_code == 202

    again = post_hook(client, "issues", body, delivery=delivery)

    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1
    assert OrmQ.objects.count() == 1


def test_an_ignored_event_is_stored_without_a_job(client):
    response = post_hook(client, "star", fixture_body("star__created"))

    assert response.status_code == 200
    assert WebhookDelivery.objects.get().status == DeliveryStatus.IGNORED
    assert OrmQ.objects.count() == 0


@on_postgres
def test_on_postgresql_the_row_and_its_job_are_one_statement(client, settings):
    settings.WEBHOOK_GROUP_COMMIT = False  # the statement runs on this thread, to be seen
    body = fixture_body("issues__opened")
    post_hook(client, "issues", body)  # connection opened, URL resolver warm

    with CaptureQueriesContext(connection) as queries:
        assert post_hook(client, "issues", body).status_code == 202

    assert len(queries) == 1, [q["sql"][:80] for q in queries]
    assert queries[0]["sql"].startswith("WITH v (delivery_id")
    assert OrmQ.objects.count() == 2


@on_postgres
def test_a_connection_that_died_since_the_last_request_is_replaced(client, settings):
    settings.WEBHOOK_GROUP_COMMIT = False  # the write runs on this thread's connection
    connection.ensure_connection()
    connection.connection.close()  # what a database restart leaves behind

    response = post_hook(client, "issues", fixture_body("issues__opened"))

    assert response.status_code == 202
    assert WebhookDelivery.objects.count() == 1
    assert OrmQ.objects.count() == 1


@on_postgres
def test_the_writer_thread_replaces_a_connection_the_server_closed(client):
    assert post_hook(client, "issues", fixture_body("issues__opened")).status_code == 202
    with connection.cursor() as cursor:  # what a database restart does to the writer's session
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchall() == [(True,)]

    response = post_hook(client, "issues", fixture_body("issues__opened"))

    assert response.status_code == 202
    assert WebhookDelivery.objects.count() == 2
    assert OrmQ.objects.count() == 2


def test_a_database_outage_is_a_503_and_the_write_is_tried_twice(client, monkeypatch):
    tries = []

    def down(*args, **kwargs):
        tries.append(1)
        raise OperationalError("connection refused")

    monkeypatch.setattr(deliveries, "_insert_rows", down)
    monkeypatch.setattr(deliveries, "_insert_in_transaction", down)

    response = post_hook(client, "issues", fixture_body("issues__opened"))

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert len(tries) == 2
    assert WebhookDelivery.objects.count() == 0


@on_postgres
def test_json_postgresql_cannot_store_is_a_400_and_stores_nothing(client):
    body = json.dumps({"action": "opened", "issue": {"title": "nul \u0000 byte"}}).encode()

    response = post_hook(client, "issues", body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert WebhookDelivery.objects.count() == 0
    assert OrmQ.objects.count() == 0


# --- Group commit (PostgreSQL + ORM broker) ----------------------------------------------------


def _row(delivery_id: str, payload: str = '{"action": "opened"}', job: bool = True):
    return deliveries.Row(
        delivery_id=delivery_id,
        event="issues",
        action="opened",
        repository="acme/app",
        status=DeliveryStatus.RECEIVED if job else DeliveryStatus.IGNORED,
        payload_text=payload,
        job=jobs.queue_row(deliveries.PROCESS, delivery_id, queue="high") if job else None,
    )


@pytest.fixture
def held_writer(monkeypatch):
    """The writer thread blocked inside its first statement until `release()`: whatever arrives
    meanwhile waits, as under a burst, and goes into the next statement together."""
    entered, release = threading.Event(), threading.Event()
    statements: list[list[str]] = []
    real = deliveries._insert_rows

    def insert_rows(rows):
        statements.append([r.delivery_id for r in rows])
        if len(statements) == 1:
            entered.set()
            assert release.wait(10)
        return real(rows)

    monkeypatch.setattr(deliveries, "_insert_rows", insert_rows)
    return entered, release, statements


def _burst(held_writer, rows) -> tuple[list[object], list[list[str]]]:
    """A write of "first" that the writer holds, then `rows` written from one thread each, as
    concurrent requests would, while it is busy; then the writer is let go. Returns each row's
    outcome (True/False, or the exception raised) and the delivery ids of each statement."""
    entered, release, statements = held_writer
    outcomes: list[object] = [None] * len(rows)

    def write(i: int, row: deliveries.Row) -> None:
        try:
            outcomes[i] = deliveries.group_commit.write(row)
        except Exception as exc:
            outcomes[i] = exc

    first = threading.Thread(target=deliveries.group_commit.write, args=(_row("first"),))
    first.start()
    assert entered.wait(10)
    threads = [threading.Thread(target=write, args=(i, r)) for i, r in enumerate(rows)]
    for thread in threads:
        thread.start()
    wait_until(lambda: deliveries.group_commit._queue.qsize() == len(rows))
    release.set()
    for thread in [first, *threads]:
        thread.join(10)
    return outcomes, statements


@on_postgres
def test_deliveries_arriving_together_are_written_in_one_statement(held_writer):
    rows = [_row(f"burst-{n}", job=n % 2 == 0) for n in range(6)]

    outcomes, statements = _burst(held_writer, rows)

    assert outcomes == [True] * 6
    assert statements == [["first"], [r.delivery_id for r in rows]]  # two statements for seven
    assert WebhookDelivery.objects.count() == 7
    assert OrmQ.objects.count() == 1 + 3  # "first" and the even ones: their jobs, no others
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {
        DeliveryStatus.RECEIVED,
        DeliveryStatus.IGNORED,
    }


@on_postgres
def test_the_same_delivery_twice_in_one_burst_is_written_once(held_writer):
    outcomes, _ = _burst(held_writer, [_row("twin"), _row("twin"), _row("other")])

    assert sorted(map(str, outcomes)) == ["False", "True", "True"]
    assert WebhookDelivery.objects.filter(delivery_id="twin").count() == 1
    assert OrmQ.objects.count() == 3  # first, twin once, other


@on_postgres
def test_a_row_postgresql_refuses_fails_alone_not_its_whole_statement(held_writer):
    bad = _row("bad", payload='{"title": "nul \\u0000"}')

    outcomes, _ = _burst(held_writer, [_row("good-1"), bad, _row("good-2")])

    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], DataError)
    assert set(WebhookDelivery.objects.values_list("delivery_id", flat=True)) == {
        "first",
        "good-1",
        "good-2",
    }
    assert OrmQ.objects.count() == 3


@on_postgres
def test_a_write_that_takes_too_long_is_a_503(client, held_writer, monkeypatch):
    _, release, _ = held_writer
    monkeypatch.setattr(deliveries, "WRITE_TIMEOUT_SECONDS", 0.2)

    response = post_hook(client, "issues", fixture_body("issues__opened"))

    assert response.status_code == 503
    release.set()


@on_postgres
def test_the_writer_thread_is_started_again_after_a_fork(monkeypatch):
    assert deliveries.group_commit.write(_row("parent")) is True
    parent_thread, parent_queue = deliveries.group_commit._thread, deliveries.group_commit._queue
    monkeypatch.setattr(deliveries.os, "getpid", lambda: -1)  # as in a forked child

    assert deliveries.group_commit.write(_row("child")) is True
    child_thread = deliveries.group_commit._thread
    assert child_thread is not parent_thread
    assert deliveries.group_commit._queue is not parent_queue
    assert WebhookDelivery.objects.count() == 2

    deliveries.group_commit.stop()  # the child's writer
    parent_queue.put(None)  # and the parent's, which a real child would not have
    parent_thread.join(10)
    assert not child_thread.is_alive() and not parent_thread.is_alive()
