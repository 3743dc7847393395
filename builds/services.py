"""Builds: ingest (metadata + log), append, finish, analyse; reports from agents and LLM jobs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from builds import logstore
from builds.models import FINISHED_STATUSES, AnalysisStatus, Build, BuildReport, BuildStatus
from builds.signals import build_analyzed
from grimoire import jobs

logger = logging.getLogger(__name__)

ANALYZE_TASK = "builds.tasks.analyze_build"


class BuildStateError(ValueError):
    """The operation does not fit the build's state (e.g. appending to a finished build)."""


class DuplicateBuildError(ValueError):
    """A build with this (source, external_id) exists: a CI re-delivered it."""

    def __init__(self, existing: Build) -> None:
        super().__init__(f"build {existing.pk} already has external_id {existing.external_id!r}")
        self.existing = existing


METADATA_FIELDS = (
    "repository",
    "branch",
    "commit_sha",
    "pull_request",
    "job_name",
    "job_url",
    "command",
    "external_id",
    "started_at",
)


def _finish_fields(build: Build, status: str, finished_at: datetime | None) -> None:
    build.status = status
    build.finished_at = finished_at or timezone.now()
    if build.started_at:
        build.duration_seconds = max(0.0, (build.finished_at - build.started_at).total_seconds())


@transaction.atomic
def build_create(
    *,
    owner: Any = None,
    status: str = BuildStatus.FAILED,
    source: str = "api",
    log: Iterable[bytes] | None = None,
    finished_at: datetime | None = None,
    **metadata: Any,
) -> Build:
    """Store a build (and its log). A finished build is analysed after commit."""
    unknown = set(metadata) - set(METADATA_FIELDS)
    if unknown:
        raise TypeError(f"unknown build fields: {sorted(unknown)}")
    external_id = metadata.get("external_id")
    if external_id:
        existing = Build.objects.filter(source=source, external_id=external_id).first()
        if existing is not None:
            raise DuplicateBuildError(existing)
    build = Build(owner=owner, source=source, status=status, **metadata)
    if build.started_at is None and status != BuildStatus.QUEUED:
        build.started_at = timezone.now()
    if status in FINISHED_STATUSES:
        _finish_fields(build, status, finished_at)
    try:
        with transaction.atomic():
            build.save()
    except IntegrityError:
        # Two deliveries of the same CI job at once: the other one stored it first.
        raise DuplicateBuildError(
            Build.objects.get(source=source, external_id=external_id)
        ) from None
    if log is not None:
        logstore.append_log(build, log)
    if build.is_finished:
        build_request_analysis(build=build)
    return build


@transaction.atomic
def build_append_log(*, build: Build, log: Iterable[bytes]) -> int:
    locked = Build.objects.select_for_update().get(pk=build.pk)
    if locked.is_finished:
        raise BuildStateError(
            f"build is {locked.status}; logs can only be appended to a running build"
        )
    if locked.status == BuildStatus.QUEUED:
        Build.objects.filter(pk=build.pk).update(
            status=BuildStatus.RUNNING, started_at=timezone.now()
        )
    return logstore.append_log(locked, log)


@transaction.atomic
def build_finish(*, build: Build, status: str, finished_at: datetime | None = None) -> Build:
    if status not in FINISHED_STATUSES:
        raise BuildStateError(f"status must be one of {[s.value for s in FINISHED_STATUSES]}")
    build = Build.objects.select_for_update().get(pk=build.pk)
    if build.is_finished:
        if build.status == status:
            return build  # a repeated finish is a no-op, not an error (clients retry)
        raise BuildStateError(f"build already finished as {build.status}")
    _finish_fields(build, status, finished_at)
    build.save()
    build_request_analysis(build=build)
    return build


def build_request_analysis(*, build: Build) -> None:
    Build.objects.filter(pk=build.pk).update(
        analysis_status=AnalysisStatus.PENDING,
        analysis_requested_at=timezone.now(),
        analysis_error="",
    )
    build.analysis_status = AnalysisStatus.PENDING
    jobs.enqueue(ANALYZE_TASK, str(build.pk), queue="default", task_name=f"analyze-{build.pk}")


def _claim_analysis(build_id: str) -> bool:
    now = timezone.now()
    stuck = now - timedelta(seconds=settings.STUCK_AFTER_SECONDS)
    return bool(
        Build.objects.filter(
            Q(analysis_status=AnalysisStatus.PENDING)
            | Q(analysis_status=AnalysisStatus.RUNNING, analysis_started_at__lt=stuck),
            pk=build_id,
        ).update(analysis_status=AnalysisStatus.RUNNING, analysis_started_at=now)
    )


def analyze_build_log(build_id) -> Any:
    """Stream the stored log through the analyser (constant memory)."""
    from builds.logparse import LogAnalyzer

    analyzer = LogAnalyzer()
    for line in logstore.iter_log_lines(build_id):
        analyzer.feed(line)
    return analyzer.finish()


def build_analyze(*, build_id: str) -> Build | None:
    """Analyse a finished build's log, store the summary, tell listeners (spell matching).

    Idempotent: only a pending (or stuck) analysis is claimed; a second delivery does nothing.
    """
    if not _claim_analysis(build_id):
        return None
    try:
        analysis = analyze_build_log(build_id)
    except Exception as exc:
        logger.exception("build analysis failed", extra={"build_id": build_id})
        Build.objects.filter(pk=build_id).update(
            analysis_status=AnalysisStatus.FAILED,
            analysis_error=f"{type(exc).__name__}: {exc}"[:2000],
        )
        return None
    summary = analysis.to_dict()
    summary.pop("path", None)
    primary = summary.get("primary_error") or {}
    with transaction.atomic():
        build = Build.objects.select_for_update().get(pk=build_id)
        build.summary = summary
        build.total_lines = summary.get("total_lines", 0)
        build.error_count = summary.get("error_count", 0)
        build.warning_count = summary.get("warning_count", 0)
        build.primary_error = (primary.get("text") or "")[:4000]
        build.primary_fingerprint = primary.get("fingerprint") or ""
        build.analysis_status = AnalysisStatus.DONE
        build.analyzed_at = timezone.now()
        build.analysis_error = ""
        build.save()
        build_analyzed.send(sender=Build, build=build, analysis=summary)
    return build


@jobs.register_sweeper("build_analysis")
def sweep_stuck_analyses() -> int:
    now = timezone.now()
    stuck = now - timedelta(seconds=settings.STUCK_AFTER_SECONDS)
    ids = list(
        Build.objects.filter(
            Q(
                analysis_status=AnalysisStatus.PENDING,
                analysis_requested_at__lt=now - timedelta(minutes=2),
            )
            | Q(analysis_status=AnalysisStatus.RUNNING, analysis_started_at__lt=stuck)
        ).values_list("pk", flat=True)[:200]
    )
    for build_id in ids:
        jobs.enqueue(ANALYZE_TASK, str(build_id), queue="default")
    return len(ids)


def build_report_create(
    *,
    build: Build,
    type: str,
    analysis: str,
    recommendations: list[str],
    confidence: float,
    author: Any = None,
    llm_output: Any = None,
) -> BuildReport:
    return BuildReport.objects.create(
        build=build,
        type=type,
        analysis=analysis,
        recommendations=recommendations,
        confidence=confidence,
        author=author,
        llm_output=llm_output,
    )
