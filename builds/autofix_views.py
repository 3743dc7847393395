"""The autofix API (seed 004's `POST /api/qa/run`): start a run, read it, download its patch.

Runs are private: their owner and staff see them; anyone else gets a 404, as if the run did not
exist.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import autofix
from builds.models import AUTOFIX_FINISHED, AutofixIteration, AutofixRun, AutofixStatus
from grimoire.api import ApiError


@extend_schema_field(
    {"oneOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
)
class CommandField(serializers.Field):
    """An argv list of strings, or one string split like a shell would (never run by one)."""

    def to_internal_value(self, data: Any) -> list[str]:
        try:
            argv = autofix.parse_command(data)
        except autofix.AutofixError as exc:
            raise serializers.ValidationError(exc.message) from None
        if not argv:
            raise serializers.ValidationError("must not be empty")
        return argv

    def to_representation(self, value: Any) -> Any:
        return value


class AutofixRunInput(serializers.Serializer):
    projectId = serializers.CharField(
        required=False, max_length=100, help_text="A folder directly under WORKSPACE_ROOT."
    )
    workspace = serializers.CharField(
        required=False,
        max_length=1000,
        help_text="A path under WORKSPACE_ROOT (relative to it or absolute), or a file:// URL "
        "of a git repository under it.",
    )
    command = CommandField(
        required=False,
        help_text='The test command: ["python", "-m", "pytest"] or "node --test". Detected '
        "from the workspace when left out.",
    )
    maxIterations = serializers.IntegerField(
        required=False, min_value=1, max_value=autofix.MAX_ITERATIONS_CAP
    )
    allowTestChanges = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("projectId" in attrs) == ("workspace" in attrs):
            raise serializers.ValidationError("Give either projectId or workspace.")
        return attrs


class AutofixRunCreatedOutput(serializers.Serializer):
    run_id = serializers.UUIDField()
    status = serializers.CharField()
    url = serializers.CharField()


class AutofixIterationOutput(serializers.ModelSerializer):
    llm_output_id = serializers.UUIDField(allow_null=True)

    class Meta:
        model = AutofixIteration
        fields = [
            "number",
            "command",
            "failure_count",
            "failures",
            "fix_source",
            "llm_output_id",
            "explanation",
            "patch",
            "applied",
            "apply_error",
            "reverted",
            "exit_code_after",
            "timed_out_after",
            "failure_count_after",
            "failures_after",
            "output_after",
            "improvement_percent",
            "started_at",
            "finished_at",
        ]


class AutofixRunOutput(serializers.ModelSerializer):
    run_id = serializers.UUIDField(source="id")
    iterations = AutofixIterationOutput(many=True)
    tokens = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()
    patch_url = serializers.SerializerMethodField()

    class Meta:
        model = AutofixRun
        fields = [
            "run_id",
            "status",
            "stop_reason",
            "message",
            "workspace",
            "source_kind",
            "runner",
            "command",
            "max_iterations",
            "allow_test_changes",
            "fallback_used",
            "iteration_count",
            "exit_code_before",
            "failure_count_before",
            "failures_before",
            "output_before",
            "exit_code_after",
            "failure_count_after",
            "failures_after",
            "output_after",
            "final_patch",
            "patch_url",
            "tokens",
            "cost_usd",
            "review",
            "created_at",
            "started_at",
            "finished_at",
            "iterations",
        ]

    def get_tokens(self, run: AutofixRun) -> dict[str, int]:
        return {
            "input": run.input_tokens,
            "output": run.output_tokens,
            "total": run.total_tokens,
        }

    def get_review(self, run: AutofixRun) -> dict[str, Any]:
        return {
            "status": run.review_status,
            "reviewed_by": run.reviewed_by.get_username() if run.reviewed_by else None,
            "reviewed_at": run.reviewed_at,
            "note": run.review_note,
        }

    def get_patch_url(self, run: AutofixRun) -> str | None:
        return f"/api/qa/runs/{run.pk}/patch" if run.final_patch else None


def _visible_run(request: Request, run_id: Any, *, with_iterations: bool = False) -> AutofixRun:
    qs = AutofixRun.objects.select_related("owner", "reviewed_by")
    if with_iterations:
        qs = qs.prefetch_related("iterations")
    if not request.user.is_staff:
        qs = qs.filter(owner_id=request.user.id)
    run = qs.filter(pk=run_id).first()
    if run is None:
        raise ApiError("No such autofix run.", code="not_found", status_code=404)
    return run


class QaRunView(APIView):
    @extend_schema(
        request=AutofixRunInput,
        responses={202: AutofixRunCreatedOutput},
        summary="Start an autofix run: test, fix, re-run in a scratch copy",
    )
    def post(self, request: Request) -> Response:
        data = AutofixRunInput(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        active = AutofixRun.objects.filter(
            owner_id=request.user.id, status__in=[AutofixStatus.QUEUED, AutofixStatus.RUNNING]
        ).count()
        limit = autofix.max_active_runs()
        if not request.user.is_staff and active >= limit:
            raise ApiError(
                f"You already have {active} autofix runs queued or running (limit {limit}).",
                code="throttled",
                status_code=429,
            )
        try:
            run = autofix.autofix_request(
                owner=request.user,
                workspace=d.get("workspace"),
                project_id=d.get("projectId"),
                command=d.get("command"),
                max_iterations=d.get("maxIterations"),
                allow_test_changes=d.get("allowTestChanges"),
            )
        except autofix.AutofixError as exc:
            field = exc.field or "non_field_errors"
            raise ApiError(
                f"{exc.field}: {exc.message}" if exc.field else exc.message,
                code=exc.code,
                details={field: [exc.message]},
            ) from None
        return Response(
            {"run_id": str(run.pk), "status": run.status, "url": f"/api/qa/runs/{run.pk}"},
            status=status.HTTP_202_ACCEPTED,
        )


class QaRunDetailView(APIView):
    @extend_schema(responses=AutofixRunOutput, summary="An autofix run with its iterations")
    def get(self, request: Request, run_id: Any) -> Response:
        return Response(AutofixRunOutput(_visible_run(request, run_id, with_iterations=True)).data)


class QaRunPatchView(APIView):
    @extend_schema(
        responses={(200, "text/x-diff"): OpenApiTypes.STR},
        summary="The run's final patch as a .patch file (apply with git apply)",
    )
    def get(self, request: Request, run_id: Any) -> HttpResponse:
        run = _visible_run(request, run_id)
        if run.status not in AUTOFIX_FINISHED:
            raise ApiError("The run has not finished yet.", code="conflict", status_code=409)
        if not run.final_patch:
            raise ApiError("This run proposed no patch.", code="no_patch", status_code=404)
        response = HttpResponse(run.final_patch, content_type="text/x-diff; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="autofix-{run.pk}.patch"'
        return response
