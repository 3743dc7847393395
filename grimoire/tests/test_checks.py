from __future__ import annotations

import copy

from grimoire import checks


def _ids(errors):
    return [e.id for e in errors]


def test_default_configuration_passes_every_check():
    for check in (
        checks.check_secret_key,
        checks.check_allowed_hosts,
        checks.check_queue_timeouts,
        checks.check_database_url,
        checks.check_redis_url,
        checks.check_data_dir,
        checks.check_llm_call_deadline,
    ):
        assert check() == [], check.__name__


def test_weak_secret_key_is_an_error(settings):
    settings.SECRET_KEY = "django-insecure-abc"
    assert _ids(checks.check_secret_key()) == ["grimoire.E001"]


def test_task_timeout_must_be_below_retry(settings):
    conf = copy.deepcopy(settings.Q_CLUSTER)
    conf["ALT_CLUSTERS"]["low"]["timeout"] = 900
    conf["ALT_CLUSTERS"]["low"]["retry"] = 600
    settings.Q_CLUSTER = conf
    errors = checks.check_queue_timeouts()
    assert _ids(errors) == ["grimoire.E003"]
    assert "'low'" in errors[0].msg and "runs twice" in errors[0].msg


def test_every_job_queue_needs_a_cluster(settings):
    settings.JOB_QUEUES = ("high", "default", "low", "urgent")
    assert "grimoire.E004" in _ids(checks.check_queue_timeouts())


def test_bad_redis_url_is_explained(settings):
    settings.REDIS_URL = "http://localhost:6379"
    errors = checks.check_redis_url()
    assert _ids(errors) == ["grimoire.E006"]
    assert "redis://" in errors[0].msg


def test_unsupported_database_is_an_error(monkeypatch):
    from django.conf import settings

    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.mysql")
    assert _ids(checks.check_database_url()) == ["grimoire.E005"]


def test_empty_allowed_hosts_without_debug_is_an_error(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = []
    assert _ids(checks.check_allowed_hosts()) == ["grimoire.E002"]


def test_unwritable_data_dir_is_an_error(settings, tmp_path):
    target = tmp_path / "ro"
    target.mkdir()
    target.chmod(0o500)
    settings.DATA_DIR = target
    try:
        import os

        if os.access(target, os.W_OK):  # running as root: permissions do not bind
            settings.DATA_DIR = tmp_path / "file"
            settings.DATA_DIR.write_text("")
            settings.DATA_DIR = settings.DATA_DIR / "sub"
        assert _ids(checks.check_data_dir()) == ["grimoire.E007"]
    finally:
        target.chmod(0o700)


def test_unset_llm_call_deadline_passes(monkeypatch):
    monkeypatch.delenv("LLM_CALL_DEADLINE", raising=False)
    assert checks.check_llm_call_deadline() == []


def test_llm_call_deadline_below_every_task_timeout_passes(monkeypatch):
    monkeypatch.setenv("LLM_CALL_DEADLINE", "240")
    assert checks.check_llm_call_deadline() == []


def test_llm_call_deadline_outlasting_a_cluster_is_a_warning(monkeypatch, settings):
    conf = copy.deepcopy(settings.Q_CLUSTER)
    conf["timeout"], conf["retry"] = 300, 360
    for alt in conf["ALT_CLUSTERS"].values():
        alt["timeout"] = 300 if alt is not conf["ALT_CLUSTERS"]["low"] else 1800
    settings.Q_CLUSTER = conf
    monkeypatch.setenv("LLM_CALL_DEADLINE", "300")
    warnings = checks.check_llm_call_deadline()
    assert _ids(warnings) == ["grimoire.W009"]
    assert "'default' (300 s)" in warnings[0].msg
    assert "'low'" not in warnings[0].msg


def test_llm_call_deadline_that_is_not_a_number_is_an_error(monkeypatch):
    monkeypatch.setenv("LLM_CALL_DEADLINE", "soon")
    errors = checks.check_llm_call_deadline()
    assert _ids(errors) == ["grimoire.E008"]
    assert "LLM_CALL_DEADLINE" in errors[0].msg
