from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone


class SpellStatus(models.TextChoices):
    DRAFT = "draft"
    APPROVED = "approved"
    REJECTED = "rejected"


class SpellSource(models.TextChoices):
    MANUAL = "manual"
    AUTO = "auto"
    IMPORTED = "imported"


class Spell(models.Model):
    """A known error and its fix."""

    slug = models.SlugField(
        max_length=120,
        unique=True,
        null=True,
        blank=True,
        help_text="Stable key for import/export.",
    )
    title = models.CharField(max_length=100)
    description = models.TextField(help_text="Why it happens and how to fix it.")
    solution_code = models.TextField(blank=True)
    language = models.CharField(max_length=30, blank=True, db_index=True)
    error_type = models.CharField(max_length=100, blank=True)
    tags = models.JSONField(default=list, blank=True)
    fingerprints = models.JSONField(
        default=list,
        blank=True,
        help_text="Error fingerprints it was created from or confirmed on.",
    )
    auto_generated = models.BooleanField(default=False)
    confidence_score = models.PositiveSmallIntegerField(
        default=100, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    human_reviewed = models.BooleanField(default=False)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=SpellStatus.choices, default=SpellStatus.DRAFT, db_index=True
    )
    source = models.CharField(
        max_length=10, choices=SpellSource.choices, default=SpellSource.MANUAL
    )
    match_count = models.PositiveIntegerField(default=0)
    last_matched_at = models.DateTimeField(null=True, blank=True)
    llm_output = models.ForeignKey(
        "llmcore.LLMOutput", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    origin_build = models.ForeignKey(
        "builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    origin_error = models.TextField(
        blank=True, help_text="The error line the spell was drafted from."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(
                fields=["auto_generated", "human_reviewed", "-confidence_score"],
                name="spell_review_queue",
            )
        ]

    def __str__(self) -> str:
        return self.title


class SpellPattern(models.Model):
    spell = models.ForeignKey(Spell, on_delete=models.CASCADE, related_name="patterns")
    regex = models.CharField(max_length=1000)
    sample = models.CharField(max_length=2000, help_text="A log line the pattern must match.")

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return self.regex


class SpellRevision(models.Model):
    """Edit history: a snapshot after each change, with who and when."""

    spell = models.ForeignKey(Spell, on_delete=models.CASCADE, related_name="revisions")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    action = models.CharField(max_length=30)
    snapshot = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} of spell {self.spell_id}"


class SpellMatch(models.Model):
    """A spell matched on a build's error."""

    build = models.ForeignKey(
        "builds.Build", on_delete=models.CASCADE, related_name="spell_matches"
    )
    spell = models.ForeignKey(Spell, on_delete=models.CASCADE, related_name="matches")
    score = models.FloatField()
    reason = models.CharField(max_length=20)
    matched_text = models.TextField(blank=True)
    line = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-score"]
        verbose_name_plural = "spell matches"
        constraints = [
            models.UniqueConstraint(fields=["build", "spell"], name="spell_match_once_per_build")
        ]

    def __str__(self) -> str:
        return f"{self.spell_id} on {self.build_id} ({self.reason})"


class GenerationStatus(models.TextChoices):
    DEFERRED = "deferred"  # over the hourly cap: picked up later
    PENDING = "pending"  # LLM job queued or running
    COMPLETED = "completed"
    REUSED = "reused"  # a similar spell existed
    FAILED = "failed"


class SpellGeneration(models.Model):
    """One drafting attempt per error fingerprint; the unique fingerprint is the dedupe."""

    fingerprint = models.CharField(max_length=64, unique=True)
    status = models.CharField(
        max_length=10,
        choices=GenerationStatus.choices,
        default=GenerationStatus.PENDING,
        db_index=True,
    )
    error = models.JSONField(default=dict, help_text="error_type, message, context, pr context")
    build = models.ForeignKey(
        "builds.Build", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    llm_output = models.ForeignKey(
        "llmcore.LLMOutput", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    spell = models.ForeignKey(
        Spell, null=True, blank=True, on_delete=models.SET_NULL, related_name="generations"
    )
    occurrences = models.PositiveIntegerField(default=1)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.fingerprint[:12]} [{self.status}]"


class DeliveryStatus(models.TextChoices):
    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    IGNORED = "ignored"
    FAILED = "failed"


class WebhookDelivery(models.Model):
    """Each GitHub delivery once (X-GitHub-Delivery is unique); a redelivery does no new work."""

    # Unique by a constraint, not unique=True: on PostgreSQL that would add a second
    # (varchar_pattern_ops) index nobody uses, and every delivery pays for each index it updates.
    delivery_id = models.CharField(max_length=100)
    event = models.CharField(max_length=50)
    action = models.CharField(max_length=50, blank=True)
    repository = models.CharField(max_length=200, blank=True)
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.RECEIVED
    )
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["delivery_id"], name="webhookdelivery_unique_delivery")
        ]

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}"


class PullRequest(models.Model):
    """PR context fetched from GitHub, attached to the builds of its head commit."""

    repository = models.CharField(max_length=200)
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=300, blank=True)
    head_sha = models.CharField(max_length=64, blank=True, db_index=True)
    state = models.CharField(max_length=20, blank=True)
    author = models.CharField(max_length=100, blank=True)
    files_changed = models.JSONField(default=list, blank=True)
    diff = models.TextField(blank=True, help_text="Bounded, secrets redacted.")
    fetch_status = models.CharField(max_length=20, default="pending")
    fetch_error = models.TextField(blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    commented_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["repository", "number"], name="pull_request_unique")
        ]

    def __str__(self) -> str:
        return f"{self.repository}#{self.number}"


class ReviewQueueManager(models.Manager["ReviewQueueSpell"]):
    def get_queryset(self):
        return (
            super()
            .get_queryset()
            .filter(auto_generated=True, human_reviewed=False)
            .exclude(status=SpellStatus.REJECTED)
        )


class ReviewQueueSpell(Spell):
    """Auto-generated spells nobody has reviewed yet: the admin's review queue."""

    objects = ReviewQueueManager()

    class Meta:
        proxy = True
        verbose_name = "spell awaiting review"
        verbose_name_plural = "review queue"
        ordering = ["-confidence_score", "-created_at"]
