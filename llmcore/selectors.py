from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from llmcore.models import Feedback, JobStatus, LLMOutput


def outputs_visible_to(user: Any) -> QuerySet[LLMOutput]:
    """Users see their own outputs; staff see all."""
    qs = LLMOutput.objects.select_related("template").prefetch_related("feedback")
    return qs if user.is_staff else qs.filter(user=user)


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return round(values[index], 1)


def llm_metrics(*, days: int = 30, latency_sample: int = 5000) -> dict[str, Any]:
    since = timezone.now() - timedelta(days=days)
    recent = LLMOutput.objects.filter(created_at__gte=since)
    by_status = dict(recent.values_list("status").annotate(n=Count("pk")).order_by())
    finished = by_status.get(JobStatus.COMPLETED, 0) + by_status.get(JobStatus.FAILED, 0)
    retries = recent.aggregate(n=Sum("attempts"), jobs=Count("pk", filter=Q(attempts__gt=0)))

    providers: dict[str, dict[str, Any]] = {}
    for row in (
        recent.filter(status=JobStatus.COMPLETED)
        .values("provider")
        .annotate(
            jobs=Count("pk"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_usd=Sum("cost_usd"),
        )
        .order_by("provider")
    ):
        providers[row["provider"] or "-"] = {
            "jobs": row["jobs"],
            "input_tokens": row["input_tokens"] or 0,
            "output_tokens": row["output_tokens"] or 0,
            "cost_usd": float(row["cost_usd"] or 0),
        }
    # Percentiles over a bounded sample of the most recent completions per provider.
    for name in providers:
        latencies = list(
            recent.filter(status=JobStatus.COMPLETED, provider=name if name != "-" else "")
            .exclude(latency_ms__isnull=True)
            .order_by("-completed_at")
            .values_list("latency_ms", flat=True)[:latency_sample]
        )
        providers[name]["latency_ms_p50"] = _percentile(latencies, 0.5)
        providers[name]["latency_ms_p95"] = _percentile(latencies, 0.95)

    per_day = [
        {
            "day": row["day"].isoformat() if row["day"] else None,
            "provider": row["provider"] or "-",
            "jobs": row["jobs"],
            "tokens": (row["input_tokens"] or 0) + (row["output_tokens"] or 0),
            "cost_usd": float(row["cost_usd"] or 0),
        }
        for row in recent.filter(status=JobStatus.COMPLETED)
        .annotate(day=TruncDate("completed_at"))
        .values("day", "provider")
        .annotate(
            jobs=Count("pk"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_usd=Sum("cost_usd"),
        )
        .order_by("day", "provider")
    ]

    feedback = []
    for row in (
        Feedback.objects.filter(output__created_at__gte=since)
        .values("output__purpose")
        .annotate(
            up=Count("pk", filter=Q(vote=Feedback.UP)),
            down=Count("pk", filter=Q(vote=Feedback.DOWN)),
        )
        .order_by("output__purpose")
    ):
        total = row["up"] + row["down"]
        feedback.append(
            {
                "template": row["output__purpose"] or "-",
                "up": row["up"],
                "down": row["down"],
                "up_ratio": round(row["up"] / total, 3) if total else None,
            }
        )

    return {
        "window_days": days,
        "jobs_by_status": {status: by_status.get(status, 0) for status in JobStatus.values},
        "success_rate": (
            round(by_status.get(JobStatus.COMPLETED, 0) / finished, 4) if finished else None
        ),
        "retries": max(0, (retries["n"] or 0) - (retries["jobs"] or 0)),
        "providers": providers,
        "per_day": per_day,
        "feedback_by_template": feedback,
    }
