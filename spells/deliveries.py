"""Recording a GitHub delivery once and queueing its processing: the receiver's one database write.

The receiver's answer must say the delivery is durable, so the row (and, when the event is
handled, its `process_delivery` job) is written before it answers; everything else happens in the
job. This write is the whole cost of a delivery beyond Django's own, so it is kept to one round
trip where the database allows:

- PostgreSQL with the ORM broker (the queue is a table in the same database): one
  `INSERT ... ON CONFLICT DO NOTHING` statement whose data-modifying CTE also inserts the job.
  One statement in autocommit is atomic (the job exists if and only if the row does) and needs no
  BEGIN/COMMIT round trips; a redelivery inserts nothing.
- Anywhere else (SQLite, or a Redis broker): the row in a transaction, the job inserted in it (ORM
  broker) or sent on commit (Redis; the sweeper re-queues it if sending fails).

Both paths skip Django's per-request connection ping (CONN_HEALTH_CHECKS): the write is
idempotent (the delivery id is unique), so a connection that died since the last request (a
database restart) is replaced and the write tried once more instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from grimoire import jobs
from spells.models import DeliveryStatus, WebhookDelivery

logger = logging.getLogger(__name__)

PROCESS = "spells.tasks.process_delivery"


def job_name(delivery_id: str) -> str:
    return f"gh-{delivery_id}"


def record(
    *,
    delivery_id: str,
    event: str,
    action: str,
    repository: str,
    payload: dict[str, Any],
    body: bytes,
    process: bool,
) -> bool:
    """Store the delivery (status received when `process`, else ignored) and, when `process`, queue
    its job. Returns False when this delivery id is already stored (nothing written)."""
    status = DeliveryStatus.RECEIVED if process else DeliveryStatus.IGNORED
    fields = {
        "delivery_id": delivery_id,
        "event": event,
        "action": action,
        "repository": repository,
        "status": status,
    }
    if jobs.queue_row_in_statement(connection.alias):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # valid JSON in UTF-16/32: stored re-encoded
            text = json.dumps(payload)
        return _with_one_reconnect(lambda: _insert_in_one_statement(fields, text, process))
    return _with_one_reconnect(lambda: _insert_in_transaction(fields, payload, process))


def _with_one_reconnect[T](write: Callable[[], T]) -> T:
    # The write replaces the per-request ping: it is idempotent, so a dead connection is
    # replaced and the write tried once more (a real outage fails the second try too: a 5xx).
    connection.health_check_done = True
    try:
        return write()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        logger.warning("database connection lost; reconnecting once for a webhook delivery")
        connection.close()
        return write()


def _insert_in_one_statement(fields: dict[str, Any], payload_text: str, process: bool) -> bool:
    from django_q.models import OrmQ

    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    columns = [*fields, "payload", "result", "error", "attempts", "received_at"]
    params: list[Any] = [*fields.values(), payload_text, "{}", "", 0, timezone.now()]
    # Identifiers come from the models (quoted); every value is a bound parameter.
    sql = (
        f"WITH delivery AS (INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s) "
        "ON CONFLICT (delivery_id) DO NOTHING RETURNING id)"
    )
    if process:
        row = jobs.queue_row(
            PROCESS, fields["delivery_id"], queue="high", task_name=job_name(fields["delivery_id"])
        )
        queue_table = connection.ops.quote_name(OrmQ._meta.db_table)
        sql += (
            f", job AS (INSERT INTO {queue_table} (key, payload, lock) "  # noqa: S608
            "SELECT %s, %s, %s FROM delivery)"
        )
        params += [row.key, row.payload, timezone.now()]
    sql += " SELECT id FROM delivery"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None


def _insert_in_transaction(fields: dict[str, Any], payload: dict[str, Any], process: bool) -> bool:
    try:
        with transaction.atomic():
            WebhookDelivery.objects.create(**fields, payload=payload)
            if process:
                jobs.enqueue(
                    PROCESS,
                    fields["delivery_id"],
                    queue="high",
                    task_name=job_name(fields["delivery_id"]),
                )
    except IntegrityError:
        return False
    return True
