from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from builds import services
from builds.models import Build, BuildReport


class ReportInline(admin.StackedInline):
    model = BuildReport
    extra = 0
    fields = (
        "type",
        "analysis",
        "recommendations",
        "confidence",
        "author",
        "llm_output",
        "created_at",
    )
    readonly_fields = ("author", "llm_output", "created_at")


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "status",
        "repository",
        "branch",
        "job_name",
        "error_count",
        "warning_count",
        "primary_error_short",
        "analysis_status",
        "created_at",
    )
    list_filter = ("status", "source", "analysis_status", "repository")
    search_fields = ("id", "repository", "branch", "commit_sha", "job_name", "primary_error")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    inlines = [ReportInline]
    readonly_fields = (
        "id",
        "log_link",
        "log_bytes",
        "log_chunks",
        "summary",
        "total_lines",
        "error_count",
        "warning_count",
        "primary_error",
        "primary_fingerprint",
        "analysis_status",
        "analysis_requested_at",
        "analysis_started_at",
        "analyzed_at",
        "analysis_error",
        "created_at",
        "updated_at",
    )
    actions = ["reanalyze"]

    @admin.display(description="id")
    def short_id(self, obj: Build) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="primary error")
    def primary_error_short(self, obj: Build) -> str:
        return (
            (obj.primary_error[:100] + "…") if len(obj.primary_error) > 100 else obj.primary_error
        )

    @admin.display(description="log")
    def log_link(self, obj: Build):
        return format_html(
            '<a href="{}">view the log ({} bytes)</a>',
            reverse("build-log-page", args=[obj.pk]),
            obj.log_bytes,
        )

    @admin.action(description="Analyse the log again")
    def reanalyze(self, request, queryset):
        n = 0
        for build in queryset:
            if build.is_finished:
                services.build_request_analysis(build=build)
                n += 1
        self.message_user(request, f"Queued analysis of {n} build(s).", messages.SUCCESS)
