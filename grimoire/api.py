"""What every API endpoint shares: token auth, write throttles, and one error shape.

Every 4xx/5xx answered by the API looks like
    {"error": {"code": "not_found", "message": "…", "details": {…}}}
whether DRF raised it, Django answered it (unknown URL, CSRF) or a view crashed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)

# Paths answered by machines rather than people: their errors are JSON in the error shape.
API_PATH_PREFIXES = ("/api/", "/llm/learning/", "/issues", "/build/", "/webhooks/")

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_api_path(path: str) -> bool:
    return path.startswith(API_PATH_PREFIXES)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


class ApiError(exceptions.APIException):
    """Raise from a view or service to answer with a specific status, code and details."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        status_code: int = status.HTTP_400_BAD_REQUEST,
        details: Any = None,
    ) -> None:
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.details = details


# --- Authentication -----------------------------------------------------------------------------


class BearerTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <token>` (or `Token <token>`) against hashed ApiTokens."""

    keywords = (b"bearer", b"token")

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in self.keywords:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Authorization header: expected '<Bearer|Token> <token>'."
            )
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        from grimoire.models import ApiToken

        token = ApiToken.objects.authenticate(raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (with WWW-Authenticate) rather than 403 to unauthenticated calls.
        return 'Bearer realm="api"'


# --- Throttling ---------------------------------------------------------------------------------


class UserWriteThrottle(UserRateThrottle):
    """Rate-limit writes per user; reads are not throttled."""

    scope = "user_write"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in _SAFE_METHODS:
            return True
        return super().allow_request(request, view)


class AnonWriteThrottle(AnonRateThrottle):
    scope = "anon_write"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method in _SAFE_METHODS:
            return True
        return super().allow_request(request, view)


# --- Errors -------------------------------------------------------------------------------------


def _first_message(details: Any, prefix: str = "") -> str | None:
    """A one-line summary of DRF validation details that names the field at fault."""
    if isinstance(details, dict):
        for key, value in details.items():
            label = prefix if key == "non_field_errors" else f"{prefix}{key}"
            found = _first_message(value, f"{label}." if label else "")
            if found:
                return found
        return None
    if isinstance(details, list):
        for item in details:
            found = _first_message(item, prefix)
            if found:
                return found
        return None
    text = str(details)
    field = prefix.rstrip(".")
    return f"{field}: {text}" if field else text


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler producing the error shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, ApiError):
        body = error_body(exc.error_code, str(exc.detail), exc.details)
        return Response(body, status=exc.status_code)

    if not isinstance(exc, exceptions.APIException):
        return None  # a crash: ApiErrorMiddleware logs it and answers 500 in the error shape

    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]

    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail
        if not isinstance(details, dict):
            details = {"non_field_errors": details}
        message = _first_message(details) or "Invalid input."
        body = error_body("invalid", message, details)
    elif isinstance(exc, exceptions.ParseError):
        body = error_body("malformed_request", str(exc.detail))
    elif isinstance(exc, exceptions.Throttled):
        body = error_body("throttled", str(exc.detail), {"retry_after_seconds": exc.wait})
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        body = error_body(code, str(exc.detail))
    return Response(body, status=exc.status_code, headers=headers)


_STATUS_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "server_error",
}


class ApiErrorMiddleware:
    """Answer in the error shape where Django, not DRF, produced the error on an API path.

    Unknown URLs, CSRF failures and crashes come back from Django as HTML pages; API clients get
    JSON instead.
    """

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api_path(request.path)
            and not response.get("Content-Type", "").startswith("application/json")
            and not getattr(response, "streaming", False)
        ):
            code = _STATUS_CODES.get(response.status_code, "error")
            message = {
                404: f"No API endpoint at {request.path}.",
                403: "Forbidden (CSRF check failed or permission denied).",
                405: f"Method {request.method} not allowed.",
                413: "Request body too large.",
                500: "Internal server error.",
            }.get(response.status_code, "Request failed.")
            return JsonResponse(error_body(code, message), status=response.status_code)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path):
            return None
        logger.exception("unhandled error on %s %s", request.method, request.path)
        details = {"request_id": getattr(request, "request_id", None)}
        body = error_body("server_error", "Internal server error.", details)
        return JsonResponse(body, status=500)


def query_int(request: Request, name: str, default: int, *, low: int, high: int) -> int:
    """An integer query parameter, clamped to `high`; a bad value is a 400 naming it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ApiError(f"{name}: must be a whole number.") from exc
    if value < low:
        raise ApiError(f"{name}: must be at least {low}.")
    return min(value, high)
