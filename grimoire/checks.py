"""System checks that catch a bad configuration with a clear message (`manage.py check`)."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


@register(Tags.security, deploy=False)
def check_secret_key(app_configs: Any = None, **_: Any) -> list[Any]:
    key = settings.SECRET_KEY
    problems = []
    if len(key) < 40 or len(set(key)) < 10 or key.startswith("django-insecure"):
        problems.append(
            Error(
                "SECRET_KEY is too weak (under 40 characters, few distinct characters, or "
                "Django's insecure placeholder).",
                hint="Unset SECRET_KEY to have one generated in DATA_DIR/secret_key, or set a "
                "random value of 50+ characters.",
                id="grimoire.E001",
            )
        )
    return problems


@register(Tags.security)
def check_allowed_hosts(app_configs: Any = None, **_: Any) -> list[Any]:
    if not settings.DEBUG and "*" in settings.ALLOWED_HOSTS:
        return [
            Warning(
                "ALLOWED_HOSTS contains '*' with DEBUG off: any Host header is accepted.",
                hint="List the host names the service is reached at, comma-separated.",
                id="grimoire.W002",
            )
        ]
    if not settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [
            Error(
                "ALLOWED_HOSTS is empty with DEBUG off: every request would get a 400.",
                hint="Set ALLOWED_HOSTS=grimoire.example.com,localhost",
                id="grimoire.E002",
            )
        ]
    return []


def _cluster_timeouts() -> list[tuple[str, int | None, int | None]]:
    conf = settings.Q_CLUSTER
    rows = [(conf.get("name", "default"), conf.get("timeout"), conf.get("retry"))]
    for name, alt in conf.get("ALT_CLUSTERS", {}).items():
        rows.append(
            (name, alt.get("timeout", conf.get("timeout")), alt.get("retry", conf.get("retry")))
        )
    return rows


@register()
def check_queue_timeouts(app_configs: Any = None, **_: Any) -> list[Any]:
    errors = []
    for name, timeout, retry in _cluster_timeouts():
        if timeout is None or retry is None or timeout >= retry:
            errors.append(
                Error(
                    f"django-q2 cluster {name!r}: task timeout ({timeout}) must be below its "
                    f"retry interval ({retry}), or a slow task is delivered again and runs twice.",
                    hint="Set Q_TIMEOUT / Q_RETRY (or Q_LOW_TIMEOUT / Q_LOW_RETRY) so that "
                    "timeout < retry.",
                    id="grimoire.E003",
                )
            )
    missing = set(settings.JOB_QUEUES) - {row[0] for row in _cluster_timeouts()}
    if missing:
        errors.append(
            Error(
                f"Job queues without a django-q2 cluster: {sorted(missing)}.",
                id="grimoire.E004",
            )
        )
    return errors


@register(Tags.database)
def check_database_url(app_configs: Any = None, **_: Any) -> list[Any]:
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine not in ("django.db.backends.sqlite3", "django.db.backends.postgresql"):
        return [
            Error(
                f"DATABASE_URL selects {engine}; Grimoire supports SQLite and PostgreSQL.",
                hint="Use sqlite:////path/grimoire.sqlite3 or postgres://user:pass@host:5432/db",
                id="grimoire.E005",
            )
        ]
    return []


@register()
def check_redis_url(app_configs: Any = None, **_: Any) -> list[Any]:
    url = settings.REDIS_URL
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        return [
            Error(
                f"REDIS_URL must start with redis://, rediss:// or unix:// (got {url.split(':')[0]!r}).",
                hint="Example: REDIS_URL=redis://127.0.0.1:6379/0",
                id="grimoire.E006",
            )
        ]
    return []


@register()
def check_data_dir(app_configs: Any = None, **_: Any) -> list[Any]:
    data_dir = settings.DATA_DIR
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [Error(f"DATA_DIR {data_dir} cannot be created: {exc}", id="grimoire.E007")]
    if not os.access(data_dir, os.W_OK):
        return [
            Error(
                f"DATA_DIR {data_dir} is not writable: the SQLite file, the secret key and "
                "stored build logs live there.",
                hint="Point DATA_DIR at a writable directory.",
                id="grimoire.E007",
            )
        ]
    return []


@register()
def check_llm_call_deadline(app_configs: Any = None, **_: Any) -> list[Any]:
    # Unset, the deadline follows each worker's own cluster and is always below its timeout; set
    # by hand, one value serves every cluster, so it can outlast the shortest one.
    from llmcore.config import explicit_call_deadline

    try:
        deadline = explicit_call_deadline(os.environ)
    except ValueError as exc:
        return [Error(str(exc), hint="Example: LLM_CALL_DEADLINE=240", id="grimoire.E008")]
    if deadline is None:
        return []
    outlasted = [
        (name, timeout)
        for name, timeout, _ in _cluster_timeouts()
        if timeout is not None and deadline >= timeout
    ]
    if not outlasted:
        return []
    clusters = ", ".join(f"{name!r} ({timeout} s)" for name, timeout in outlasted)
    return [
        Warning(
            f"LLM_CALL_DEADLINE ({deadline:g} s) is not below the task timeout of cluster(s) "
            f"{clusters}: a slow LLM call there is killed with its job, which then waits for the "
            "stuck-work sweeper instead of being retried with backoff.",
            hint="Keep LLM_CALL_DEADLINE at least 30 s below Q_TIMEOUT (and Q_LOW_TIMEOUT), or "
            "unset it to follow each cluster's own limit.",
            id="grimoire.W009",
        )
    ]
