from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
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


# --- Autofix runs: review the proposed patches --------------------------------------------------

from django.http import HttpResponse  # noqa: E402
from django.utils.html import format_html_join  # noqa: E402

from builds import autofix  # noqa: E402  (registers the autofix sweeper in every process)
from builds.models import AutofixIteration, AutofixReview, AutofixRun  # noqa: E402

_DIFF_STYLES = {
    "+": "color:#116329;background:#dafbe1",
    "-": "color:#82071e;background:#ffebe9",
    "@": "color:#0550ae;background:#ddf4ff",
}
_PRE_STYLE = "white-space:pre;font-family:monospace;font-size:12px;max-height:40em;overflow:auto"


def diff_html(diff: str):
    """A unified diff as coloured, escaped HTML (every line goes through format_html)."""
    if not diff:
        return "-"

    def style(line: str) -> str:
        if line.startswith(("+++", "---", "diff --git")):
            return "font-weight:bold"
        return _DIFF_STYLES.get(line[:1], "")

    rows = format_html_join(
        "", '<span style="{}">{}</span>\n', ((style(line), line) for line in diff.splitlines())
    )
    return format_html('<div style="{}">{}</div>', _PRE_STYLE, rows)


def output_html(text: str):
    return format_html('<div style="{}">{}</div>', _PRE_STYLE, text) if text else "-"


def _patch_response(runs) -> HttpResponse:
    runs = [run for run in runs if run.final_patch]
    if len(runs) == 1:
        body, name = runs[0].final_patch, f"autofix-{runs[0].pk}.patch"
    else:
        body = "".join(
            f"# autofix run {run.pk} ({run.workspace}, {run.status})\n{run.final_patch}\n"
            for run in runs
        )
        name = "autofix-patches.patch"
    response = HttpResponse(body, content_type="text/x-diff; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


class AutofixIterationInline(admin.StackedInline):
    model = AutofixIteration
    extra = 0
    can_delete = False
    show_change_link = True
    fields = (
        "number",
        "failure_count",
        "fix_source",
        "llm_output",
        "explanation",
        "patch_display",
        "applied",
        "apply_error",
        "reverted",
        "exit_code_after",
        "failure_count_after",
        "improvement_percent",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("llm_output")

    @admin.display(description="patch")
    def patch_display(self, obj: AutofixIteration):
        return diff_html(obj.patch)


@admin.register(AutofixRun)
class AutofixRunAdmin(admin.ModelAdmin):
    list_display = (
        "short_id",
        "workspace",
        "runner",
        "status",
        "stop_reason",
        "iteration_count",
        "failures",
        "fallback_used",
        "review_status",
        "owner",
        "cost_usd",
        "created_at",
    )
    list_filter = ("status", "stop_reason", "review_status", "runner", "fallback_used")
    search_fields = ("id", "workspace", "source_path", "message")
    list_select_related = ("owner", "reviewed_by")
    date_hierarchy = "created_at"
    inlines = [AutofixIterationInline]
    actions = ["export_patch", "mark_accepted", "mark_rejected"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "owner",
                    "workspace",
                    "source_path",
                    "source_kind",
                    "runner",
                    "command",
                    "status",
                    "stop_reason",
                    "message",
                    "fallback_used",
                    "iteration_count",
                    "max_iterations",
                    "allow_test_changes",
                )
            },
        ),
        ("Proposed patch", {"fields": ("patch_display",)}),
        (
            "Review",
            {"fields": ("review_status", "review_note", "reviewed_by", "reviewed_at")},
        ),
        (
            "Tests before",
            {
                "fields": (
                    "exit_code_before",
                    "failure_count_before",
                    "failures_before",
                    "output_before_display",
                )
            },
        ),
        (
            "Tests after",
            {
                "fields": (
                    "exit_code_after",
                    "failure_count_after",
                    "failures_after",
                    "output_after_display",
                )
            },
        ),
        (
            "Cost and timing",
            {
                "fields": (
                    "input_tokens",
                    "output_tokens",
                    "cost_usd",
                    "attempts",
                    "created_at",
                    "started_at",
                    "finished_at",
                )
            },
        ),
    )
    # Everything shown is read-only except the reviewer's verdict.
    editable_fields = ("review_status", "review_note")

    def get_readonly_fields(self, request, obj=None):
        return [f for f in flatten_fieldsets(self.fieldsets) if f not in self.editable_fields]

    def has_add_permission(self, request) -> bool:
        return False  # runs start from the API or `manage.py autofix`

    @admin.display(description="id")
    def short_id(self, obj: AutofixRun) -> str:
        return str(obj.pk)[:8]

    @admin.display(description="failing before → after")
    def failures(self, obj: AutofixRun) -> str:
        before = "?" if obj.failure_count_before is None else obj.failure_count_before
        after = "?" if obj.failure_count_after is None else obj.failure_count_after
        return f"{before} → {after}"

    @admin.display(description="final patch")
    def patch_display(self, obj: AutofixRun):
        return diff_html(obj.final_patch)

    @admin.display(description="test output before")
    def output_before_display(self, obj: AutofixRun):
        return output_html(obj.output_before)

    @admin.display(description="test output after")
    def output_after_display(self, obj: AutofixRun):
        return output_html(obj.output_after)

    def save_model(self, request, obj: AutofixRun, form, change) -> None:
        # The review fields are the only editable ones; who decided and when is recorded.
        # Only those fields are written: the run may still be going, and a full save() would
        # put back the status the page was loaded with.
        if not change:
            super().save_model(request, obj, form, change)
        elif "review_status" in form.changed_data:
            autofix.autofix_review(
                run=obj, user=request.user, decision=obj.review_status, note=obj.review_note
            )
        elif "review_note" in form.changed_data:
            obj.save(update_fields=["review_note", "updated_at"])

    @admin.action(description="Export the patch (.patch file)")
    def export_patch(self, request, queryset):
        runs = list(queryset.exclude(final_patch=""))
        if not runs:
            self.message_user(request, "None of these runs proposed a patch.", messages.WARNING)
            return None
        return _patch_response(runs)

    def _review(self, request, queryset, decision: str) -> None:
        n = 0
        for run in queryset:
            autofix.autofix_review(run=run, user=request.user, decision=decision)
            n += 1
        self.message_user(request, f"Marked {n} run(s) {decision}.", messages.SUCCESS)

    @admin.action(description="Mark the patch accepted")
    def mark_accepted(self, request, queryset):
        self._review(request, queryset, AutofixReview.ACCEPTED)

    @admin.action(description="Mark the patch rejected")
    def mark_rejected(self, request, queryset):
        self._review(request, queryset, AutofixReview.REJECTED)


@admin.register(AutofixIteration)
class AutofixIterationAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "number",
        "fix_source",
        "failure_count",
        "applied",
        "reverted",
        "failure_count_after",
        "improvement_percent",
        "started_at",
    )
    list_filter = ("fix_source", "applied", "reverted")
    list_select_related = ("run", "llm_output")
    search_fields = ("run__id", "explanation", "apply_error")
    fields = (
        "run",
        "number",
        "command",
        "failure_count",
        "failures",
        "fix_source",
        "llm_output",
        "explanation",
        "patch_display",
        "applied",
        "apply_error",
        "reverted",
        "exit_code_after",
        "timed_out_after",
        "failure_count_after",
        "failures_after",
        "output_after_display",
        "improvement_percent",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="patch")
    def patch_display(self, obj: AutofixIteration):
        return diff_html(obj.patch)

    @admin.display(description="test output after")
    def output_after_display(self, obj: AutofixIteration):
        return output_html(obj.output_after)
