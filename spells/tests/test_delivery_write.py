"""The receiver's one write (spells/deliveries.py) with the real ORM broker, not sync mode.

On PostgreSQL a delivery and its job are one statement; elsewhere one transaction. Either way the
job exists exactly when the row does, a redelivery writes nothing, and the job, run as a worker
would, processes the stored delivery.
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django_q.conf import Conf
from django_q.models import OrmQ

from grimoire.testing import drain_queue
from issues.models import Issue
from spells import deliveries
from spells.models import DeliveryStatus, WebhookDelivery
from spells.tests.test_webhooks import SECRET, fixture_body, post_hook

pytestmark = pytest.mark.django_db(transaction=True)

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (DATABASE_URL)"
)


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
def test_on_postgresql_the_row_and_its_job_are_one_statement(client):
    body = fixture_body("issues__opened")
    post_hook(client, "issues", body)  # connection opened, URL resolver warm

    with CaptureQueriesContext(connection) as queries:
        assert post_hook(client, "issues", body).status_code == 202

    assert len(queries) == 1, [q["sql"][:80] for q in queries]
    assert queries[0]["sql"].startswith("WITH delivery AS (INSERT INTO")
    assert OrmQ.objects.count() == 2


@on_postgres
def test_a_connection_that_died_since_the_last_request_is_replaced(client):
    connection.ensure_connection()
    connection.connection.close()  # what a database restart leaves behind

    response = post_hook(client, "issues", fixture_body("issues__opened"))

    assert response.status_code == 202
    assert WebhookDelivery.objects.count() == 1
    assert OrmQ.objects.count() == 1


def test_a_database_outage_is_a_503_and_the_write_is_tried_twice(client, monkeypatch):
    tries = []

    def down(*args, **kwargs):
        tries.append(1)
        raise OperationalError("connection refused")

    monkeypatch.setattr(deliveries, "_insert_in_one_statement", down)
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
