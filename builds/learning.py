"""The learning API for coding agents (paths and shapes of seed 001)."""

from __future__ import annotations

from types import SimpleNamespace

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.sessions.backends.base import SessionBase
from django.shortcuts import get_object_or_404
from django.utils.module_loading import import_string
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import codebase, logstore, services
from builds.models import Build, BuildStatus
from builds.serializers import ReportInput, ReportOutput
from grimoire import jobs
from grimoire.api import ApiError, query_int
from grimoire.schema import documented_error

MAX_LIMIT = 100


class SessionIdAuthentication(BaseAuthentication):
    """The seed's `session_id` parameter: accepted only when it names a live, signed-in session."""

    def authenticate(self, request: Request):
        session_id = request.query_params.get("session_id") or (
            request.data.get("session_id") if isinstance(request.data, dict) else None
        )
        if not session_id:
            return None
        store_class: type[SessionBase] = import_string(settings.SESSION_ENGINE + ".SessionStore")
        store = store_class(session_key=str(session_id)[:100])
        if not store.exists(store.session_key or ""):
            raise exceptions.AuthenticationFailed("session_id does not name a valid session.")
        # django.contrib.auth.get_user also checks the session's auth hash, so a session ended by
        # a password change no longer authenticates.
        user = get_user(SimpleNamespace(session=store))
        if not user.is_authenticated or not user.is_active:
            raise exceptions.AuthenticationFailed("session_id does not name a valid session.")
        return user, None


class LearningView(APIView):
    def get_authenticators(self):
        return [*super().get_authenticators(), SessionIdAuthentication()]


def _build_brief(build: Build) -> dict:
    return {
        "id": str(build.pk),
        "status": build.status,
        "repository": build.repository,
        "branch": build.branch,
        "commit_sha": build.commit_sha,
        "pull_request": build.pull_request,
        "job_name": build.job_name,
        "job_url": build.job_url,
        "command": build.command,
        "started_at": build.started_at,
        "finished_at": build.finished_at,
        "duration_seconds": build.duration_seconds,
        "error_count": build.error_count,
        "warning_count": build.warning_count,
        "primary_error": build.primary_error or None,
        "log_bytes": build.log_bytes,
    }


def log_summary(build: Build) -> dict:
    summary = build.summary or {}
    return {
        "total_lines": build.total_lines,
        "error_count": build.error_count,
        "warning_count": build.warning_count,
        # Strings, as in the seed's client examples; details with line numbers beside them.
        "errors": [e.get("text", "") for e in summary.get("errors", [])],
        "warnings": [w.get("text", "") for w in summary.get("warnings", [])],
        "error_details": summary.get("errors", []),
        "failures": summary.get("failures", []),
        "primary_error": summary.get("primary_error"),
        "excerpt": summary.get("excerpt"),
        "analysis_status": build.analysis_status,
    }


def _log(build: Build) -> tuple[str, bool]:
    return logstore.read_log_text(build.pk, limit=settings.LEARNING_MAX_LOG_BYTES)


class LearningBuildsView(LearningView):
    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int),
            OpenApiParameter("skip", int),
            OpenApiParameter("status", str),
            OpenApiParameter("include_log", bool),
            OpenApiParameter("session_id", str),
        ],
        responses=dict,
        summary="Recent builds",
    )
    def get(self, request: Request) -> Response:
        limit = query_int(request, "limit", 20, low=1, high=MAX_LIMIT)
        skip = query_int(request, "skip", 0, low=0, high=10**9)
        qs = Build.objects.order_by("-created_at")
        if value := request.query_params.get("status"):
            qs = qs.filter(status=value)
        include_log = request.query_params.get("include_log", "").lower() in ("1", "true", "yes")
        builds = []
        for build in qs[skip : skip + limit]:
            item = _build_brief(build)
            if include_log:
                item["log"], item["log_truncated"] = _log(build)
            builds.append(item)
        return Response(
            {"status": "ok", "builds": builds, "total": qs.count(), "skip": skip, "limit": limit}
        )


class LearningBuildView(LearningView):
    @extend_schema(
        parameters=[OpenApiParameter("session_id", str)],
        responses=dict,
        summary="One build with its log and analysis",
    )
    def get(self, request: Request, build_id) -> Response:
        build = get_object_or_404(Build, pk=build_id)
        item = _build_brief(build)
        item["log"], item["log_truncated"] = _log(build)
        item["log_summary"] = log_summary(build)
        item["llm_reports"] = ReportOutput(build.reports.all(), many=True).data
        return Response({"status": "ok", "build": item})


class LearningCodebaseView(LearningView):
    @extend_schema(
        parameters=[OpenApiParameter("session_id", str)],
        responses={200: dict, 503: documented_error(503)},
        summary="The workspace's structure",
    )
    def get(self, request: Request) -> Response:
        try:
            data = codebase.scan_codebase(settings.WORKSPACE_ROOT)
        except FileNotFoundError as exc:
            raise ApiError(str(exc), code="workspace_missing", status_code=503) from exc
        return Response({"status": "ok", "codebase": data})


class LearningReportView(LearningView):
    @extend_schema(request=ReportInput, responses={201: dict}, summary="Submit an analysis report")
    def post(self, request: Request) -> Response:
        data = ReportInput(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        build = Build.objects.filter(pk=d["build_id"]).first()
        if build is None:
            raise ApiError(
                "build_id: no such build.", details={"build_id": ["No such build."]}, code="invalid"
            )
        report = services.build_report_create(
            build=build,
            type=d["type"],
            analysis=d["analysis"],
            recommendations=d["recommendations"],
            confidence=d["confidence"],
            author=request.user,
        )
        return Response(
            {"status": "ok", "message": "report stored", "report_id": report.pk},
            status=status.HTTP_201_CREATED,
        )


class RunInput(serializers.Serializer):
    command = serializers.CharField(max_length=100, help_text="A name from BUILD_RUN_COMMANDS.")
    repository = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    branch = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class BuildRunView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        request=RunInput, responses={202: dict}, summary="Run an allowed command as a build (staff)"
    )
    def post(self, request: Request) -> Response:
        from builds.runner import allowed_commands

        data = RunInput(data=request.data)
        data.is_valid(raise_exception=True)
        name = data.validated_data["command"]
        if name not in allowed_commands():
            raise ApiError(
                f"command: {name!r} is not one of the allowed commands.",
                details={"command": [f"Allowed: {sorted(allowed_commands())}"]},
            )
        build = Build.objects.create(
            owner=request.user,
            source="runner",
            status=BuildStatus.QUEUED,
            command=name,
            repository=data.validated_data["repository"],
            branch=data.validated_data["branch"],
        )
        jobs.enqueue(
            "builds.tasks.run_build", str(build.pk), queue="low", task_name=f"run-{build.pk}"
        )
        return Response(
            {"status": "ok", "build_id": str(build.pk), "state": "queued"},
            status=status.HTTP_202_ACCEPTED,
        )
