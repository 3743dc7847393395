"""Fixtures shared by every app's tests."""

from __future__ import annotations

import contextlib

import pytest
from django.core.cache import cache

from grimoire import testing


@pytest.fixture(autouse=True)
def _isolated_state(settings, tmp_path):
    """Each test gets its own data dir, an empty cache and jobs that run inline.

    Tasks run synchronously (django-q2 sync mode) when the transaction that enqueued them commits:
    use `django_capture_on_commit_callbacks(execute=True)` in tests to fire on_commit hooks.
    """
    from django_q.conf import Conf

    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    settings.MEDIA_ROOT = settings.DATA_DIR / "media"
    previous_sync = Conf.SYNC
    Conf.SYNC = True
    # Tests without database access cannot touch the database cache; they do not need it.
    with contextlib.suppress(Exception):
        cache.clear()
    yield
    Conf.SYNC = previous_sync
    # The webhook writer thread (spells.deliveries) holds its own connection to the test
    # database: close it with the test that used it, before the database is flushed or dropped.
    from spells.deliveries import group_commit

    group_commit.stop()


@pytest.fixture
def alice(db):
    return testing.make_user("alice")


@pytest.fixture
def bob(db):
    return testing.make_user("bob")


@pytest.fixture
def staff(db):
    return testing.make_user("reviewer", staff=True)


@pytest.fixture
def anon_client():
    return testing.api_client(None)


@pytest.fixture
def alice_client(alice):
    return testing.api_client(alice)


@pytest.fixture
def bob_client(bob):
    return testing.api_client(bob)


@pytest.fixture
def staff_client(staff):
    return testing.api_client(staff)


@pytest.fixture
def llm_script():
    """`llm_script(resp, ...)`: the LLM provider answers these, in order (see testing.LLMScript)."""
    script = testing.LLMScript()
    yield script
    script.close()
