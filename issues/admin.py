from __future__ import annotations

from django.contrib import admin, messages

from issues import services
from issues.models import Issue


class TagFilter(admin.SimpleListFilter):
    title = "tag"
    parameter_name = "tag"

    def lookups(self, request, model_admin):
        return [(t, t) for t in services.vocabulary()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(tags__icontains=f'"{self.value()}"')
        return queryset


@admin.register(Issue)
class IssueAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "priority",
        "status",
        "kind",
        "tag_list",
        "enrichment_source",
        "enrichment_status",
        "source",
        "created_at",
    )
    list_filter = (
        TagFilter,
        "priority",
        "status",
        "kind",
        "enrichment_source",
        "enrichment_status",
        "source",
    )
    search_fields = ("title", "description", "ai_summary", "github_repository")
    list_select_related = ("reporter",)
    readonly_fields = (
        "id",
        "source",
        "github_repository",
        "github_number",
        "github_url",
        "github_author",
        "enrichment_status",
        "enrichment_source",
        "enrichment_note",
        "llm_output",
        "enriched_at",
        "labels_synced_at",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "title", "description", "priority", "status", "reporter")}),
        (
            "Enrichment",
            {
                "fields": (
                    "kind",
                    "ai_summary",
                    "tags",
                    "enrichment_status",
                    "enrichment_source",
                    "enrichment_note",
                    "llm_output",
                    "enriched_at",
                )
            },
        ),
        (
            "GitHub",
            {
                "classes": ["collapse"],
                "fields": (
                    "source",
                    "github_repository",
                    "github_number",
                    "github_url",
                    "github_author",
                    "labels_synced_at",
                ),
            },
        ),
        (None, {"fields": ("created_at", "updated_at")}),
    )
    actions = ["re_enrich"]

    @admin.display(description="tags")
    def tag_list(self, obj: Issue) -> str:
        return ", ".join(obj.tags or [])

    def save_model(self, request, obj, form, change):
        if change and ({"ai_summary", "tags"} & set(form.changed_data)):
            services.issue_update(
                issue=obj,
                data={
                    k: form.cleaned_data[k]
                    for k in ("ai_summary", "tags")
                    if k in form.changed_data
                },
                user=request.user,
            )
        else:
            super().save_model(request, obj, form, change)

    @admin.action(description="Re-enrich selected issues")
    def re_enrich(self, request, queryset):
        n = 0
        for issue in queryset:
            issue.enrichment_source = ""
            services.issue_enrich(issue=issue)
            n += 1
        self.message_user(request, f"Queued enrichment for {n} issue(s).", messages.SUCCESS)
