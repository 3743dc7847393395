from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from llmcore.models import JobStatus, LLMOutput
from spells.models import GenerationStatus, Spell, SpellGeneration


def spell_metrics(*, days: int = 30) -> dict[str, Any]:
    since = timezone.now() - timedelta(days=days)
    auto = Spell.objects.filter(auto_generated=True, created_at__gte=since)
    per_day = [
        {"day": r["day"].isoformat() if r["day"] else None, "count": r["n"]}
        for r in auto.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by("day")
    ]
    gens = SpellGeneration.objects.filter(created_at__gte=since)
    by_status = dict(gens.values_list("status").annotate(n=Count("pk")).order_by())
    done = by_status.get(GenerationStatus.COMPLETED, 0)
    failed = by_status.get(GenerationStatus.FAILED, 0)
    llm = LLMOutput.objects.filter(
        purpose="spells.draft", created_at__gte=since, status=JobStatus.COMPLETED
    ).aggregate(latency=Avg("latency_ms"), cost=Sum("cost_usd"), n=Count("pk"))
    total_auto = Spell.objects.filter(auto_generated=True).count()
    reviewed = Spell.objects.filter(auto_generated=True, human_reviewed=True).count()
    unmatched = [
        {
            "fingerprint": g.fingerprint,
            "occurrences": g.occurrences,
            "status": g.status,
            "message": (g.error or {}).get("message", "")[:200],
        }
        for g in SpellGeneration.objects.filter(
            ~Q(status=GenerationStatus.COMPLETED), ~Q(status=GenerationStatus.REUSED)
        ).order_by("-occurrences")[:20]
    ]
    return {
        "window_days": days,
        "auto_generated_per_day": per_day,
        "average_confidence": round(auto.aggregate(a=Avg("confidence_score"))["a"] or 0, 1),
        "generation": {
            "by_status": by_status,
            "success_rate": round(done / (done + failed), 4) if done + failed else None,
            "llm_jobs": llm["n"],
            "llm_latency_ms_avg": round(llm["latency"], 1) if llm["latency"] else None,
            "llm_cost_usd": float(llm["cost"] or 0),
        },
        "review_rate": round(reviewed / total_auto, 4) if total_auto else None,
        "top_matched": list(
            Spell.objects.filter(match_count__gt=0)
            .order_by("-match_count")
            .values("id", "title", "match_count")[:10]
        ),
        "unmatched_fingerprints": unmatched,
    }
