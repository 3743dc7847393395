"""A tiny API used only by tests of what every endpoint shares (parsing, validation, throttles)."""

from __future__ import annotations

from django.urls import include, path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class EchoInput(serializers.Serializer):
    name = serializers.CharField(max_length=20)


class EchoView(APIView):
    def get(self, request):
        return Response({"ok": True})

    def post(self, request):
        data = EchoInput(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(data.validated_data)


urlpatterns = [path("api/echo", EchoView.as_view()), path("", include("grimoire.urls"))]
