"""Liveness and readiness probes.

/healthz answers as long as the process serves requests; /readyz answers 200 only when this
process can do its work: the database answers, the broker answers, and no migration is pending.
Both are unauthenticated and reveal nothing but the name of what failed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def check_database() -> str | None:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readyz: database unreachable: %s", exc)
        return "database unreachable"
    return None


def check_migrations() -> str | None:
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        logger.warning("readyz: cannot read migration state: %s", exc)
        return "migration state unknown"
    if pending:
        return f"{len(pending)} migration(s) not applied"
    return None


def check_broker() -> str | None:
    """The ORM broker is the database (checked above); the Redis broker must answer PING."""
    if not settings.REDIS_URL:
        return None
    try:
        from django_q.brokers import get_broker

        if not get_broker().ping():
            return "broker unreachable"
    except Exception as exc:
        logger.warning("readyz: broker unreachable: %s", exc)
        return "broker unreachable"
    return None


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, Any] = {}
    db_problem = check_database()
    checks["database"] = db_problem or "ok"
    # Without a database the migration state cannot be read; say so once, not twice.
    checks["migrations"] = (check_migrations() or "ok") if db_problem is None else "unknown"
    checks["broker"] = check_broker() or "ok"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
