from __future__ import annotations

import re
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


class OutputFormat(models.TextChoices):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"


class Priority(models.TextChoices):
    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


class MissingVariablesError(ValueError):
    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"missing template variables: {', '.join(missing)}")
        self.missing = missing


def _lookup(context: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    value: Any = context
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return False, None
    return True, value


def template_variables(text: str) -> list[str]:
    """Variable names used as `{{name}}` (dotted names reach into nested dicts), in order."""
    return list(dict.fromkeys(_VARIABLE.findall(text)))


def render_template(text: str, context: dict[str, Any]) -> str:
    """Replace `{{var}}`; every variable must be in `context` (a missing one is an error)."""
    missing = [name for name in template_variables(text) if not _lookup(context, name)[0]]
    if missing:
        raise MissingVariablesError(missing)

    def substitute(match: re.Match[str]) -> str:
        value = _lookup(context, match.group(1))[1]
        return value if isinstance(value, str) else ("" if value is None else str(value))

    # One pass: a value containing "{{x}}" is inserted as is, never interpolated again.
    return _VARIABLE.sub(substitute, text)


class PromptTemplate(models.Model):
    """One immutable version of a named prompt; `is_live` marks the version used by name."""

    name = models.SlugField(max_length=100)
    version = models.PositiveIntegerField(editable=False)
    description = models.CharField(max_length=300, blank=True)
    system_prompt = models.TextField(blank=True)
    body = models.TextField(help_text="The prompt, with {{variable}} placeholders.")
    output_format = models.CharField(
        max_length=10, choices=OutputFormat.choices, default=OutputFormat.TEXT
    )
    json_schema = models.JSONField(null=True, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Default model (optional).")
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    temperature = models.FloatField(null=True, blank=True)
    is_live = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="llm_template_version_unique"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(is_live=True), name="llm_template_one_live"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}{' (live)' if self.is_live else ''}"

    @property
    def variables(self) -> list[str]:
        return template_variables(self.system_prompt + "\n" + self.body)

    def render(self, context: dict[str, Any]) -> tuple[str, str]:
        """(system prompt, prompt) with `context` filled in; MissingVariablesError if incomplete."""
        missing = [v for v in self.variables if not _lookup(context, v)[0]]
        if missing:
            raise MissingVariablesError(missing)
        return render_template(self.system_prompt, context), render_template(self.body, context)


class JobStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED)


class LLMOutput(models.Model):
    """One LLM job and its result: what was asked, who answered, what it cost, how it went."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The id of the queued job (the django-q2 task name), stable across retries.
    job_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="llm_outputs",
    )
    template = models.ForeignKey(
        PromptTemplate, null=True, blank=True, on_delete=models.PROTECT, related_name="outputs"
    )
    # What asked for this output, e.g. "spells.draft" or "issues.enrich"; for metrics and filters.
    purpose = models.CharField(max_length=100, blank=True, db_index=True)
    subject = models.CharField(max_length=200, blank=True, help_text="e.g. issue:12, build:<id>")
    context = models.JSONField(default=dict, blank=True)
    output_format = models.CharField(
        max_length=10, choices=OutputFormat.choices, default=OutputFormat.TEXT
    )
    json_schema = models.JSONField(null=True, blank=True)
    system_prompt = models.TextField(blank=True)
    prompt = models.TextField(help_text="The final prompt as sent (secrets redacted).")
    # For jobs submitted as a raw prompt: the prompt before `{{var}}` rendering, so a regenerate
    # with a new context renders it again.
    source_prompt = models.TextField(blank=True)
    source_system_prompt = models.TextField(blank=True)
    requested_model = models.CharField(max_length=200, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    temperature = models.FloatField(null=True, blank=True)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.DEFAULT)

    status = models.CharField(
        max_length=12, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Changes at every claim: only the worker holding the current claim may finish the job.
    claim = models.UUIDField(null=True, blank=True, editable=False)

    provider = models.CharField(max_length=50, blank=True, db_index=True)
    model = models.CharField(max_length=200, blank=True, db_index=True)
    offline = models.BooleanField(default=False)
    raw_response = models.TextField(blank=True)
    parsed = models.JSONField(null=True, blank=True)
    provider_chain = models.JSONField(default=list, blank=True)
    structured_mode = models.CharField(max_length=30, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    error_code = models.CharField(max_length=50, blank=True)

    on_complete = models.CharField(
        max_length=200, blank=True, help_text="Dotted path called with the output on success."
    )
    hook_error = models.TextField(blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    relation = models.CharField(
        max_length=12, blank=True, choices=[("re_run", "re-run"), ("regenerate", "regenerate")]
    )

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "LLM output"
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="llm_output_due"),
            models.Index(fields=["user", "-created_at"], name="llm_output_user_recent"),
        ]

    def __str__(self) -> str:
        label = self.template.name if self.template_id else (self.purpose or "prompt")
        return f"{label} [{self.status}] {str(self.id)[:8]}"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Feedback(models.Model):
    """One vote per user per output (changeable), with an optional comment."""

    UP, DOWN = 1, -1

    output = models.ForeignKey(LLMOutput, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="llm_feedback"
    )
    vote = models.SmallIntegerField(choices=[(UP, "thumbs up"), (DOWN, "thumbs down")])
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["output", "user"], name="llm_feedback_one_per_user")
        ]

    def __str__(self) -> str:
        return f"{'👍' if self.vote == self.UP else '👎'} {self.user} on {self.output_id}"
