"""Demo GitHub deliveries, signed and sent through the real webhook endpoint in-process.

A failing check run from an external CI (its output is the log, so no network is needed) and an
`issues` event. The worker then analyses, matches and drafts a spell for the unknown failure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from typing import TextIO

from grimoire.demo import demo_loader

CHECK_RUN = {
    "action": "completed",
    "check_run": {
        "id": 90210001,
        "name": "integration tests",
        "head_sha": "5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d",
        "status": "completed",
        "conclusion": "failure",
        "html_url": "https://ci.example.com/acme/api/runs/4411",
        "app": {"slug": "acme-ci"},
        "output": {
            "title": "integration tests failed",
            "summary": "1 failed, 212 passed",
            "text": (
                "tests/integration/test_orders.py::test_checkout_applies_coupon FAILED\n"
                "E   sqlalchemy.exc.OperationalError: (psycopg.OperationalError) connection to server "
                'at "db" (10.0.3.7), port 5432 failed: FATAL:  remaining connection slots are '
                "reserved for roles with the SUPERUSER attribute\n"
                "FAILED tests/integration/test_orders.py::test_checkout_applies_coupon - "
                "sqlalchemy.exc.OperationalError: remaining connection slots are reserved\n"
            ),
        },
    },
    "repository": {"full_name": "acme/api"},
}

ISSUE = {
    "action": "opened",
    "issue": {
        "number": 311,
        "title": "Checkout fails intermittently with database connection errors",
        "body": "Since the deploy on Friday roughly 1 in 50 checkouts fails with "
        "`OperationalError: remaining connection slots are reserved`. It happens under load in "
        "api/orders/service.py. Expected: checkout succeeds.",
        "html_url": "https://github.com/acme/api/issues/311",
        "user": {"login": "octocat"},
    },
    "repository": {"full_name": "acme/api"},
}


@demo_loader("github-deliveries", order=40, models=())
def load(stdout: TextIO) -> int:
    from django.conf import settings
    from django.test import Client
    from django.test.utils import override_settings

    secret = settings.GITHUB_WEBHOOK_SECRET or secrets.token_hex(16)
    client = Client()
    sent = 0
    with override_settings(GITHUB_WEBHOOK_SECRET=secret, ALLOWED_HOSTS=["*"]):
        for event, payload in (("check_run", CHECK_RUN), ("issues", ISSUE)):
            body = json.dumps(payload).encode()
            signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            response = client.post(
                "/webhooks/github/",
                data=body,
                content_type="application/json",
                HTTP_X_GITHUB_EVENT=event,
                HTTP_X_GITHUB_DELIVERY=str(uuid.uuid4()),
                HTTP_X_HUB_SIGNATURE_256=signature,
            )
            sent += response.status_code < 300
    stdout.write(f"  {sent} signed GitHub deliveries (a failing check run, an issue)")
    return sent
