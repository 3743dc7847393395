from __future__ import annotations

import pytest
from django.db.utils import OperationalError

from grimoire import health

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ok_when_database_broker_and_migrations_are(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "migrations": "ok", "broker": "ok"}


def test_readyz_is_503_when_database_is_unreachable(client, monkeypatch):
    class BrokenCursor:
        def __enter__(self):
            raise OperationalError("connection refused")

        def __exit__(self, *exc):
            return False

    class BrokenConnection:
        def cursor(self):
            return BrokenCursor()

    monkeypatch.setattr(health, "connections", {"default": BrokenConnection()})
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "database unreachable"
    assert body["checks"]["migrations"] == "unknown"


def test_readyz_reports_pending_migrations(client, monkeypatch):
    monkeypatch.setattr(health, "check_migrations", lambda: "2 migration(s) not applied")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "2 migration(s) not applied"


def test_readyz_reports_unreachable_redis_broker(client, settings, monkeypatch):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    class DeadBroker:
        def ping(self):
            raise ConnectionError("refused")

    monkeypatch.setattr("django_q.brokers.get_broker", lambda *a, **k: DeadBroker())
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "broker unreachable"
