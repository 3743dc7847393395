"""OpenAPI extensions so the schema describes our own token authentication."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse


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


# --- The error shape, documented once and added to every operation ------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every 4xx/5xx answer has this shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "example": "invalid"},
                "message": {"type": "string", "example": "title: This field is required."},
                "details": {"description": "Per-field messages or other context."},
            },
        }
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

_GENERIC = {
    "400": "Invalid input; the message names the field.",
    "401": "Missing, invalid or expired token.",
    "403": "Authenticated but not allowed.",
    "404": "No such object (or not yours).",
    "409": "The object's state does not allow this.",
    "413": "Body too large.",
    "429": "Throttled; see Retry-After.",
    "503": "A dependency is unavailable.",
}


def error_response(status: str) -> dict:
    return {
        "description": _GENERIC.get(status, "Error."),
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: the error shape as a component, and the error answers
    every operation can give (401 everywhere, 403, 404 with path parameters, 400/429 on writes)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = {"401", "403"}
            if "{" in path:
                statuses.add("404")
            if method in ("post", "put", "patch"):
                statuses |= {"400", "429"}
            for status in sorted(statuses):
                operation["responses"].setdefault(status, error_response(status))
            # Error answers a view declared with a description only get the error shape.
            for status, response in operation["responses"].items():
                if status >= "400" and "content" not in response:
                    response["content"] = {"application/json": {"schema": ERROR_REF}}
    return result


def documented_error(status: int) -> OpenApiResponse:
    """For `extend_schema(responses={409: documented_error(409)})`: the shape is added by the hook."""
    return OpenApiResponse(description=_GENERIC.get(str(status), "Error."))
