"""`POST /webhooks/github/`: verify, record once, answer fast; the work happens in jobs.

One module per integration with an event → handler table (spells/github_events.py); ignored
events get a 2xx, unknown ones are logged and acknowledged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

from django.conf import settings
from django.db import DataError, InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from grimoire.api import error_body
from spells import deliveries, github_events
from spells.models import WebhookDelivery

logger = logging.getLogger(__name__)


def signature_ok(secret: str, body: bytes, header: str) -> bool:
    if not secret or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str (a forged header would be a 500).
    return hmac.compare_digest(expected.encode(), header.encode("utf-8", "surrogateescape"))


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse(error_body(code, message), status=status)


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` (read no further than limit + 1 bytes)."""
    length = request.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


@csrf_exempt
@require_POST
def github_webhook(request: HttpRequest) -> JsonResponse:
    body = _read_body(request, settings.GITHUB_WEBHOOK_MAX_BYTES)
    if body is None:
        return _error(
            413, "payload_too_large", f"Body over {settings.GITHUB_WEBHOOK_MAX_BYTES} bytes."
        )
    if not settings.GITHUB_WEBHOOK_SECRET:
        logger.error("GitHub webhook refused: GITHUB_WEBHOOK_SECRET is not set")
        return _error(401, "not_configured", "Webhook secret not configured on this server.")
    if not signature_ok(
        settings.GITHUB_WEBHOOK_SECRET, body, request.headers.get("X-Hub-Signature-256", "")
    ):
        return _error(401, "bad_signature", "X-Hub-Signature-256 is missing or does not match.")
    event = request.headers.get("X-GitHub-Event", "")[:50]
    delivery_id = request.headers.get("X-GitHub-Delivery", "")[:100]
    if not event or not delivery_id:
        return _error(400, "invalid", "X-GitHub-Event and X-GitHub-Delivery headers are required.")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _error(400, "malformed_request", "Body is not valid JSON.")
    if not isinstance(payload, dict):
        return _error(400, "malformed_request", "Body must be a JSON object.")
    action = str(payload.get("action") or "")[:50]

    handler = github_events.HANDLERS.get(event)
    process = bool(handler and handler.wants(payload))
    try:
        created = deliveries.record(
            delivery_id=delivery_id,
            event=event,
            action=action,
            repository=str((payload.get("repository") or {}).get("full_name") or "")[:200],
            payload=payload,
            body=body,
            process=process,
        )
    except DataError:
        # JSON the database cannot store (PostgreSQL's jsonb refuses \u0000 in strings).
        return _error(400, "malformed_request", "Body holds JSON this server cannot store.")
    except (OperationalError, InterfaceError, TimeoutError):
        # The database is down or stalled (the write was already tried on a fresh connection): a
        # 5xx tells the sender the delivery is worth sending again (a late write makes that a
        # duplicate, whose job was queued with it).
        logger.exception("GitHub delivery not stored: database unavailable")
        return _error(503, "unavailable", "Database unavailable; deliver again later.")
    if not created:
        # A redelivery: acknowledged, no new work.
        existing = WebhookDelivery.objects.filter(delivery_id=delivery_id).first()
        return JsonResponse(
            {
                "status": "duplicate",
                "event": event,
                "action": action,
                "delivery": delivery_id,
                "result": existing.result if existing else {},
            },
            status=200,
        )
    if handler is None:
        logger.info("GitHub event not handled", extra={"event": event, "delivery": delivery_id})
    body_out: dict[str, Any] = {
        "status": "success",
        "event": event,
        "action": action,
        "delivery": delivery_id,
    }
    if not process:
        body_out["status"] = "ignored"
        return JsonResponse(body_out, status=200)
    body_out.update(handler.preview(payload))  # what is already known; the rest is queued
    body_out["jobs"] = [deliveries.job_name(delivery_id)]
    return JsonResponse(body_out, status=202)
