from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html

from llmcore import rendering, services
from llmcore.models import Feedback, LLMOutput, PromptTemplate


class FeedbackFilter(admin.SimpleListFilter):
    title = "feedback"
    parameter_name = "feedback"

    def lookups(self, request, model_admin):
        return [("up", "has thumbs up"), ("down", "has thumbs down"), ("none", "no feedback")]

    def queryset(self, request, queryset):
        if self.value() == "up":
            return queryset.filter(feedback__vote=Feedback.UP).distinct()
        if self.value() == "down":
            return queryset.filter(feedback__vote=Feedback.DOWN).distinct()
        if self.value() == "none":
            return queryset.filter(feedback__isnull=True)
        return queryset


class FeedbackInline(admin.TabularInline):
    model = Feedback
    extra = 0
    fields = ("user", "vote", "comment", "updated_at")
    readonly_fields = ("user", "updated_at")


@admin.register(LLMOutput)
class LLMOutputAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "purpose_label",
        "status",
        "provider",
        "model",
        "attempts",
        "total_tokens",
        "cost_usd",
        "latency",
        "thumbs",
        "created_at",
    )
    list_filter = ("status", "provider", "model", "purpose", "template", FeedbackFilter, "offline")
    search_fields = ("id", "job_id", "subject", "prompt", "raw_response", "error")
    list_select_related = ("template", "user")
    readonly_fields = [f.name for f in LLMOutput._meta.fields] + ["rendered", "page_link"]
    date_hierarchy = "created_at"
    inlines = [FeedbackInline]
    actions = ["re_run", "thumbs_up", "thumbs_down"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "page_link",
                    "status",
                    "purpose",
                    "subject",
                    "template",
                    "user",
                    "priority",
                )
            },
        ),
        (
            "Answer",
            {
                "fields": (
                    "rendered",
                    "provider",
                    "model",
                    "offline",
                    "structured_mode",
                    "parsed",
                    "error",
                    "error_code",
                    "hook_error",
                )
            },
        ),
        (
            "Cost",
            {
                "fields": (
                    "input_tokens",
                    "output_tokens",
                    "cached_tokens",
                    "cost_usd",
                    "latency_ms",
                    "attempts",
                    "provider_chain",
                )
            },
        ),
        (
            "Request",
            {
                "classes": ["collapse"],
                "fields": (
                    "system_prompt",
                    "prompt",
                    "context",
                    "json_schema",
                    "requested_model",
                    "max_tokens",
                    "temperature",
                    "output_format",
                    "on_complete",
                ),
            },
        ),
        (
            "Lineage",
            {
                "fields": (
                    "parent",
                    "relation",
                    "job_id",
                    "created_at",
                    "started_at",
                    "completed_at",
                    "next_attempt_at",
                )
            },
        ),
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_up=Count("feedback", filter=Q(feedback__vote=Feedback.UP)),
                n_down=Count("feedback", filter=Q(feedback__vote=Feedback.DOWN)),
            )
        )

    def has_add_permission(self, request) -> bool:
        return False  # outputs come from jobs, not from hand-made rows

    @admin.display(description="id")
    def short_id(self, obj: LLMOutput) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="purpose")
    def purpose_label(self, obj: LLMOutput) -> str:
        return f"{obj.template.name} v{obj.template.version}" if obj.template_id else obj.purpose

    @admin.display(description="latency", ordering="latency_ms")
    def latency(self, obj: LLMOutput) -> str:
        return f"{obj.latency_ms:.0f} ms" if obj.latency_ms else "-"

    @admin.display(description="👍/👎")
    def thumbs(self, obj: LLMOutput) -> str:
        return f"{obj.n_up}/{obj.n_down}"

    @admin.display(description="output")
    def rendered(self, obj: LLMOutput):
        return rendering.render_output(obj)

    @admin.display(description="page")
    def page_link(self, obj: LLMOutput):
        return format_html(
            '<a href="{}">open the output page</a>', reverse("llm-output-page", args=[obj.pk])
        )

    @admin.action(description="Re-run selected outputs")
    def re_run(self, request, queryset):
        n = 0
        for output in queryset.select_related("template"):
            services.llm_output_rerun(output=output, user=request.user)
            n += 1
        self.message_user(request, f"Queued {n} re-run(s).", messages.SUCCESS)

    @admin.action(description="Thumbs up")
    def thumbs_up(self, request, queryset):
        for output in queryset:
            services.feedback_set(output=output, user=request.user, vote=Feedback.UP)
        self.message_user(request, "Marked thumbs up.")

    @admin.action(description="Thumbs down")
    def thumbs_down(self, request, queryset):
        for output in queryset:
            services.feedback_set(output=output, user=request.user, vote=Feedback.DOWN)
        self.message_user(request, "Marked thumbs down.")


class PromptTemplateForm(forms.ModelForm):
    class Meta:
        model = PromptTemplate
        fields = (
            "name",
            "description",
            "system_prompt",
            "body",
            "output_format",
            "json_schema",
            "model",
            "max_tokens",
            "temperature",
            "is_live",
        )

    def validate_constraints(self) -> None:
        # Saving never edits a row in place: save_model stores a new version and moves the live
        # label, so the one-live-version constraint cannot be judged on the unsaved form.
        return None


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    form = PromptTemplateForm
    list_display = (
        "name",
        "version",
        "is_live",
        "output_format",
        "model",
        "created_at",
        "created_by",
    )
    list_filter = ("is_live", "output_format")
    search_fields = ("name", "description", "body")
    list_select_related = ("created_by",)
    readonly_fields = ("version", "created_at", "created_by", "variables_used")
    actions = ["make_live"]

    @admin.display(description="variables")
    def variables_used(self, obj: PromptTemplate) -> str:
        return ", ".join(obj.variables) or "-"

    def save_model(self, request, obj, form, change):
        # Versions are immutable: saving (new or edited) always stores a new version.
        saved = services.prompt_template_save(
            name=obj.name,
            body=obj.body,
            system_prompt=obj.system_prompt,
            output_format=obj.output_format,
            json_schema=obj.json_schema,
            model=obj.model,
            max_tokens=obj.max_tokens,
            temperature=obj.temperature,
            description=obj.description,
            make_live=obj.is_live,
            user=request.user,
        )
        obj.pk, obj.version = saved.pk, saved.version
        if change:
            self.message_user(request, f"Saved as a new version: {saved}.")

    @admin.action(description="Make the selected version live")
    def make_live(self, request, queryset):
        for template in queryset:
            services.prompt_template_make_live(template=template)
        self.message_user(request, "Done.")
