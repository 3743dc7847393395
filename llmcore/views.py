from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grimoire.api import ApiError, query_int
from llmcore import rendering, selectors, services
from llmcore.models import Feedback, LLMOutput, MissingVariablesError, PromptTemplate
from llmcore.serializers import (
    FeedbackInput,
    FeedbackOutput,
    GenerateInput,
    JobSubmitInput,
    JobSubmitOutput,
    OutputListSerializer,
    OutputSerializer,
    RegenerateInput,
)


def _submitted(output: LLMOutput) -> Response:
    body = JobSubmitOutput(
        {
            "job_id": output.job_id,
            "output_id": output.pk,
            "status": "queued",
            "estimated_completion": services.estimated_completion(output),
        }
    ).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


def _resolve_template(ref: str) -> PromptTemplate:
    if ref.isdigit():
        template = PromptTemplate.objects.filter(pk=int(ref)).first()
        if template:
            return template
    try:
        return services.live_template(ref)
    except services.TemplateNotFoundError as exc:
        raise ApiError(str(exc), code="invalid", details={"template": [str(exc)]}) from exc


def _submit(**kwargs) -> LLMOutput:
    try:
        return services.llm_job_submit(**kwargs)
    except MissingVariablesError as exc:
        raise ApiError(
            f"context: missing template variables: {', '.join(exc.missing)}",
            details={"context": {"missing": exc.missing}},
        ) from exc
    except ValueError as exc:
        raise ApiError(str(exc)) from exc


class JobSubmitView(APIView):
    @extend_schema(
        request=JobSubmitInput, responses={202: JobSubmitOutput}, summary="Queue an LLM job"
    )
    def post(self, request: Request) -> Response:
        data = JobSubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        template = _resolve_template(d["template_ref"]) if d.get("template_ref") else None
        output = _submit(
            template=template,
            prompt=d.get("prompt"),
            system_prompt=d.get("system_prompt"),
            context=d["context"],
            user=request.user,
            model=d["model"],
            output_format=d.get("format"),
            json_schema=d.get("json_schema"),
            max_tokens=d.get("max_tokens"),
            temperature=d.get("temperature"),
            priority=d["priority"],
            purpose="api" if template is None else "",
        )
        return _submitted(output)


GENERATE_SYSTEM = (
    "You are a senior software engineer. Write correct, idiomatic, production-quality code. "
    "Answer with the code in one fenced block, followed by a short explanation."
)


class GenerateView(APIView):
    """Seed 004's `POST /api/ai/generate`, run as an LLM job."""

    @extend_schema(request=GenerateInput, responses={202: JobSubmitOutput}, summary="Generate code")
    def post(self, request: Request) -> Response:
        data = GenerateInput(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        parts = []
        if d["language"]:
            parts.append(f"Language: {d['language']}")
        if d["context"]:
            parts.append(f"Context:\n{d['context']}")
        parts.append(f"Task:\n{d['prompt']}")
        output = _submit(
            prompt="\n\n".join(parts),
            system_prompt=GENERATE_SYSTEM,
            render_prompt=False,
            user=request.user,
            model=d["model"],
            output_format="markdown",
            max_tokens=d.get("max_tokens"),
            temperature=d.get("temperature"),
            priority=d["priority"],
            purpose="ai.generate",
        )
        return _submitted(output)


class OutputListView(ListAPIView):
    serializer_class = OutputListSerializer

    def get_queryset(self):
        qs = selectors.outputs_visible_to(self.request.user)
        params = self.request.query_params
        if value := params.get("status"):
            qs = qs.filter(status=value)
        if value := params.get("template"):
            qs = qs.filter(template__name=value) | qs.filter(purpose=value)
        if value := params.get("model"):
            qs = qs.filter(model=value)
        if value := params.get("provider"):
            qs = qs.filter(provider=value)
        return qs.order_by("-created_at")


class OutputDetailView(RetrieveAPIView):
    serializer_class = OutputSerializer
    lookup_url_kwarg = "output_id"

    def get_queryset(self):
        return selectors.outputs_visible_to(self.request.user)


def _visible_output(request: Request, output_id) -> LLMOutput:
    # Someone else's output is "not found", not "forbidden": its existence is not revealed.
    return get_object_or_404(selectors.outputs_visible_to(request.user), pk=output_id)


class FeedbackView(APIView):
    @extend_schema(request=FeedbackInput, responses=FeedbackOutput, summary="Thumbs up/down")
    def post(self, request: Request, output_id) -> Response:
        output = _visible_output(request, output_id)
        data = FeedbackInput(data=request.data)
        data.is_valid(raise_exception=True)
        fb = services.feedback_set(
            output=output,
            user=request.user,
            vote=data.validated_data["vote"],
            comment=data.validated_data["comment"],
        )
        votes = list(output.feedback.values_list("vote", flat=True))
        return Response(
            FeedbackOutput(
                {
                    "output_id": output.pk,
                    "vote": "up" if fb.vote == Feedback.UP else "down",
                    "comment": fb.comment,
                    "up": votes.count(Feedback.UP),
                    "down": votes.count(Feedback.DOWN),
                }
            ).data
        )


class RerunView(APIView):
    @extend_schema(
        request=None, responses={202: JobSubmitOutput}, summary="Re-run with the same parameters"
    )
    def post(self, request: Request, output_id) -> Response:
        output = _visible_output(request, output_id)
        return _submitted(_rerun(output, request.user))


class RegenerateView(APIView):
    @extend_schema(
        request=RegenerateInput,
        responses={202: JobSubmitOutput},
        summary="Regenerate with a new context or model",
    )
    def post(self, request: Request, output_id) -> Response:
        output = _visible_output(request, output_id)
        data = RegenerateInput(data=request.data)
        data.is_valid(raise_exception=True)
        return _submitted(_regenerate(output, request.user, **data.validated_data))


def _rerun(output: LLMOutput, user) -> LLMOutput:
    try:
        return services.llm_output_rerun(output=output, user=user)
    except (ValueError, services.TemplateNotFoundError) as exc:
        raise ApiError(str(exc)) from exc


def _regenerate(output: LLMOutput, user, *, context: dict, model: str) -> LLMOutput:
    try:
        return services.llm_output_regenerate(
            output=output, user=user, context=context, model=model
        )
    except MissingVariablesError as exc:
        raise ApiError(f"context: missing template variables: {', '.join(exc.missing)}") from exc
    except (ValueError, services.TemplateNotFoundError) as exc:
        raise ApiError(str(exc)) from exc


class MetricsView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=dict, summary="LLM job metrics (staff)")
    def get(self, request: Request) -> Response:
        days = query_int(request, "days", 30, low=1, high=365)
        return Response(selectors.llm_metrics(days=days))


# --- Pages for signed-in users ------------------------------------------------------------------


@login_required
def output_list_page(request: HttpRequest) -> HttpResponse:
    qs = selectors.outputs_visible_to(request.user).order_by("-created_at")
    if value := request.GET.get("status"):
        qs = qs.filter(status=value)
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    context = {"page": page, "status": request.GET.get("status", "")}
    return render(
        request, "llmcore/output_list.html", {**admin.site.each_context(request), **context}
    )


@login_required
def output_detail_page(request: HttpRequest, output_id) -> HttpResponse:
    output = get_object_or_404(selectors.outputs_visible_to(request.user), pk=output_id)
    mine = output.feedback.filter(user=request.user).first()
    votes = list(output.feedback.values_list("vote", flat=True))
    return render(
        request,
        "llmcore/output_detail.html",
        {
            **admin.site.each_context(request),
            "output": output,
            "rendered": rendering.render_output(output),
            "mine": mine,
            "up": votes.count(Feedback.UP),
            "down": votes.count(Feedback.DOWN),
            "children": output.children.order_by("-created_at")[:20],
        },
    )


@login_required
@require_POST
def output_action_page(request: HttpRequest, output_id, action: str) -> HttpResponse:
    output = get_object_or_404(selectors.outputs_visible_to(request.user), pk=output_id)
    try:
        if action == "up" or action == "down":
            services.feedback_set(
                output=output,
                user=request.user,
                vote=Feedback.UP if action == "up" else Feedback.DOWN,
                comment=request.POST.get("comment", "")[:2000],
            )
            messages.success(request, "Thanks for the feedback.")
            return redirect("llm-output-page", output_id=output.pk)
        if action == "re_run":
            new = _rerun(output, request.user)
        elif action == "regenerate":
            import json

            raw = request.POST.get("context", "").strip()
            context = json.loads(raw) if raw else {}
            if not isinstance(context, dict):
                raise ValueError("context must be a JSON object")
            model = request.POST.get("model", "").strip()
            if not context and model in ("", output.requested_model):
                raise ValueError("Change the model or the context to regenerate.")
            new = _regenerate(output, request.user, context=context, model=model)
        else:
            raise Http404
    except (ApiError, ValueError) as exc:
        messages.error(request, str(getattr(exc, "detail", exc)))
        return redirect("llm-output-page", output_id=output.pk)
    messages.success(request, "Queued a new output.")
    return redirect("llm-output-page", output_id=new.pk)
