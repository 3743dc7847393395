from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from llmcore.selectors import llm_metrics
from spells import matching, selectors, services
from spells.models import (
    PullRequest,
    ReviewQueueSpell,
    Spell,
    SpellGeneration,
    SpellMatch,
    SpellPattern,
    SpellRevision,
    SpellStatus,
    WebhookDelivery,
)


class ConfidenceBand(admin.SimpleListFilter):
    title = "confidence"
    parameter_name = "confidence"

    def lookups(self, request, model_admin):
        return [("high", "high (≥ 80)"), ("medium", "medium (50-79)"), ("low", "low (< 50)")]

    def queryset(self, request, queryset):
        return {
            "high": queryset.filter(confidence_score__gte=80),
            "medium": queryset.filter(confidence_score__gte=50, confidence_score__lt=80),
            "low": queryset.filter(confidence_score__lt=50),
        }.get(self.value(), queryset)


class PatternForm(forms.ModelForm):
    class Meta:
        model = SpellPattern
        fields = ("regex", "sample")

    def clean(self):
        data = super().clean()
        if data.get("regex") and data.get("sample"):
            problems = matching.validate_pattern(data["regex"], data["sample"])
            if problems:
                raise forms.ValidationError("; ".join(problems))
        return data


class PatternInline(admin.TabularInline):
    model = SpellPattern
    form = PatternForm
    extra = 0


class RevisionInline(admin.TabularInline):
    model = SpellRevision
    extra = 0
    fields = ("created_at", "user", "action")
    readonly_fields = fields
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class SpellAdminBase(admin.ModelAdmin):
    list_display = (
        "title",
        "status",
        "language",
        "confidence_score",
        "auto_generated",
        "human_reviewed",
        "match_count",
        "updated_at",
    )
    list_filter = (
        "status",
        ConfidenceBand,
        "language",
        "auto_generated",
        "human_reviewed",
        "source",
    )
    search_fields = ("title", "description", "error_type", "slug")
    list_select_related = ("reviewed_by",)
    inlines = [PatternInline, RevisionInline]
    readonly_fields = (
        "auto_generated",
        "human_reviewed",
        "reviewed_by",
        "reviewed_at",
        "match_count",
        "last_matched_at",
        "origin",
        "llm_output_link",
        "created_at",
        "updated_at",
    )
    actions = ["approve", "reject", "mark_reviewed"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "title",
                    "status",
                    "description",
                    "solution_code",
                    "language",
                    "error_type",
                    "tags",
                    "slug",
                )
            },
        ),
        (
            "Origin",
            {
                "fields": (
                    "origin",
                    "llm_output_link",
                    "fingerprints",
                    "source",
                    "auto_generated",
                    "confidence_score",
                )
            },
        ),
        (
            "Review",
            {
                "fields": (
                    "human_reviewed",
                    "reviewed_by",
                    "reviewed_at",
                    "match_count",
                    "last_matched_at",
                    "created_at",
                    "updated_at",
                )
            },
        ),
    )

    @admin.display(description="originating error")
    def origin(self, obj: Spell):
        if not obj.origin_build_id:
            return obj.origin_error or "-"
        return format_html(
            '<code>{}</code><br><a href="{}">open the build log</a>',
            obj.origin_error[:500],
            reverse("build-log-page", args=[obj.origin_build_id]),
        )

    @admin.display(description="LLM output")
    def llm_output_link(self, obj: Spell):
        if not obj.llm_output_id:
            return "-"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("llm-output-page", args=[obj.llm_output_id]),
            str(obj.llm_output_id)[:8],
        )

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        if change and "status" in form.changed_data and form.instance.status != SpellStatus.DRAFT:
            # Approving or rejecting in the form is a review, as with the list actions.
            services.spell_review(
                spell=form.instance, user=request.user, status=form.instance.status
            )
            return
        # After the patterns are saved too, so the revision's snapshot is complete.
        services.spell_record_revision(
            spell=form.instance, user=request.user, action="edited" if change else "created"
        )

    def _review(self, request, queryset, status):
        n = 0
        for spell in queryset:
            services.spell_review(spell=spell, user=request.user, status=status)
            n += 1
        self.message_user(request, f"{n} spell(s) updated.", messages.SUCCESS)

    @admin.action(description="Approve")
    def approve(self, request, queryset):
        self._review(request, queryset, SpellStatus.APPROVED)

    @admin.action(description="Reject")
    def reject(self, request, queryset):
        self._review(request, queryset, SpellStatus.REJECTED)

    @admin.action(description="Mark reviewed")
    def mark_reviewed(self, request, queryset):
        self._review(request, queryset, None)

    def get_urls(self):
        urls = super().get_urls()
        if self.model is Spell:
            urls = [
                path(
                    "metrics/", self.admin_site.admin_view(self.metrics_view), name="spells_metrics"
                ),
                *urls,
            ]
        return urls

    def metrics_view(self, request):
        context = {
            **self.admin_site.each_context(request),
            "title": "Metrics",
            "subtitle": None,
            "spells": selectors.spell_metrics(),
            "llm": llm_metrics(),
        }
        return TemplateResponse(request, "spells/metrics.html", context)


@admin.register(Spell)
class SpellAdmin(SpellAdminBase):
    pass


@admin.register(ReviewQueueSpell)
class ReviewQueueAdmin(SpellAdminBase):
    list_display = ("title", "confidence_score", "language", "error_type", "status", "created_at")
    ordering = ("-confidence_score", "-created_at")


@admin.register(SpellGeneration)
class SpellGenerationAdmin(admin.ModelAdmin):
    list_display = ("fingerprint", "status", "occurrences", "spell", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("fingerprint", "note")
    list_select_related = ("spell",)
    readonly_fields = [f.name for f in SpellGeneration._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # recorded by the system, not entered by hand


@admin.register(SpellMatch)
class SpellMatchAdmin(admin.ModelAdmin):
    list_display = ("spell", "build", "reason", "score", "line", "created_at")
    list_filter = ("reason",)
    list_select_related = ("spell", "build")
    readonly_fields = [f.name for f in SpellMatch._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # recorded by the system, not entered by hand


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "delivery_id",
        "event",
        "action",
        "repository",
        "status",
        "attempts",
        "received_at",
    )
    list_filter = ("event", "status")
    search_fields = ("delivery_id", "repository")
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # recorded by the system, not entered by hand


@admin.register(PullRequest)
class PullRequestAdmin(admin.ModelAdmin):
    list_display = ("__str__", "title", "head_sha", "fetch_status", "fetched_at")
    search_fields = ("repository", "title", "head_sha")
    readonly_fields = [f.name for f in PullRequest._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # recorded by the system, not entered by hand
