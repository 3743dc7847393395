from __future__ import annotations

from rest_framework import serializers

from builds.models import Build, BuildReport, BuildStatus, ReportType

_SHA = r"^[0-9a-fA-F]{7,64}$"


class BuildMetadataInput(serializers.Serializer):
    status = serializers.ChoiceField(choices=BuildStatus.choices, default=BuildStatus.FAILED)
    repository = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    branch = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    commit_sha = serializers.RegexField(_SHA, required=False, allow_blank=True, default="")
    pull_request = serializers.IntegerField(
        min_value=1, required=False, allow_null=True, default=None
    )
    job_name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    job_url = serializers.URLField(max_length=500, required=False, allow_blank=True, default="")
    command = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    external_id = serializers.CharField(
        max_length=100, required=False, allow_blank=True, default=""
    )
    started_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    finished_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class BuildCreateJsonInput(BuildMetadataInput):
    log = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


class AppendLogJsonInput(serializers.Serializer):
    log = serializers.CharField(allow_blank=False, trim_whitespace=False)


class FinishInput(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=[s for s in BuildStatus.choices if s[0] not in ("queued", "running")]
    )
    finished_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class BuildOutput(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", default=None)
    analysis = serializers.SerializerMethodField()

    class Meta:
        model = Build
        fields = [
            "id",
            "status",
            "source",
            "owner",
            "repository",
            "branch",
            "commit_sha",
            "pull_request",
            "job_name",
            "job_url",
            "command",
            "started_at",
            "finished_at",
            "duration_seconds",
            "log_bytes",
            "total_lines",
            "error_count",
            "warning_count",
            "primary_error",
            "analysis",
            "created_at",
        ]

    def get_analysis(self, obj: Build) -> dict:
        return {
            "status": obj.analysis_status,
            "analyzed_at": obj.analyzed_at,
            "error": obj.analysis_error,
        }


class BuildDetailOutput(BuildOutput):
    summary = serializers.JSONField()

    class Meta(BuildOutput.Meta):
        fields = [*BuildOutput.Meta.fields, "summary"]


class ReportInput(serializers.Serializer):
    build_id = serializers.UUIDField()
    type = serializers.ChoiceField(choices=ReportType.choices)
    analysis = serializers.CharField(max_length=50_000)
    recommendations = serializers.ListField(
        child=serializers.CharField(max_length=2000), max_length=50, default=list
    )
    confidence = serializers.FloatField(min_value=0, max_value=1)


class ReportOutput(serializers.ModelSerializer):
    class Meta:
        model = BuildReport
        fields = ["id", "type", "analysis", "recommendations", "confidence", "created_at"]
