from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from grimoire.api import ApiError
from issues import services
from issues.models import Issue
from issues.serializers import EnrichOutput, IssueCreateInput, IssueOutput, IssueUpdateInput


class IssueCreateThrottle(UserRateThrottle):
    """Creating issues costs an LLM call each: a tighter budget than other writes."""

    scope = "issue_create"

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


def _require_reporter_or_staff(request: Request, issue: Issue, doing: str) -> None:
    if not (request.user.is_staff or issue.reporter_id == request.user.id):
        raise ApiError(
            f"Only the reporter or staff can {doing} this issue.",
            code="permission_denied",
            status_code=403,
        )


def _issues():
    return Issue.objects.select_related("reporter")


class IssueListCreateView(ListAPIView):
    serializer_class = IssueOutput

    def get_throttles(self):
        return [*super().get_throttles(), IssueCreateThrottle()]

    @extend_schema(
        parameters=[
            OpenApiParameter("tag", str),
            OpenApiParameter("priority", str),
            OpenApiParameter("status", str),
            OpenApiParameter("kind", str),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = _issues()
        params = self.request.query_params
        for field in ("priority", "status", "kind", "source", "enrichment_source"):
            if value := params.get(field):
                qs = qs.filter(**{field: value})
        if tag := params.get("tag"):
            # JSON containment is not portable across SQLite and PostgreSQL; tags are short
            # lists, so match the quoted tag inside the stored JSON text.
            qs = qs.filter(tags__icontains=f'"{tag.lower()}"')
        return qs.order_by("-created_at")

    @extend_schema(
        request=IssueCreateInput, responses={201: IssueOutput}, summary="Create an issue"
    )
    def post(self, request: Request) -> Response:
        data = IssueCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        issue = services.issue_create(reporter=request.user, **data.validated_data)
        return Response(IssueOutput(issue).data, status=status.HTTP_201_CREATED)


class IssueDetailView(APIView):
    @extend_schema(responses=IssueOutput)
    def get(self, request: Request, issue_id) -> Response:
        return Response(IssueOutput(get_object_or_404(_issues(), pk=issue_id)).data)

    @extend_schema(request=IssueUpdateInput, responses=IssueOutput, summary="Update an issue")
    def patch(self, request: Request, issue_id) -> Response:
        issue = get_object_or_404(_issues(), pk=issue_id)
        _require_reporter_or_staff(request, issue, "change")
        data = IssueUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        staff_fields = {"ai_summary", "tags"} & set(data.validated_data)
        if staff_fields and not request.user.is_staff:
            raise ApiError(
                f"{sorted(staff_fields)[0]}: only staff can edit the summary and tags.",
                code="permission_denied",
                status_code=403,
            )
        issue = services.issue_update(issue=issue, data=data.validated_data, user=request.user)
        return Response(IssueOutput(issue).data)


class IssueEnrichView(APIView):
    @extend_schema(request=None, responses={202: EnrichOutput}, summary="Re-run enrichment")
    def post(self, request: Request, issue_id) -> Response:
        issue = get_object_or_404(_issues(), pk=issue_id)
        _require_reporter_or_staff(request, issue, "re-enrich")
        if issue.enrichment_source == "staff":
            issue.enrichment_source = ""  # asking again means: let the machine try again
        issue = services.issue_enrich(issue=issue)
        body = {
            "id": issue.pk,
            "enrichment_status": issue.enrichment_status,
            "llm_output_id": issue.llm_output_id,
        }
        return Response(EnrichOutput(body).data, status=status.HTTP_202_ACCEPTED)
