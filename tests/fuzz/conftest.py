"""API fuzzing: schemathesis against the OpenAPI schema, in-process through the WSGI app.

Run with `scripts/ci-fuzz`, or `.venv/bin/pytest tests/fuzz -m fuzz -p no:xdist`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A failed pytest run, enough for the analyser to find an error, fingerprint it and draft a spell.
FAILING_LOG = b"""\
Run pytest -q
collected 3 items

tests/test_cart.py ..F
=================================== FAILURES ===================================
E       KeyError: 'discount'
tests/test_cart.py:14: KeyError
FAILED tests/test_cart.py::test_totals - KeyError: 'discount'
========================= 1 failed, 2 passed in 0.10s =========================
"""


def pytest_configure(config: pytest.Config) -> None:
    # pyproject's addopts has --strict-markers; registered here until pyproject lists it.
    config.addinivalue_line(
        "markers", "fuzz: schemathesis API fuzzing against the OpenAPI schema (tests/fuzz)"
    )


def _without_connection_recycling() -> Iterator[None]:
    """Keep the test's database connection across requests sent straight to the WSGI handler.

    Django's handler closes "old" connections at request start and end; inside the test's
    transaction that would close the very connection holding it. Django's own test Client
    unhooks the same receiver for the same reason.
    """
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_world(
    db: Any, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> Iterator[dict[str, Any]]:
    """A staff token and one of everything the API can point at, so ids in paths can be real.

    Work the seeding enqueues runs inline (offline provider); work the fuzzer's own requests
    enqueue does not, because on_commit never fires inside the test's transaction: the fuzzer
    tests the HTTP layer without starting builds, LLM calls or GitHub calls.
    """
    from builds.services import build_create, build_report_create
    from grimoire import testing
    from grimoire.services import api_token_create
    from issues.services import issue_create
    from llmcore.services import llm_job_submit
    from spells.models import Spell

    workspace = tmp_path / "workspace"
    (workspace / "src").mkdir(parents=True)
    (workspace / "README.md").write_text("# cart\n")
    (workspace / "src" / "cart.py").write_text("def totals(items):\n    return sum(items)\n")
    settings.WORKSPACE_ROOT = workspace
    settings.BUILD_RUN_COMMANDS = {"unit": ["true"]}

    user = testing.make_user("fuzzer", staff=True)
    _, raw_token = api_token_create(user=user, name="fuzz")
    with django_capture_on_commit_callbacks(execute=True):
        build = build_create(
            owner=user, status="failed", log=[FAILING_LOG], repository="acme/cart", branch="main"
        )
    with django_capture_on_commit_callbacks(execute=True):
        issue = issue_create(
            title="Checkout crashes with KeyError",
            description="Traceback: KeyError: 'discount' in cart.totals",
            reporter=user,
        )
    with django_capture_on_commit_callbacks(execute=True):
        output = llm_job_submit(prompt="Summarise: {{text}}", context={"text": "hi"}, user=user)
    build_report_create(
        build=build,
        type="analysis",
        analysis="The cart lost its discount key.",
        recommendations=["restore the key"],
        confidence=0.5,
        author=user,
    )
    spell = Spell.objects.filter(origin_build=build).first() or Spell.objects.create(
        title="KeyError discount", description="Restore the key."
    )
    known = {
        "build_id": str(build.pk),
        "issue_id": str(issue.pk),
        "output_id": str(output.pk),
        "spell_id": spell.pk,
    }
    recycling = _without_connection_recycling()
    next(recycling)
    try:
        yield {"token": raw_token, "user": user, "known": known}
    finally:
        next(recycling, None)
