from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from grimoire.models import ApiToken
from grimoire.services import api_token_create

pytestmark = pytest.mark.django_db


def _assert_error_shape(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_bearer_token_authenticates(alice_client):
    response = alice_client.get("/api/v1/me")
    assert response.status_code == 200
    assert response.json() == {
        "username": "alice",
        "is_staff": False,
        "auth": "token",
        "token_name": "tests",
    }


def test_token_keyword_also_works(alice):
    from grimoire.testing import api_client

    client = api_client(alice, scheme="Token")
    assert client.get("/api/v1/me").json()["username"] == "alice"


def test_wrong_token_is_401_in_error_shape(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer gmr_not-a-real-token")
    response = anon_client.get("/api/v1/me")
    _assert_error_shape(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_missing_token_is_401(anon_client):
    _assert_error_shape(anon_client.get("/api/v1/me"), 401, "not_authenticated")


def test_malformed_authorization_header_is_401(anon_client):
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer two parts")
    _assert_error_shape(anon_client.get("/api/v1/me"), 401, "authentication_failed")


def test_expired_token_is_rejected(alice, anon_client):
    token, raw = api_token_create(user=alice, expires_in=timedelta(days=1))
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    _assert_error_shape(anon_client.get("/api/v1/me"), 401, "authentication_failed")


def test_revoked_token_is_rejected(alice, anon_client):
    token, raw = api_token_create(user=alice)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    _assert_error_shape(anon_client.get("/api/v1/me"), 401, "authentication_failed")


def test_inactive_user_token_is_rejected(alice, alice_client):
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    _assert_error_shape(alice_client.get("/api/v1/me"), 401, "authentication_failed")


def test_only_the_hash_is_stored(alice):
    token, raw = api_token_create(user=alice)
    assert raw.startswith("gmr_")
    assert raw not in token.key_hash
    assert ApiToken.objects.authenticate(raw) == token


def test_unknown_api_url_is_404_in_error_shape(alice_client):
    error = _assert_error_shape(alice_client.get("/api/v1/no-such-thing"), 404, "not_found")
    assert "/api/v1/no-such-thing" in error["message"]


def test_method_not_allowed_in_error_shape(alice_client):
    _assert_error_shape(alice_client.delete("/api/v1/me"), 405, "method_not_allowed")


@pytest.mark.urls("grimoire.tests.echo_urls")
def test_malformed_json_is_400_in_error_shape(alice_client):
    response = alice_client.post("/api/echo", data="{not json", content_type="application/json")
    _assert_error_shape(response, 400, "malformed_request")


@pytest.mark.urls("grimoire.tests.echo_urls")
def test_validation_error_names_the_field(alice_client):
    error = _assert_error_shape(alice_client.post("/api/echo", {}, format="json"), 400, "invalid")
    assert error["message"].startswith("name:")
    assert "name" in error["details"]


@pytest.mark.urls("grimoire.tests.echo_urls")
def test_writes_are_throttled_per_user_reads_are_not(alice_client, bob_client, settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**api_settings.DEFAULT_THROTTLE_RATES, "user_write": "2/min"}
    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = rates
    try:
        for _ in range(2):
            assert alice_client.post("/api/echo", {"name": "x"}, format="json").status_code == 200
        response = alice_client.post("/api/echo", {"name": "x"}, format="json")
        error = _assert_error_shape(response, 429, "throttled")
        assert int(response["Retry-After"]) > 0
        assert error["details"]["retry_after_seconds"] > 0
        # Reads stay open and another user has their own budget.
        assert alice_client.get("/api/echo").status_code == 200
        assert bob_client.post("/api/echo", {"name": "x"}, format="json").status_code == 200
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original


def test_crash_on_api_path_is_500_in_error_shape(alice_client, monkeypatch):
    from grimoire import views

    def boom(self, request):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(views.MeView, "get", boom)
    alice_client.raise_request_exception = False
    error = _assert_error_shape(alice_client.get("/api/v1/me"), 500, "server_error")
    assert "kaboom" not in error["message"]


def test_openapi_schema_is_served(alice_client):
    response = alice_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/me" in schema["paths"]
    assert "bearerAuth" in schema["components"]["securitySchemes"]


def test_swagger_ui_is_served(alice_client):
    assert alice_client.get("/api/docs/").status_code == 200


def test_openapi_schema_generates_without_warnings():
    import io

    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", stdout=io.StringIO())
