from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from grimoire.api import query_int
from spells import selectors, services
from spells.models import Spell, SpellStatus
from spells.serializers import MatchInput, SpellGenerateInput, SpellOutput


class MatchView(APIView):
    @extend_schema(request=MatchInput, responses=dict, summary="Ranked spells for an error")
    def post(self, request: Request) -> Response:
        data = MatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        context_lines = [line for line in d["context"].splitlines() if line.strip()][:200]
        matches = services.spells_match(
            error_type=d["error_type"],
            message=d["message"],
            context=d["context"],
            fingerprints=d["fingerprints"],
            lines=context_lines,
            limit=d["limit"],
        )
        spells = {s.pk: s for s in Spell.objects.filter(pk__in=[m.spell_id for m in matches])}
        return Response(
            {
                "matches": [
                    {
                        **m.to_dict(),
                        "title": spells[m.spell_id].title,
                        "status": spells[m.spell_id].status,
                        "description": spells[m.spell_id].description,
                        "solution_code": spells[m.spell_id].solution_code,
                    }
                    for m in matches
                    if m.spell_id in spells
                ]
            }
        )


class GenerateView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        request=SpellGenerateInput,
        responses={202: dict},
        summary="Draft a spell for an error (staff)",
    )
    def post(self, request: Request) -> Response:
        from builds.fingerprint import fingerprint

        data = SpellGenerateInput(data=request.data)
        data.is_valid(raise_exception=True)
        d = data.validated_data
        generation = services.spell_generate_request(
            fingerprint=fingerprint(d["message"], kind=d["error_type"]), error=dict(d)
        )
        generation.refresh_from_db()
        return Response(
            {
                "generation_id": generation.pk,
                "status": generation.status,
                "spell_id": generation.spell_id,
                "llm_output_id": generation.llm_output_id,
                "note": generation.note,
            },
            status=status.HTTP_202_ACCEPTED,
        )


class SpellListView(ListAPIView):
    serializer_class = SpellOutput

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str),
            OpenApiParameter("language", str),
            OpenApiParameter("q", str),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        qs = Spell.objects.select_related("reviewed_by").prefetch_related("patterns")
        if not self.request.user.is_staff:
            qs = qs.filter(status=SpellStatus.APPROVED)
        params = self.request.query_params
        for field in ("status", "language"):
            if value := params.get(field):
                qs = qs.filter(**{field: value})
        if q := params.get("q"):
            qs = qs.filter(title__icontains=q)
        return qs.order_by("-match_count", "title")


class SpellDetailView(APIView):
    @extend_schema(responses=SpellOutput)
    def get(self, request: Request, spell_id: int) -> Response:
        qs = Spell.objects.prefetch_related("patterns")
        if not request.user.is_staff:
            qs = qs.filter(status=SpellStatus.APPROVED)
        return Response(SpellOutput(get_object_or_404(qs, pk=spell_id)).data)


class MetricsView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(responses=dict, summary="Spell generation and review metrics (staff)")
    def get(self, request: Request) -> Response:
        days = query_int(request, "days", 30, low=1, high=365)
        return Response(selectors.spell_metrics(days=days))
