from __future__ import annotations

from rest_framework import serializers

from spells.models import Spell


class MatchInput(serializers.Serializer):
    error_type = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    message = serializers.CharField(max_length=20_000, required=False, allow_blank=True, default="")
    context = serializers.CharField(
        max_length=100_000, required=False, allow_blank=True, default=""
    )
    fingerprints = serializers.ListField(
        child=serializers.CharField(max_length=64), max_length=50, default=list
    )
    limit = serializers.IntegerField(min_value=1, max_value=50, default=10)

    def validate(self, attrs: dict) -> dict:
        if not (
            attrs["error_type"] or attrs["message"] or attrs["context"] or attrs["fingerprints"]
        ):
            raise serializers.ValidationError({"message": ["Give at least an error message."]})
        return attrs


class SpellGenerateInput(serializers.Serializer):
    error_type = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    message = serializers.CharField(max_length=20_000)
    context = serializers.CharField(
        max_length=100_000, required=False, allow_blank=True, default=""
    )
    repository = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    pr_number = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    files_changed = serializers.ListField(
        child=serializers.CharField(max_length=500), max_length=500, default=list
    )


class SpellOutput(serializers.ModelSerializer):
    patterns = serializers.SerializerMethodField()
    reviewed_by = serializers.CharField(
        source="reviewed_by.username", default=None, allow_null=True, read_only=True
    )

    class Meta:
        model = Spell
        fields = [
            "id",
            "slug",
            "title",
            "description",
            "solution_code",
            "language",
            "error_type",
            "tags",
            "patterns",
            "fingerprints",
            "auto_generated",
            "confidence_score",
            "human_reviewed",
            "reviewed_by",
            "reviewed_at",
            "status",
            "source",
            "match_count",
            "last_matched_at",
            "created_at",
            "updated_at",
        ]

    def get_patterns(self, obj: Spell) -> list[dict]:
        return [{"regex": p.regex, "sample": p.sample} for p in obj.patterns.all()]
