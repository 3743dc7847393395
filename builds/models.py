from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class BuildStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    ERROR = "error"
    CANCELLED = "cancelled"


FINISHED_STATUSES = (
    BuildStatus.SUCCESS,
    BuildStatus.FAILED,
    BuildStatus.ERROR,
    BuildStatus.CANCELLED,
)


class BuildSource(models.TextChoices):
    API = "api"
    GITHUB = "github"
    RUNNER = "runner"


class AnalysisStatus(models.TextChoices):
    NONE = "none"  # still running: nothing to analyse yet
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Build(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(
        max_length=10, choices=BuildStatus.choices, default=BuildStatus.QUEUED, db_index=True
    )
    source = models.CharField(max_length=10, choices=BuildSource.choices, default=BuildSource.API)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="builds",
    )
    repository = models.CharField(max_length=200, blank=True, db_index=True)
    branch = models.CharField(max_length=255, blank=True)
    commit_sha = models.CharField(max_length=64, blank=True)
    pull_request = models.PositiveIntegerField(null=True, blank=True)
    job_name = models.CharField(max_length=255, blank=True)
    job_url = models.URLField(max_length=500, blank=True)
    command = models.CharField(max_length=500, blank=True)
    # A CI system's own id for this job (e.g. GitHub workflow job id): makes re-delivery idempotent.
    external_id = models.CharField(max_length=100, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)

    # The log lives in BuildLogChunk rows (compressed); these describe it.
    log_bytes = models.BigIntegerField(default=0)
    log_chunks = models.PositiveIntegerField(default=0)

    analysis_status = models.CharField(
        max_length=10, choices=AnalysisStatus.choices, default=AnalysisStatus.NONE
    )
    analysis_requested_at = models.DateTimeField(null=True, blank=True)
    analysis_started_at = models.DateTimeField(null=True, blank=True)
    analyzed_at = models.DateTimeField(null=True, blank=True)
    analysis_error = models.TextField(blank=True)
    summary = models.JSONField(default=dict, blank=True)
    total_lines = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    warning_count = models.PositiveIntegerField(default=0)
    primary_error = models.TextField(blank=True)
    primary_fingerprint = models.CharField(max_length=64, blank=True, db_index=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="build_external_unique",
            )
        ]

    def __str__(self) -> str:
        label = self.job_name or self.command or "build"
        return f"{self.repository or '-'} {label} [{self.status}]"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class BuildLogChunk(models.Model):
    """A piece of a build's log, zlib-compressed; chunks in `seq` order make the whole log.

    In the database rather than on local disk so every web and worker machine sees the same log,
    and appending is an INSERT.
    """

    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveIntegerField()
    data = models.BinaryField()
    raw_size = models.PositiveIntegerField()

    class Meta:
        ordering = ["build", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["build", "seq"], name="build_chunk_seq_unique")
        ]

    def __str__(self) -> str:
        return f"chunk {self.seq} of {self.build_id}"


class ReportType(models.TextChoices):
    FAILURE_ANALYSIS = "failure_analysis"
    CODE_IMPROVEMENT = "code_improvement"
    TEST_COVERAGE = "test_coverage"
    DEPENDENCY_AUDIT = "dependency_audit"
    PERFORMANCE_ANALYSIS = "performance_analysis"


class BuildReport(models.Model):
    """An analysis of a build, submitted by a coding agent or produced by an LLM job."""

    build = models.ForeignKey(Build, on_delete=models.CASCADE, related_name="reports")
    type = models.CharField(max_length=30, choices=ReportType.choices)
    analysis = models.TextField(max_length=50_000)
    recommendations = models.JSONField(default=list, blank=True)
    confidence = models.FloatField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    llm_output = models.ForeignKey(
        "llmcore.LLMOutput", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_type_display()} of {self.build_id}"
