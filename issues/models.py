from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

TITLE_MAX = 200
DESCRIPTION_MAX = 20_000


class Priority(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Status(models.TextChoices):
    OPEN = "open"
    IN_PROGRESS = "in_progress", "in progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Source(models.TextChoices):
    API = "api"
    GITHUB = "github"


class EnrichmentStatus(models.TextChoices):
    PENDING = "pending"  # the LLM job is queued or running; fallback values are shown meanwhile
    DONE = "done"
    FALLBACK = "fallback"  # the LLM could not help; the fallback enrichment is final


class EnrichmentSource(models.TextChoices):
    NONE = "", "none"
    LLM = "llm"
    FALLBACK = "fallback"
    STAFF = "staff"


class Issue(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=TITLE_MAX)
    description = models.TextField(max_length=DESCRIPTION_MAX)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="issues",
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    github_repository = models.CharField(max_length=200, blank=True)
    github_number = models.PositiveIntegerField(null=True, blank=True)
    github_url = models.URLField(blank=True)
    github_author = models.CharField(max_length=100, blank=True)

    kind = models.CharField(
        max_length=20, blank=True, help_text="bug, feature-request, question, documentation"
    )
    ai_summary = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    enrichment_status = models.CharField(
        max_length=10, choices=EnrichmentStatus.choices, default=EnrichmentStatus.PENDING
    )
    enrichment_source = models.CharField(
        max_length=10, choices=EnrichmentSource.choices, default=EnrichmentSource.NONE, blank=True
    )
    enrichment_note = models.CharField(max_length=300, blank=True)
    llm_output = models.ForeignKey(
        "llmcore.LLMOutput", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    enriched_at = models.DateTimeField(null=True, blank=True)
    labels_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["github_repository", "github_number"],
                condition=models.Q(source="github"),
                name="issue_github_unique",
            )
        ]

    def __str__(self) -> str:
        ref = (
            f"{self.github_repository}#{self.github_number} "
            if self.source == Source.GITHUB
            else ""
        )
        return f"{ref}{self.title}"
