"""OpenAPI extensions so the schema describes our own token authentication."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "grimoire.api.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <token>` (or `Token <token>`); create one with "
            "`manage.py create_api_token USER`.",
        }


class SessionIdScheme(OpenApiAuthenticationExtension):
    target_class = "builds.learning.SessionIdAuthentication"
    name = "sessionId"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "query",
            "name": "session_id",
            "description": "The id of a signed-in session (the learning API's seed form).",
        }
