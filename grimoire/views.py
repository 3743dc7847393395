from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class MeOutput(serializers.Serializer):
    username = serializers.CharField()
    is_staff = serializers.BooleanField()
    auth = serializers.ChoiceField(choices=["token", "session"])
    token_name = serializers.CharField(allow_null=True)


class MeView(APIView):
    """Who the caller is: lets a client check its token before doing real work."""

    @extend_schema(responses=MeOutput, summary="The authenticated user")
    def get(self, request: Request) -> Response:
        from grimoire.models import ApiToken

        token = request.auth if isinstance(request.auth, ApiToken) else None
        data = {
            "username": request.user.get_username(),
            "is_staff": request.user.is_staff,
            "auth": "token" if token else "session",
            "token_name": token.name if token else None,
        }
        return Response(MeOutput(data).data)
