from __future__ import annotations

import itertools
from collections.abc import Iterator

from django.conf import settings
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from builds import logstore, services
from builds.models import Build
from builds.serializers import (
    AppendLogJsonInput,
    BuildCreateJsonInput,
    BuildDetailOutput,
    BuildMetadataInput,
    BuildOutput,
    FinishInput,
)
from grimoire.api import ApiError
from grimoire.schema import documented_error

RAW_TYPES = ("text/plain", "application/octet-stream", "application/gzip", "application/x-gzip")
GZIP_MAGIC = b"\x1f\x8b"


def _is_raw(request: Request) -> bool:
    return request.content_type.split(";")[0].strip().lower() in RAW_TYPES


def _gunzip_if_needed(blocks: Iterator[bytes], *, declared: bool) -> Iterator[bytes]:
    """Gzip is recognised by Content-Encoding / content type or by its magic bytes."""
    first = next(blocks, b"")
    whole = itertools.chain([first], blocks)
    if declared or first[:2] == GZIP_MAGIC:
        return logstore.gunzip(whole)
    return whole


def _declared_gzip(request: Request) -> bool:
    return (
        request.headers.get("Content-Encoding", "").lower() == "gzip"
        or "gzip" in request.content_type.lower()
    )


def raw_log_blocks(request: Request) -> Iterator[bytes]:
    """The request body as log bytes, streamed (never all in memory)."""
    return _gunzip_if_needed(
        logstore.iter_stream(request._request), declared=_declared_gzip(request)
    )


def _store_errors(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except logstore.LogTooLargeError as exc:
        raise ApiError(str(exc), code="payload_too_large", status_code=413) from exc
    except logstore.BadCompressionError as exc:
        raise ApiError(f"log: {exc}", code="invalid") from exc
    except services.BuildStateError as exc:
        raise ApiError(str(exc), code="conflict", status_code=409) from exc


def _check_json_size(request: Request) -> None:
    length = int(request.headers.get("Content-Length") or 0)
    if (
        not _is_raw(request)
        and "json" in request.content_type
        and length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    ):
        raise ApiError(
            "JSON body too large; send big logs as text/plain or a multipart file.",
            code="payload_too_large",
            status_code=413,
        )


def _visible_builds(user):
    return Build.objects.select_related("owner")


def _own_build(request: Request, build_id) -> Build:
    build = get_object_or_404(_visible_builds(request.user), pk=build_id)
    if not (request.user.is_staff or build.owner_id == request.user.id):
        raise ApiError(
            "Only the build's owner or staff can change it.",
            code="permission_denied",
            status_code=403,
        )
    return build


class BuildListCreateView(ListAPIView):
    serializer_class = BuildOutput
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self):
        qs = _visible_builds(self.request.user)
        params = self.request.query_params
        for field in ("status", "repository", "branch", "source"):
            if value := params.get(field):
                qs = qs.filter(**{field: value})
        return qs.order_by("-created_at")

    @extend_schema(
        request={
            "application/json": BuildCreateJsonInput,
            "multipart/form-data": BuildMetadataInput,
            "text/plain": OpenApiTypes.STR,
        },
        parameters=[
            OpenApiParameter(
                "status", str, description="for text/plain uploads: metadata as query parameters"
            )
        ],
        responses={
            201: BuildOutput,
            200: OpenApiResponse(
                BuildOutput, description="Re-delivered external_id: the stored build."
            ),
            413: documented_error(413),
        },
        summary="Ingest a build (metadata + log)",
    )
    def post(self, request: Request) -> Response:
        _check_json_size(request)
        if _is_raw(request):
            meta = BuildMetadataInput(data=request.query_params.dict())
            meta.is_valid(raise_exception=True)
            log = raw_log_blocks(request)
        elif request.content_type.startswith("multipart/"):
            meta = BuildMetadataInput(
                data=request.data.dict() if hasattr(request.data, "dict") else request.data
            )
            meta.is_valid(raise_exception=True)
            upload = request.FILES.get("log")
            if upload is not None:
                log = _gunzip_if_needed(iter(upload.chunks()), declared=upload.name.endswith(".gz"))
            elif isinstance(request.data.get("log"), str):
                log = iter([request.data["log"].encode()])  # `curl -F log='text'`: a form field
            else:
                log = None
        else:
            meta = BuildCreateJsonInput(data=request.data)
            meta.is_valid(raise_exception=True)
            text = meta.validated_data.pop("log", None)
            log = iter([text.encode()]) if text else None
        data = dict(meta.validated_data)
        try:
            build = _store_errors(
                services.build_create,
                owner=request.user,
                status=data.pop("status"),
                finished_at=data.pop("finished_at"),
                log=log,
                **data,
            )
        except services.DuplicateBuildError as exc:
            # A CI re-delivering the same job: answer with the build already stored, add nothing.
            return Response(BuildOutput(exc.existing).data, status=status.HTTP_200_OK)
        return Response(BuildOutput(build).data, status=status.HTTP_201_CREATED)


class BuildDetailView(APIView):
    @extend_schema(responses=BuildDetailOutput)
    def get(self, request: Request, build_id) -> Response:
        return Response(
            BuildDetailOutput(get_object_or_404(_visible_builds(request.user), pk=build_id)).data
        )


class BuildLogView(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={(200, "text/plain"): OpenApiTypes.STR}, summary="The build's log")
    def get(self, request: Request, build_id):
        build = get_object_or_404(_visible_builds(request.user), pk=build_id)
        response = StreamingHttpResponse(
            logstore.iter_log_bytes(build.pk), content_type="text/plain; charset=utf-8"
        )
        response["Content-Disposition"] = f'inline; filename="build-{build.pk}.log"'
        return response

    @extend_schema(
        request={"text/plain": OpenApiTypes.STR, "application/json": AppendLogJsonInput},
        responses={200: BuildOutput, 409: documented_error(409), 413: documented_error(413)},
        summary="Append a chunk to a running build's log",
    )
    def post(self, request: Request, build_id) -> Response:
        build = _own_build(request, build_id)
        _check_json_size(request)
        if _is_raw(request):
            log = raw_log_blocks(request)
        else:
            data = AppendLogJsonInput(data=request.data)
            data.is_valid(raise_exception=True)
            log = iter([data.validated_data["log"].encode()])
        _store_errors(services.build_append_log, build=build, log=log)
        build.refresh_from_db()
        return Response(BuildOutput(build).data)


class BuildFinishView(APIView):
    @extend_schema(
        request=FinishInput,
        responses={200: BuildOutput, 409: documented_error(409)},
        summary="Finish a running build (queues analysis)",
    )
    def post(self, request: Request, build_id) -> Response:
        build = _own_build(request, build_id)
        data = FinishInput(data=request.data)
        data.is_valid(raise_exception=True)
        build = _store_errors(services.build_finish, build=build, **data.validated_data)
        return Response(BuildOutput(build).data)


class BuildAnalyzeView(APIView):
    @extend_schema(
        request=None,
        responses={202: BuildOutput, 409: documented_error(409)},
        summary="Analyse the build's log again",
    )
    def post(self, request: Request, build_id) -> Response:
        build = _own_build(request, build_id)
        if not build.is_finished:
            raise ApiError(
                "build is still running; finish it first", code="conflict", status_code=409
            )
        services.build_request_analysis(build=build)
        return Response(BuildOutput(build).data, status=status.HTTP_202_ACCEPTED)
