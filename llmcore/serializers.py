from __future__ import annotations

from rest_framework import serializers

from llmcore.models import Feedback, LLMOutput, OutputFormat, Priority

MAX_CONTEXT_BYTES = 1_000_000


class JobSubmitInput(serializers.Serializer):
    template = serializers.CharField(
        required=False, max_length=100, help_text="Template name (its live version) or id."
    )
    template_name = serializers.CharField(required=False, max_length=100)
    prompt = serializers.CharField(required=False, max_length=200_000)
    system_prompt = serializers.CharField(required=False, allow_blank=True, max_length=50_000)
    context = serializers.DictField(required=False, default=dict)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    format = serializers.ChoiceField(choices=OutputFormat.choices, required=False)
    json_schema = serializers.DictField(required=False)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.DEFAULT)

    def validate_context(self, value: dict) -> dict:
        import json

        if len(json.dumps(value, default=str)) > MAX_CONTEXT_BYTES:
            raise serializers.ValidationError("context is larger than 1 MB.")
        return value

    def validate(self, attrs: dict) -> dict:
        name = attrs.get("template") or attrs.get("template_name")
        if bool(name) == bool(attrs.get("prompt")):
            raise serializers.ValidationError(
                {"template": "Give exactly one of template (or template_name) and prompt."}
            )
        attrs["template_ref"] = name
        return attrs


class JobSubmitOutput(serializers.Serializer):
    job_id = serializers.UUIDField()
    output_id = serializers.UUIDField()
    status = serializers.CharField()
    estimated_completion = serializers.DateTimeField()


class GenerateInput(serializers.Serializer):
    """Seed 004's code-generation request."""

    prompt = serializers.CharField(max_length=50_000)
    language = serializers.CharField(required=False, allow_blank=True, max_length=50, default="")
    context = serializers.CharField(
        required=False, allow_blank=True, max_length=100_000, default=""
    )
    model = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)
    temperature = serializers.FloatField(required=False, min_value=0, max_value=2)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.HIGH)


class AttemptSerializer(serializers.Serializer):
    provider = serializers.CharField()
    model = serializers.CharField(allow_blank=True)
    status = serializers.CharField()
    http_status = serializers.IntegerField(allow_null=True, required=False)
    error = serializers.CharField(allow_null=True, required=False)
    latency_ms = serializers.FloatField(required=False)


class OutputSerializer(serializers.ModelSerializer):
    template = serializers.SerializerMethodField()
    format = serializers.CharField(source="output_format")
    usage = serializers.SerializerMethodField()
    cost_usd = serializers.FloatField()
    feedback = serializers.SerializerMethodField()
    provider_chain = AttemptSerializer(many=True)

    class Meta:
        model = LLMOutput
        fields = [
            "id",
            "job_id",
            "status",
            "template",
            "purpose",
            "subject",
            "format",
            "priority",
            "requested_model",
            "provider",
            "model",
            "offline",
            "prompt",
            "system_prompt",
            "raw_response",
            "parsed",
            "attempts",
            "provider_chain",
            "usage",
            "cost_usd",
            "latency_ms",
            "error",
            "error_code",
            "parent",
            "relation",
            "feedback",
            "created_at",
            "started_at",
            "completed_at",
            "next_attempt_at",
        ]

    def get_template(self, obj: LLMOutput) -> dict | None:
        if not obj.template_id:
            return None
        return {"id": obj.template_id, "name": obj.template.name, "version": obj.template.version}

    def get_usage(self, obj: LLMOutput) -> dict:
        return {
            "input_tokens": obj.input_tokens,
            "output_tokens": obj.output_tokens,
            "cached_tokens": obj.cached_tokens,
        }

    def get_feedback(self, obj: LLMOutput) -> dict:
        votes = [f.vote for f in obj.feedback.all()]  # prefetched in list views
        request = self.context.get("request")
        mine = next(
            (f.vote for f in obj.feedback.all() if request and f.user_id == request.user.id), None
        )
        return {"up": votes.count(Feedback.UP), "down": votes.count(Feedback.DOWN), "mine": mine}


class OutputListSerializer(OutputSerializer):
    class Meta(OutputSerializer.Meta):
        fields = [
            f
            for f in OutputSerializer.Meta.fields
            if f not in ("prompt", "system_prompt", "raw_response")
        ]


class FeedbackInput(serializers.Serializer):
    vote = serializers.ChoiceField(choices=["up", "down", "1", "-1"], help_text="up or down.")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    def validate_vote(self, value: object) -> int:
        return Feedback.UP if value in ("up", "1") else Feedback.DOWN


class FeedbackOutput(serializers.Serializer):
    output_id = serializers.UUIDField()
    vote = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)
    up = serializers.IntegerField()
    down = serializers.IntegerField()


class RegenerateInput(serializers.Serializer):
    context = serializers.DictField(required=False, default=dict)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")

    validate_context = JobSubmitInput.validate_context

    def validate(self, attrs: dict) -> dict:
        if not attrs["context"] and not attrs["model"]:
            raise serializers.ValidationError(
                {"context": "Give a new context and/or a model to regenerate with."}
            )
        return attrs
