from __future__ import annotations

from rest_framework import serializers

from issues.models import DESCRIPTION_MAX, TITLE_MAX, Issue, Priority, Status


def _clean_text(value: str, field: str) -> str:
    value = value.strip()
    if "\x00" in value:
        raise serializers.ValidationError(f"{field} must not contain NUL characters.")
    return value


class IssueCreateInput(serializers.Serializer):
    title = serializers.CharField(min_length=3, max_length=TITLE_MAX)
    description = serializers.CharField(min_length=1, max_length=DESCRIPTION_MAX)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.MEDIUM)

    def validate_title(self, value: str) -> str:
        return _clean_text(value, "title")

    def validate_description(self, value: str) -> str:
        return _clean_text(value, "description")


class IssueUpdateInput(serializers.Serializer):
    title = serializers.CharField(min_length=3, max_length=TITLE_MAX, required=False)
    description = serializers.CharField(min_length=1, max_length=DESCRIPTION_MAX, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    status = serializers.ChoiceField(choices=Status.choices, required=False)
    # Staff only (checked in the view): override the enrichment by hand.
    ai_summary = serializers.CharField(max_length=600, required=False, allow_blank=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=10, required=False
    )

    def validate(self, attrs: dict) -> dict:
        unknown = (
            set(self.initial_data) - set(self.fields)
            if isinstance(self.initial_data, dict)
            else set()
        )
        if unknown:
            raise serializers.ValidationError(
                {name: ["Unknown or read-only field."] for name in sorted(unknown)}
            )
        if not attrs:
            raise serializers.ValidationError({"non_field_errors": ["Nothing to update."]})
        return attrs


class IssueOutput(serializers.ModelSerializer):
    reporter = serializers.CharField(source="reporter.username", default=None)
    github = serializers.SerializerMethodField()
    enrichment = serializers.SerializerMethodField()

    class Meta:
        model = Issue
        fields = [
            "id",
            "title",
            "description",
            "priority",
            "status",
            "reporter",
            "source",
            "github",
            "kind",
            "ai_summary",
            "tags",
            "enrichment",
            "created_at",
            "updated_at",
        ]

    def get_github(self, obj: Issue) -> dict | None:
        if obj.source != "github":
            return None
        return {
            "repository": obj.github_repository,
            "number": obj.github_number,
            "url": obj.github_url,
        }

    def get_enrichment(self, obj: Issue) -> dict:
        return {
            "status": obj.enrichment_status,
            "source": obj.enrichment_source or None,
            "note": obj.enrichment_note,
            "llm_output_id": obj.llm_output_id,
            "enriched_at": obj.enriched_at,
        }


class EnrichOutput(serializers.Serializer):
    id = serializers.UUIDField()
    enrichment_status = serializers.CharField()
    llm_output_id = serializers.UUIDField(allow_null=True)
