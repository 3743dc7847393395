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


# --- Autofix: the test → fix → re-run loop -----------------------------------------------------


class AutofixStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the tests pass in the scratch copy with the final patch
    FAILED = "failed"  # the loop stopped without green tests (see stop_reason)
    ERROR = "error"  # the loop could not run (workspace, command, crash)


AUTOFIX_FINISHED = (AutofixStatus.SUCCEEDED, AutofixStatus.FAILED, AutofixStatus.ERROR)


class AutofixStopReason(models.TextChoices):
    NONE = "", "-"
    ALL_PASS = "all_tests_pass", "all tests pass"
    ALREADY_PASSING = "already_passing", "tests already passed"
    MAX_ITERATIONS = "max_iterations", "iteration limit reached"
    NO_IMPROVEMENT = "no_improvement", "improvement below the threshold"
    PATCH_FAILED = "patch_failed", "patches failed to apply twice"
    LLM_UNAVAILABLE = "llm_unavailable", "no LLM provider answered and no known fix applies"
    TIMEOUT = "timeout", "the test command hit its time limit"
    TIME_BUDGET = "time_budget", "the run used up its time budget"
    ERROR = "error", "error"


class AutofixReview(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class AutofixRun(models.Model):
    """One run of the autofix loop on a scratch copy of a workspace; proposes a patch for review."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="autofix_runs",
    )
    # As given (a path under WORKSPACE_ROOT, a project id, or a file:// git URL) and resolved.
    workspace = models.CharField(max_length=1000)
    source_path = models.CharField(max_length=1000, blank=True)
    source_kind = models.CharField(
        max_length=10, blank=True, choices=[("dir", "directory"), ("git", "git repository")]
    )
    runner = models.CharField(max_length=20, blank=True)
    command = models.JSONField(default=list, blank=True, help_text="argv list, run without a shell")
    max_iterations = models.PositiveSmallIntegerField(default=5)
    allow_test_changes = models.BooleanField(default=False)

    status = models.CharField(
        max_length=10, choices=AutofixStatus.choices, default=AutofixStatus.QUEUED, db_index=True
    )
    stop_reason = models.CharField(
        max_length=20, choices=AutofixStopReason.choices, blank=True, default=""
    )
    message = models.TextField(blank=True)
    fallback_used = models.BooleanField(
        default=False, help_text="No LLM answered; only deterministic well-known fixes were tried."
    )
    iteration_count = models.PositiveSmallIntegerField(default=0)
    final_patch = models.TextField(blank=True)

    exit_code_before = models.IntegerField(null=True, blank=True)
    failure_count_before = models.PositiveIntegerField(null=True, blank=True)
    failures_before = models.JSONField(default=list, blank=True)
    output_before = models.TextField(blank=True)
    exit_code_after = models.IntegerField(null=True, blank=True)
    failure_count_after = models.PositiveIntegerField(null=True, blank=True)
    failures_after = models.JSONField(default=list, blank=True)
    output_after = models.TextField(blank=True)

    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)

    attempts = models.PositiveSmallIntegerField(default=0)
    # Changes at every claim: only the worker holding the current claim may finish the run.
    claim = models.UUIDField(null=True, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True)

    review_status = models.CharField(
        max_length=10, choices=AutofixReview.choices, default=AutofixReview.PENDING, db_index=True
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_note = models.TextField(blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "autofix run"
        indexes = [models.Index(fields=["owner", "-created_at"], name="autofix_run_owner_recent")]

    def __str__(self) -> str:
        return f"autofix {str(self.pk)[:8]} {self.runner or '?'} [{self.status}]"

    @property
    def is_finished(self) -> bool:
        return self.status in AUTOFIX_FINISHED

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class AutofixFixSource(models.TextChoices):
    LLM = "llm"
    HEURISTIC = "heuristic", "heuristic fallback"
    NONE = "none"


class AutofixIteration(models.Model):
    """One turn of the loop: the failures shown, the fix proposed, whether it applied, the result."""

    run = models.ForeignKey(AutofixRun, on_delete=models.CASCADE, related_name="iterations")
    number = models.PositiveSmallIntegerField()
    command = models.JSONField(default=list, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    failures = models.JSONField(default=list, blank=True)
    fix_source = models.CharField(
        max_length=10, choices=AutofixFixSource.choices, default=AutofixFixSource.NONE
    )
    llm_output = models.ForeignKey(
        "llmcore.LLMOutput", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    explanation = models.TextField(blank=True)
    patch = models.TextField(blank=True)
    applied = models.BooleanField(default=False)
    apply_error = models.TextField(blank=True)
    # The patch applied but made things no better, so it was taken back out of the scratch copy.
    reverted = models.BooleanField(default=False)
    exit_code_after = models.IntegerField(null=True, blank=True)
    timed_out_after = models.BooleanField(default=False)
    failure_count_after = models.PositiveIntegerField(null=True, blank=True)
    failures_after = models.JSONField(default=list, blank=True)
    output_after = models.TextField(blank=True)
    improvement_percent = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="autofix_iteration_unique")
        ]

    def __str__(self) -> str:
        return f"iteration {self.number} of {self.run_id}"
