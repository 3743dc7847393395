from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from grimoire.models import ApiToken

pytestmark = pytest.mark.django_db


def test_create_api_token_prints_a_working_token(alice, client):
    out = io.StringIO()
    call_command("create_api_token", "alice", "--name", "ci", "--quiet-token", stdout=out)
    raw = out.getvalue().strip()
    token = ApiToken.objects.authenticate(raw)
    assert token is not None and token.user == alice and token.name == "ci"
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.json()["username"] == "alice"


def test_create_api_token_with_expiry(alice):
    call_command("create_api_token", "alice", "--expires-days", "3", stdout=io.StringIO())
    assert ApiToken.objects.get(user=alice).expires_at is not None


def test_create_api_token_for_unknown_user_is_a_clear_error():
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("create_api_token", "ghost")
    assert ApiToken.objects.count() == 0


def test_bootstrap_creates_one_admin_with_a_random_password(settings):
    out = io.StringIO()
    call_command("bootstrap", "--no-static", "--no-demo", stdout=out)
    text = out.getvalue()
    admin = get_user_model().objects.get(is_superuser=True)
    credentials = (settings.DATA_DIR / "admin-credentials.txt").read_text()
    password = credentials.split("password: ")[1].strip()
    assert admin.check_password(password)
    assert password in text
    assert f"Open the admin at {settings.PUBLIC_URL}/admin/" in text
    assert (settings.DATA_DIR / "admin-credentials.txt").stat().st_mode & 0o777 == 0o600

    # A second run keeps the admin and its password.
    call_command("bootstrap", "--no-static", "--no-demo", stdout=io.StringIO())
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    assert get_user_model().objects.get(is_superuser=True).check_password(password)


def test_two_bootstraps_make_different_passwords(settings):
    call_command("bootstrap", "--no-static", "--no-demo", stdout=io.StringIO())
    first = (settings.DATA_DIR / "admin-credentials.txt").read_text()
    get_user_model().objects.all().delete()
    call_command("bootstrap", "--no-static", "--no-demo", stdout=io.StringIO())
    assert (settings.DATA_DIR / "admin-credentials.txt").read_text() != first
