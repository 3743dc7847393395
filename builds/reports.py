"""LLM failure analyses of builds: pick the builds that need one, ask the LLM, store its answer.

The seed's "full learning loop" run inside Grimoire (`manage.py analyze_builds`): each failed
build without a failure_analysis report gets one LLM job; the job's completion hook stores the
answer as a BuildReport linked to the LLMOutput, so staff can review prompt, answer and cost.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import deque
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from builds import logstore, services
from builds.models import AnalysisStatus, Build, BuildReport, BuildStatus, ReportType

logger = logging.getLogger(__name__)

PURPOSE = "builds.analysis"
HOOK = "builds.reports.on_analysis_done"
# An offline placeholder must never look like a confident diagnosis.
OFFLINE_MAX_CONFIDENCE = 0.1

ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "analysis": {"type": "string", "description": "Root cause of the failure, in prose."},
        "recommendations": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Concrete steps that would fix the build, most likely first.",
        },
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["analysis", "recommendations", "confidence"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = (
    "You are a senior engineer diagnosing a failed CI build. Use only the evidence given. "
    "Name the root cause, not the symptom, and say how sure you are (0 to 1)."
)
PROMPT = """\
Build of {{repository}} (branch {{branch}}, job {{job_name}}) ended {{status}}.

Most likely failure line:
{{primary_error}}

Failed tests:
{{failures}}

Error lines:
{{errors}}

The part of the log that explains the failure:
```
{{excerpt}}
```

Explain why the build failed and what would fix it."""

MAX_EXCERPT_CHARS = 8_000
MAX_LIST_ITEMS = 20
TAIL_BYTES = 8_000


def subject_for(build_id: Any) -> str:
    return f"build:{build_id}"


def _open_jobs(build_ids: list[str], *, retry_after: timedelta) -> set[str]:
    """Builds with an analysis job still under way, or one that ended less than `retry_after`
    ago (a failed or unusable answer is not asked again at every pass of the loop)."""
    from llmcore.models import TERMINAL_STATUSES, LLMOutput

    if not build_ids:
        return set()
    subjects = {subject_for(pk): pk for pk in build_ids}
    recent = timezone.now() - retry_after
    rows = LLMOutput.objects.filter(purpose=PURPOSE, subject__in=list(subjects)).values_list(
        "subject", "status", "created_at"
    )
    return {
        subjects[subject]
        for subject, status, created_at in rows
        if status not in TERMINAL_STATUSES or created_at >= recent
    }


def builds_needing_analysis(
    *, limit: int = 50, retry_after: timedelta = timedelta(hours=24)
) -> list[Build]:
    """Failed or errored builds, newest first, whose log has been analysed, that have no
    failure_analysis report and no analysis job under way (or tried recently)."""
    has_report = BuildReport.objects.filter(build=OuterRef("pk"), type=ReportType.FAILURE_ANALYSIS)
    picked: list[Build] = []
    # Read in pages: builds skipped for an open job must not starve the ones behind them.
    qs = (
        Build.objects.filter(
            status__in=(BuildStatus.FAILED, BuildStatus.ERROR),
            analysis_status__in=(AnalysisStatus.DONE, AnalysisStatus.FAILED),
        )
        .exclude(Exists(has_report))
        .order_by("-created_at", "pk")
    )
    offset = 0
    page = max(limit * 2, 50)
    while len(picked) < limit:
        batch = list(qs[offset : offset + page])
        if not batch:
            break
        busy = _open_jobs([str(b.pk) for b in batch], retry_after=retry_after)
        picked += [b for b in batch if str(b.pk) not in busy][: limit - len(picked)]
        offset += page
    return picked


def _lines(items: list[str]) -> str:
    shown = [f"- {item[:500]}" for item in items[:MAX_LIST_ITEMS]]
    if len(items) > MAX_LIST_ITEMS:
        shown.append(f"- … {len(items) - MAX_LIST_ITEMS} more")
    return "\n".join(shown) or "(none found)"


def _log_tail(build: Build) -> str:
    # Without an analysis the end of the log is the best evidence there is.
    tail: deque[str] = deque()
    size = 0
    for line in logstore.iter_log_lines(build.pk):
        tail.append(line)
        size += len(line) + 1
        while size > TAIL_BYTES and len(tail) > 1:
            size -= len(tail.popleft()) + 1
    return "\n".join(tail)[-TAIL_BYTES:]


def analysis_context(build: Build) -> dict[str, Any]:
    summary = build.summary or {}
    primary = summary.get("primary_error") or {}
    excerpt = (summary.get("excerpt") or {}).get("text") or _log_tail(build)
    if len(excerpt) > MAX_EXCERPT_CHARS:
        excerpt = "…\n" + excerpt[-MAX_EXCERPT_CHARS:]
    failures = [
        f"{f.get('test', '?')} ({f.get('runner', '?')}): {f.get('message', '')}".rstrip(": ")
        for f in summary.get("failures", [])
    ]
    return {
        "build_id": str(build.pk),
        "repository": build.repository or "(unknown repository)",
        "branch": build.branch or "(unknown)",
        "job_name": build.job_name or build.command or "(unnamed)",
        "status": build.status,
        "primary_error": primary.get("text") or build.primary_error or "(none found)",
        "failures": _lines(failures),
        "errors": _lines([e.get("text", "") for e in summary.get("errors", [])]),
        "excerpt": excerpt or "(empty log)",
    }


def build_failure_analysis_submit(
    *, build: Build, retry_after: timedelta = timedelta(hours=24)
) -> Any | None:
    """Queue one LLM failure analysis of `build`; None when one is already under way."""
    from llmcore.services import llm_job_submit

    with transaction.atomic():
        # Two loops running at once: the row lock makes the second wait, then see the job.
        Build.objects.select_for_update().filter(pk=build.pk).first()
        if _open_jobs([str(build.pk)], retry_after=retry_after):
            return None
        if build.reports.filter(type=ReportType.FAILURE_ANALYSIS).exists():
            return None
        return llm_job_submit(
            prompt=PROMPT,
            system_prompt=SYSTEM_PROMPT,
            context=analysis_context(build),
            json_schema=ANALYSIS_SCHEMA,
            purpose=PURPOSE,
            subject=subject_for(build.pk),
            on_complete=HOOK,
            priority="low",
        )


def _clamp_confidence(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(number):
        return 0.0
    return max(0.0, min(1.0, number))


def _build_for(output: Any) -> Build | None:
    raw = (output.context or {}).get("build_id") or output.subject.removeprefix("build:")
    try:
        build_id = uuid.UUID(str(raw))
    except ValueError:
        return None
    return Build.objects.select_for_update().filter(pk=build_id).first()


def on_analysis_done(output: Any) -> BuildReport | None:
    """LLM job hook: the validated answer becomes the build's failure_analysis report.

    Runs once per completed job (llmcore calls it inside the completing transaction); a repeated
    call for the same output stores nothing new.
    """
    build = _build_for(output)
    if build is None:
        logger.warning(
            "analysis for a build that no longer exists", extra={"output": str(output.pk)}
        )
        return None
    existing = BuildReport.objects.filter(build=build, llm_output=output).first()
    if existing is not None:
        return existing
    parsed = output.parsed if isinstance(output.parsed, dict) else {}
    analysis = str(parsed.get("analysis") or "").strip()
    if not analysis:
        logger.warning("LLM analysis answer had no text", extra={"build_id": str(build.pk)})
        return None
    recommendations = parsed.get("recommendations")
    if isinstance(recommendations, str):
        recommendations = [recommendations]
    if not isinstance(recommendations, list):
        recommendations = []
    recommendations = [str(r).strip()[:2000] for r in recommendations if str(r).strip()][:50]
    confidence = _clamp_confidence(parsed.get("confidence"))
    if output.offline:
        confidence = min(confidence, OFFLINE_MAX_CONFIDENCE)
    report = services.build_report_create(
        build=build,
        type=ReportType.FAILURE_ANALYSIS,
        analysis=analysis[:50_000],
        recommendations=recommendations,
        confidence=confidence,
        llm_output=output,
    )
    logger.info(
        "stored LLM failure analysis",
        extra={"build_id": str(build.pk), "report_id": report.pk, "confidence": confidence},
    )
    return report


def _on_analysis_failed(output: Any) -> None:
    # Nothing to store: the failed LLMOutput is the record; the loop asks again after its
    # retry window.
    logger.warning(
        "LLM failure analysis failed",
        extra={"subject": output.subject, "error_code": output.error_code},
    )


on_analysis_done.on_failure = _on_analysis_failed  # type: ignore[attr-defined]


def real_provider_configured() -> bool:
    """Whether a provider other than the offline placeholder would answer."""
    from llmcore import gateway

    try:
        router = gateway.get_router()
    except ValueError:
        return False
    return any(getattr(p, "kind", "offline") != "offline" for p in router.providers)
