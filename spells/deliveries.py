"""Recording a GitHub delivery once and queueing its processing: the receiver's one database write.

The receiver's answer must say the delivery is durable, so the row (and, when the event is
handled, its `process_delivery` job) is written before it answers; everything else happens in the
job. This write is the whole cost of a delivery beyond Django's own, so it is kept small:

- PostgreSQL with the ORM broker (the queue is a table in the same database): one
  `INSERT ... ON CONFLICT DO NOTHING` statement whose data-modifying CTE also inserts the jobs of
  the rows it inserted. One statement in autocommit is atomic (a job exists if and only if its row
  does) and needs no BEGIN/COMMIT round trips; a redelivery inserts nothing.
- Group commit (WEBHOOK_GROUP_COMMIT, on by default): deliveries that arrive while a write is in
  flight are written together, in that same statement, by one writer thread per process, and each
  request waits for its own outcome before answering. A delivery arriving alone is written at once
  (no added latency); under a burst, N deliveries cost one statement, one commit and one WAL flush
  instead of N. A statement that fails for a reason other than the connection (bad JSON for
  PostgreSQL, say) is retried row by row, so one bad delivery fails alone.
- Anywhere else (SQLite, a Redis broker, or a caller inside a transaction): the row in a
  transaction, the job inserted in it (ORM broker) or sent on commit (Redis; the sweeper re-queues
  it if sending fails).

Every path skips Django's per-request connection ping (CONN_HEALTH_CHECKS): the write is
idempotent (the delivery id is unique), so a connection that died since it was last used (a
database restart) is replaced and the write tried once more instead.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from grimoire import jobs
from spells.models import DeliveryStatus, WebhookDelivery

logger = logging.getLogger(__name__)

PROCESS = "spells.tasks.process_delivery"
# A request waits at most this long for its write (GitHub gives up after 10 s).
WRITE_TIMEOUT_SECONDS = 8.0
# One statement carries at most this many rows and (about) this much JSON.
BATCH_ROWS = 64
BATCH_BYTES = 2 * 1024 * 1024
# The writer thread closes its connection after this long without work.
WRITER_IDLE_SECONDS = 30.0


def job_name(delivery_id: str) -> str:
    return f"gh-{delivery_id}"


@dataclass(frozen=True)
class Row:
    """A delivery as written: its columns, the payload as JSON text and its job (None: ignored)."""

    delivery_id: str
    event: str
    action: str
    repository: str
    status: str
    payload_text: str
    job: jobs.QueueRow | None


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
    its job. Returns False when this delivery id is already stored (nothing written).

    Raises OperationalError/InterfaceError when the database is unavailable, DataError when it
    cannot store the payload, TimeoutError when the write took longer than WRITE_TIMEOUT_SECONDS.
    """
    status = DeliveryStatus.RECEIVED if process else DeliveryStatus.IGNORED
    if not jobs.queue_row_in_statement(connection.alias) or connection.in_atomic_block:
        fields = {
            "delivery_id": delivery_id,
            "event": event,
            "action": action,
            "repository": repository,
            "status": status,
        }
        return _with_one_reconnect(lambda: _insert_in_transaction(fields, payload, process))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:  # valid JSON in UTF-16/32: stored re-encoded
        text = json.dumps(payload)
    row = Row(
        delivery_id=delivery_id,
        event=event,
        action=action,
        repository=repository,
        status=status,
        payload_text=text,
        job=jobs.queue_row(PROCESS, delivery_id, queue="high", task_name=job_name(delivery_id))
        if process
        else None,
    )
    if settings.WEBHOOK_GROUP_COMMIT:
        return group_commit.write(row)
    return delivery_id in _with_one_reconnect(lambda: _insert_rows([row]))


def _with_one_reconnect[T](write: Callable[[], T]) -> T:
    # The write replaces the per-request ping: it is idempotent, so a dead connection is
    # replaced and the write tried once more (a real outage fails the second try too: a 5xx).
    connection.health_check_done = True
    try:
        return write()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        logger.warning("database connection lost; reconnecting once for webhook deliveries")
        connection.close()
        return write()


def _insert_rows(rows: list[Row]) -> set[str]:
    """Insert the rows not already stored, and the jobs of those inserted, in one statement.
    Returns the delivery ids inserted. The rows' delivery ids must be distinct."""
    from django_q.models import OrmQ

    table = connection.ops.quote_name(WebhookDelivery._meta.db_table)
    queue_table = connection.ops.quote_name(OrmQ._meta.db_table)
    values: list[str] = []
    params: list[Any] = []
    for row in rows:
        values.append("(%s, %s, %s, %s, %s, %s::jsonb, %s, %s)")
        params += [
            row.delivery_id,
            row.event,
            row.action,
            row.repository,
            row.status,
            row.payload_text,
            row.job.key if row.job else None,
            row.job.payload if row.job else None,
        ]
    now = timezone.now()
    # Identifiers come from the models (quoted); every value is a bound parameter.
    sql = (
        "WITH v (delivery_id, event, action, repository, status, payload, job_key, job) AS "  # noqa: S608
        f"(VALUES {', '.join(values)}), "
        f"delivery AS (INSERT INTO {table} (delivery_id, event, action, repository, status, "
        "payload, result, error, attempts, received_at) "
        "SELECT delivery_id, event, action, repository, status, payload, '{}'::jsonb, '', 0, %s "
        "FROM v ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id), "
        f"job AS (INSERT INTO {queue_table} (key, payload, lock) "
        "SELECT v.job_key, v.job, %s FROM v JOIN delivery USING (delivery_id) "
        "WHERE v.job_key IS NOT NULL) "
        "SELECT delivery_id FROM delivery"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, now, now])
        return {delivery_id for (delivery_id,) in cursor.fetchall()}


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


class GroupCommit:
    """One writer thread per process that writes waiting deliveries together (see the module
    docstring). Started on first use, and again in a forked child or if it ever died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Row, Future[bool]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def write(self, row: Row) -> bool:
        """True when `row` was inserted, False when its delivery id was already stored."""
        future: Future[bool] = Future()
        self._running().put((row, future))
        return future.result(timeout=WRITE_TIMEOUT_SECONDS)

    def stop(self) -> None:
        """Finish what is queued, close the writer's connection and end its thread."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and thread.is_alive() and self._pid == os.getpid():
                self._queue.put(None)
                thread.join(timeout=WRITE_TIMEOUT_SECONDS)

    def _running(self) -> queue.SimpleQueue[tuple[Row, Future[bool]] | None]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                if self._pid != os.getpid():
                    # A forked child inherits neither the thread nor what its parent queued.
                    self._queue = queue.SimpleQueue()
                    self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="webhook-writer", daemon=True
                )
                self._thread.start()
            return self._queue

    def _run(self, inbox: queue.SimpleQueue[tuple[Row, Future[bool]] | None]) -> None:
        carried: list[tuple[Row, Future[bool]]] = []
        try:
            while True:
                if carried:
                    first: tuple[Row, Future[bool]] | None = carried.pop(0)
                else:
                    try:
                        first = inbox.get(timeout=WRITER_IDLE_SECONDS)
                    except queue.Empty:
                        connection.close()  # idle: give the connection back
                        continue
                if first is None:
                    return
                batch, stop = self._gather(first, inbox, carried)
                try:
                    self._write(batch)
                    # No request cycle here to close a connection past CONN_MAX_AGE or broken.
                    connection.close_if_unusable_or_obsolete()
                except Exception as exc:  # the thread must outlive any one batch
                    logger.exception("webhook writer: batch failed")
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                if stop:
                    return
        finally:
            connection.close()

    @staticmethod
    def _gather(
        first: tuple[Row, Future[bool]],
        inbox: queue.SimpleQueue[tuple[Row, Future[bool]] | None],
        carried: list[tuple[Row, Future[bool]]],
    ) -> tuple[list[tuple[Row, Future[bool]]], bool]:
        """`first` and whatever else is already waiting, within the batch bounds. A second
        delivery with an id already in the batch waits for the next one (then it is a duplicate)."""
        batch = [first]
        ids = {first[0].delivery_id}
        size = len(first[0].payload_text)
        while len(batch) < BATCH_ROWS and size < BATCH_BYTES:
            try:
                item = carried.pop(0) if carried else inbox.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            if item[0].delivery_id in ids:
                carried.append(item)
                break
            batch.append(item)
            ids.add(item[0].delivery_id)
            size += len(item[0].payload_text)
        return batch, False

    @staticmethod
    def _write(batch: list[tuple[Row, Future[bool]]]) -> None:
        rows = [row for row, _ in batch]
        try:
            inserted = _with_one_reconnect(lambda: _insert_rows(rows))
        except (OperationalError, InterfaceError) as exc:
            for _, future in batch:
                future.set_exception(exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for item in batch:  # one bad row must not fail the others
                GroupCommit._write([item])
            return
        for row, future in batch:
            future.set_result(row.delivery_id in inserted)


group_commit = GroupCommit()
