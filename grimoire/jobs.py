"""How Grimoire runs background work on django-q2.

- `enqueue()` makes a task visible to workers only when the surrounding transaction commits: a
  row that rolls back never gets a job, and a job never runs before its row is visible to the
  worker. (Redis broker: sent on commit. ORM broker: inserted in the same transaction.)
- A task is a thin entry point that loads rows by id and calls a service; re-running it is safe.
- Sweepers, registered per app, find rows stuck in a non-terminal state past their timeout (worker
  killed, broker lost, enqueue failed after commit) and enqueue them again. The periodic
  `sweep_stuck_work` schedule runs them all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django_q.tasks import async_task

logger = logging.getLogger(__name__)

Sweeper = Callable[[], int]
_sweepers: dict[str, Sweeper] = {}


def _options(queue: str, task_name: str | None, timeout: int | None) -> dict[str, Any]:
    if queue not in settings.JOB_QUEUES:
        raise ValueError(f"unknown queue {queue!r}; expected one of {settings.JOB_QUEUES}")
    options: dict[str, Any] = {"cluster": queue}
    if task_name:
        options["task_name"] = task_name
    if timeout:
        options["timeout"] = timeout
    return options


def enqueue(
    func: str,
    *args: Any,
    queue: str = "default",
    task_name: str | None = None,
    timeout: int | None = None,
    **kwargs: Any,
) -> None:
    """Queue `func(*args, **kwargs)` on `queue` once the current transaction commits.

    Outside a transaction it is sent at once. If sending fails (broker down) the error is logged,
    not raised: the caller's row is already durable and the sweeper will enqueue it again.
    """
    options = _options(queue, task_name, timeout)

    def send() -> None:
        async_task(func, *args, q_options=options, **kwargs)

    from django_q.conf import Conf

    if Conf.ORM and not Conf.SYNC and not transaction.get_autocommit(using=Conf.ORM):
        # The ORM broker's queue is a table in this database: inserting the job inside the
        # caller's transaction gives the same guarantee as on_commit (invisible to workers until
        # commit, gone on rollback) with one commit instead of two per request.
        send()
        return
    transaction.on_commit(send, robust=True)


@dataclass(frozen=True)
class QueueRow:
    """A job as the ORM broker stores it (its queue table's key and signed payload), not sent."""

    key: str
    payload: str


class _Capture:
    """Stands in for the broker in async_task(): keeps the signed package instead of sending it."""

    def __init__(self, list_key: str) -> None:
        self.list_key = list_key
        self.package: str | None = None

    def enqueue(self, package: str) -> None:
        self.package = package


def queue_row_in_statement(using: str = "default") -> bool:
    """True when a job can be written by the caller's own SQL on `using`: the ORM broker's queue
    is a table in that PostgreSQL database (so one INSERT ... RETURNING statement with a
    data-modifying CTE can store a row and its job together, atomically, in one round trip)."""
    from django.db import connections
    from django_q.conf import Conf

    return bool(using == Conf.ORM and not Conf.SYNC and connections[using].vendor == "postgresql")


def queue_row(
    func: str,
    *args: Any,
    queue: str = "default",
    task_name: str | None = None,
    **kwargs: Any,
) -> QueueRow:
    """`func(*args, **kwargs)` packaged and signed by django-q2's own async_task(), exactly as
    enqueue() would send it, for a caller that inserts it into the ORM broker's table itself
    (see queue_row_in_statement())."""
    capture = _Capture(queue)
    async_task(
        func, *args, q_options={**_options(queue, task_name, None), "broker": capture}, **kwargs
    )
    assert capture.package is not None
    return QueueRow(key=queue, payload=capture.package)


def register_sweeper(name: str) -> Callable[[Sweeper], Sweeper]:
    """Register `fn() -> int` (rows re-enqueued) to run on every sweep."""

    def decorator(fn: Sweeper) -> Sweeper:
        _sweepers[name] = fn
        return fn

    return decorator


def registered_sweepers() -> dict[str, Sweeper]:
    return dict(_sweepers)


def sweep_stuck_work() -> dict[str, int]:
    """Run every registered sweeper; one failing sweeper does not stop the others."""
    counts: dict[str, int] = {}
    for name, sweeper in _sweepers.items():
        try:
            counts[name] = sweeper()
        except Exception:
            logger.exception("sweeper failed", extra={"sweeper": name})
            counts[name] = -1
    if any(counts.values()):
        logger.info("re-enqueued stuck work", extra={"requeued": counts})
    return counts


def ensure_schedules(**_: Any) -> None:
    """Make django-q2 schedules match settings.PERIODIC_TASKS (runs after every migrate)."""
    from django_q.models import Schedule

    for name, (func, minutes, queue) in settings.PERIODIC_TASKS.items():
        Schedule.objects.update_or_create(
            name=name,
            defaults={
                "func": func,
                "schedule_type": Schedule.MINUTES,
                "minutes": minutes,
                "repeats": -1,
                # Picked up by the default cluster's scheduler, run on `queue`.
                "cluster": None,
                "kwargs": repr({"q_options": {"cluster": queue}}),
            },
        )
