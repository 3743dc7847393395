"""django-q2 entry points for spells: thin, by id, safe to deliver twice."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from grimoire import jobs
from spells import github_events
from spells.github import GitHub, GitHubError, RateLimitedError
from spells.models import DeliveryStatus, WebhookDelivery

logger = logging.getLogger(__name__)
MAX_DELIVERY_ATTEMPTS = 5


def _retry_later(func: str, args: tuple, delay: float) -> None:
    from django_q.models import Schedule

    Schedule.objects.create(
        func=func,
        args=repr(args),
        kwargs=repr({"q_options": {"cluster": "default"}}),
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=timezone.now() + timedelta(seconds=min(delay, 3600)),
    )


def process_delivery(delivery_id: str) -> str:
    """Handle one stored GitHub delivery, named by its X-GitHub-Delivery id (the natural key: the
    receiver queues this job in the same statement that stores the row, before its pk exists)."""
    # Claim: only a received delivery is processed; a second delivery of this task does nothing.
    # Claim: received (or a stale claim whose worker died); a second delivery of this task, or
    # one queued again by the sweeper while this runs, finds nothing to claim.
    stale = timezone.now() - timedelta(seconds=settings.STUCK_AFTER_SECONDS)
    claimed = (
        WebhookDelivery.objects.filter(delivery_id=delivery_id)
        .filter(
            Q(status=DeliveryStatus.RECEIVED)
            | Q(status=DeliveryStatus.PROCESSING, processed_at__lt=stale)
        )
        .update(
            status=DeliveryStatus.PROCESSING,
            attempts=F("attempts") + 1,
            processed_at=timezone.now(),
        )
    )
    delivery = WebhookDelivery.objects.get(delivery_id=delivery_id)
    delivery_pk = delivery.pk
    if not claimed:
        return delivery.status
    if delivery.attempts > MAX_DELIVERY_ATTEMPTS:
        WebhookDelivery.objects.filter(pk=delivery_pk).update(
            status=DeliveryStatus.FAILED,
            error=f"gave up after {MAX_DELIVERY_ATTEMPTS} attempts; last: {delivery.error}"[:2000],
        )
        return DeliveryStatus.FAILED
    handler = github_events.HANDLERS[delivery.event]
    try:
        result = handler.handle(delivery.payload)
    except RateLimitedError as exc:
        _retry_later("spells.tasks.process_delivery", (delivery_id,), exc.retry_after)
        WebhookDelivery.objects.filter(pk=delivery_pk).update(
            status=DeliveryStatus.RECEIVED, error=str(exc)
        )
        return "rate_limited"
    except (httpx.TransportError, GitHubError) as exc:
        if isinstance(exc, GitHubError) and (exc.status or 0) < 500:
            return _delivery_failed(delivery, exc)
        # GitHub down or slow for a moment: try again later, with growing delays.
        _retry_later("spells.tasks.process_delivery", (delivery_id,), 30 * 2**delivery.attempts)
        WebhookDelivery.objects.filter(pk=delivery_pk).update(
            status=DeliveryStatus.RECEIVED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        return "retrying"
    except Exception as exc:
        return _delivery_failed(delivery, exc)
    WebhookDelivery.objects.filter(pk=delivery_pk).update(
        status=DeliveryStatus.PROCESSED, result=result, error=""
    )
    return DeliveryStatus.PROCESSED


def _delivery_failed(delivery: WebhookDelivery, exc: Exception) -> str:
    logger.exception("GitHub delivery failed", extra={"delivery": delivery.delivery_id})
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
    )
    return DeliveryStatus.FAILED


@jobs.register_sweeper("webhook_deliveries")
def sweep_deliveries() -> int:
    """Queue again deliveries whose job was lost, and claims whose worker died."""
    stale = timezone.now() - timedelta(seconds=settings.STUCK_AFTER_SECONDS)
    ids = list(
        WebhookDelivery.objects.filter(attempts__lt=MAX_DELIVERY_ATTEMPTS)
        .filter(
            Q(status=DeliveryStatus.RECEIVED, received_at__lt=stale)
            & (Q(processed_at__isnull=True) | Q(processed_at__lt=stale))
            | Q(status=DeliveryStatus.PROCESSING, processed_at__lt=stale)
        )
        .values_list("delivery_id", flat=True)[:200]
    )
    for delivery_id in ids:
        jobs.enqueue("spells.tasks.process_delivery", delivery_id, queue="high")
    return len(ids)


def fetch_job_log(build_id: str, repo: str, job_id: int) -> str:
    from builds import services as build_services
    from builds.models import Build

    build = Build.objects.get(pk=build_id)
    if build.is_finished:
        return build.status
    try:
        if build.log_bytes == 0:
            build_services.build_append_log(build=build, log=GitHub().job_log(repo, job_id))
    except RateLimitedError as exc:
        _retry_later("spells.tasks.fetch_job_log", (build_id, repo, job_id), exc.retry_after)
        return "rate_limited"
    except Exception as exc:
        logger.warning("could not download job log", extra={"build": build_id, "error": str(exc)})
        build_services.build_append_log(
            build=build, log=[f"grimoire: could not download the job log: {exc}\n".encode()]
        )
    return build_services.build_finish(build=build, status="failed").status


def comment_on_pr(pr_pk: int) -> bool:
    from spells.models import PullRequest, SpellMatch

    pr = PullRequest.objects.get(pk=pr_pk)
    if pr.commented_at or not pr.head_sha:
        return False
    matches = (
        SpellMatch.objects.filter(build__commit_sha=pr.head_sha)
        .select_related("spell")
        .order_by("-score")[:5]
    )
    if not matches:
        return False
    lines = ["**Grimoire** found known fixes for the failures on this pull request:", ""]
    for m in matches:
        lines.append(
            f"- **{m.spell.title}** ({m.reason}, score {m.score:.0f}): {m.spell.description[:300]}"
        )
    GitHub().comment(pr.repository, pr.number, "\n".join(lines))
    PullRequest.objects.filter(pk=pr_pk).update(commented_at=timezone.now())
    return True
