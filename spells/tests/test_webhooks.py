"""`POST /webhooks/github/` end to end: the receiver, then the job each event starts.

One fixture and one test per event variant (fixtures/webhooks/<event>__<variant>.json). The
GitHub REST API is mocked at the httpx transport; the LLM provider through the process router.
Jobs run inline (django-q2 sync mode) when the request's transaction commits.
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone

import spells.github
from builds import logstore
from builds.models import AnalysisStatus, Build, BuildStatus
from grimoire.testing import json_response
from issues.models import Issue
from llmcore import gateway
from llmcore.models import LLMOutput
from spells.models import (
    DeliveryStatus,
    GenerationStatus,
    PullRequest,
    Spell,
    SpellGeneration,
    SpellMatch,
    SpellPattern,
    SpellSource,
    SpellStatus,
    WebhookDelivery,
)

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "It's a Secret to Everybody"
TOKEN = "ghs_" + "Abc123" * 6
API = "https://api.github.com"
BLOB_HOST = "productionresultssa7.blob.core.windows.net"
REPO = "acme-labs/widget-service"
HEAD_SHA = "9f2c1e7a4b8d3f6e0a5c2b9d8e7f6a5b4c3d2e1f"
SYNC_SHA = "4d1e2f3a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e"
JOB_ID = 24681357901
RUN_ID = 9876543210
ACTIONS_CHECK_ID = 24681357955
EXTERNAL_CHECK_ID = 24690011223
OPENAI_ENV = {"LLM_PROVIDERS": "openai", "OPENAI_API_KEY": "sk-test-" + "b" * 40}

FAILED_LOG = """\
2024-05-01T10:00:00.1234567Z ##[group]Run python scripts/migrate.py
2024-05-01T10:00:00.2234567Z python scripts/migrate.py
2024-05-01T10:00:00.3234567Z ##[endgroup]
2024-05-01T10:00:01.1234567Z Traceback (most recent call last):
2024-05-01T10:00:01.2234567Z   File "/home/runner/work/widget/widget/scripts/migrate.py", line 4, in <module>
2024-05-01T10:00:01.3234567Z     import quuxlib.frobnicate
2024-05-01T10:00:01.4234567Z ModuleNotFoundError: No module named 'quuxlib'
2024-05-01T10:00:01.5234567Z ##[error]Process completed with exit code 1.
"""
FAILED_LINE = "ModuleNotFoundError: No module named 'quuxlib'"

TIMEOUT_LOG = """\
2024-05-01T10:00:00.1234567Z ##[group]Run mypy widget
2024-05-01T10:29:59.1234567Z widget/billing/pdf.py:88: error: Argument 1 to "write" has incompatible type "str"; expected "bytes"  [arg-type]
2024-05-01T10:30:00.1234567Z ##[error]The job running on runner GitHub Actions 7 has exceeded the maximum execution time of 30 minutes.
"""

DRAFT = {
    "title": "quuxlib is imported but not installed",
    "description": "The migration script imports quuxlib, which is missing from the CI "
    "environment. Add it to requirements.txt (or the dev extras) and reinstall.",
    "solution_code": "pip install quuxlib\n# requirements.txt\nquuxlib>=2.1",
    "confidence_score": 72,
}


# --- Helpers ------------------------------------------------------------------------------------


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_hook(
    client: Client,
    event: str | None,
    body: bytes,
    *,
    delivery: str | None = None,
    signature: str | None = "auto",
) -> Any:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery if delivery is not None else str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body) if signature == "auto" else signature,
        "User-Agent": "GitHub-Hookshot/8e03811",
        "X-GitHub-Hook-ID": "471203958",
    }
    return client.post(
        "/webhooks/github/",
        data=body,
        content_type="application/json",
        headers={k: v for k, v in headers.items() if v is not None},
    )


class FakeGitHub:
    """GitHub's REST API (and its log blob host) at the httpx transport.

    Routes match on method, host and path, plus the query parameters they name; each route answers
    its responses in order. Every request is recorded; one nobody expected is an error.
    """

    def __init__(self) -> None:
        self.routes: list[tuple[str, str, str, dict[str, str], list[httpx.Response]]] = []
        self.requests: list[httpx.Request] = []
        self.unexpected: list[str] = []

    def on(self, method: str, url: str, *responses: httpx.Response) -> None:
        parsed = httpx.URL(url)
        self.routes.append((method, parsed.host, parsed.path, dict(parsed.params), list(responses)))

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        params = dict(request.url.params)
        candidates = [
            route
            for route in self.routes
            if route[0] == request.method
            and route[1] == request.url.host
            and route[2] == request.url.path
            and all(params.get(k) == v for k, v in route[3].items())
            and route[4]
        ]
        if not candidates:
            self.unexpected.append(f"{request.method} {request.url}")
            return httpx.Response(599, text="unexpected request in test")
        candidates.sort(key=lambda route: -len(route[3]))
        return candidates[0][4].pop(0)

    def to_host(self, host: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.host == host]

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


class _HttpxWithTransport:
    """Stands in for the httpx module inside spells.github only: every Client it builds keeps
    the options spells.github chose (timeouts, redirects) but talks to the fake transport."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(httpx, name)

    def Client(self, *args: Any, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("transport", self._transport)
        return httpx.Client(*args, **kwargs)


@pytest.fixture(autouse=True)
def _webhook_settings(settings):
    settings.GITHUB_WEBHOOK_SECRET = SECRET
    settings.GITHUB_API_TOKEN = TOKEN
    settings.GITHUB_API_URL = API
    settings.SPELLS_COMMENT_ON_PRS = False
    settings.AUTO_CREATE_SPELLS = True


@pytest.fixture(autouse=True)
def github(monkeypatch) -> FakeGitHub:
    fake = FakeGitHub()
    monkeypatch.setattr(
        spells.github, "httpx", _HttpxWithTransport(httpx.MockTransport(fake.handle))
    )
    yield fake
    assert not fake.unexpected, f"unexpected GitHub requests: {fake.unexpected}"


class LLMRecorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def prompts(self) -> list[str]:
        return [json.loads(r.content)["messages"][-1]["content"] for r in self.requests]


def _install_router(env: dict[str, str], answer: Callable[[httpx.Request], httpx.Response]):
    recorder = LLMRecorder()

    def handler(request: httpx.Request) -> httpx.Response:
        recorder.requests.append(request)
        return answer(request)

    router = gateway.build_router(
        env, client=httpx.Client(transport=httpx.MockTransport(handler)), sleep=lambda s: None
    )
    return recorder, gateway.use_router(router)


def openai_answer(content: str) -> httpx.Response:
    return json_response(
        200,
        {
            "id": "chatcmpl-draft",
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 420, "completion_tokens": 96},
        },
    )


@pytest.fixture(autouse=True)
def offline_llm():
    """No real provider: the offline placeholder answers (nothing leaves the process)."""
    recorder, ctx = _install_router({}, lambda r: httpx.Response(599))
    with ctx:
        yield recorder


@pytest.fixture
def openai_draft():
    """An OpenAI provider whose every answer is `DRAFT` as JSON."""
    recorder, ctx = _install_router(OPENAI_ENV, lambda r: openai_answer(json.dumps(DRAFT)))
    with ctx:
        yield recorder


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """POST a fixture (or bytes) and run the jobs it queued, as a worker would."""

    def send(name_or_body: str | bytes, *, event: str | None = None, delivery: str | None = None):
        if isinstance(name_or_body, bytes):
            body, event_name = name_or_body, event
        else:
            body, event_name = fixture_body(name_or_body), event or name_or_body.split("__")[0]
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = post_hook(client, event_name, body, delivery=delivery)
        response.callbacks = callbacks
        return response

    return send


def link(url: str, rel: str) -> str:
    return f'<{url}>; rel="{rel}"'


def files_page(names: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "sha": hashlib.sha1(n.encode(), usedforsecurity=False).hexdigest(),
            "filename": n,
            "status": "modified",
            "additions": 12,
            "deletions": 3,
            "changes": 15,
            "blob_url": f"https://github.com/{REPO}/blob/{HEAD_SHA}/{n}",
            "raw_url": f"https://github.com/{REPO}/raw/{HEAD_SHA}/{n}",
            "contents_url": f"{API}/repos/{REPO}/contents/{n}?ref={HEAD_SHA}",
            "patch": "@@ -1,3 +1,4 @@\n-import stripe\n+import quuxlib",
        }
        for n in names
    ]


PAGE_1 = ["widget/billing/charge.py", "widget/billing/pdf.py", "requirements.txt"]
PAGE_2 = ["scripts/migrate.py", "tests/test_billing.py"]
LEAKED = "ghp_" + "R4nd0mT0k3n" * 3 + "xyz"
DIFF = f"""diff --git a/widget/billing/charge.py b/widget/billing/charge.py
index 3f1c2aa..8b0e1d4 100644
--- a/widget/billing/charge.py
+++ b/widget/billing/charge.py
@@ -1,4 +1,5 @@
-import stripe
+import quuxlib
+GITHUB_TOKEN = "{LEAKED}"
"""


def route_pr_files(github: FakeGitHub, number: int = 42) -> None:
    """Two pages of changed files, linked the way GitHub links them (by repository id)."""
    page2 = f"{API}/repositories/700123/pulls/{number}/files?per_page=100&page=2"
    github.on(
        "GET",
        f"{API}/repos/{REPO}/pulls/{number}/files",
        json_response(
            200,
            files_page(PAGE_1),
            headers={"link": f"{link(page2, 'next')}, {link(page2, 'last')}"},
        ),
    )
    github.on(
        "GET",
        page2,
        json_response(
            200,
            files_page(PAGE_2),
            headers={
                "link": link(
                    f"{API}/repositories/700123/pulls/{number}/files?per_page=100&page=1", "prev"
                )
            },
        ),
    )
    github.on(
        "GET",
        f"{API}/repos/{REPO}/pulls/{number}",
        httpx.Response(200, text=DIFF, headers={"content-type": "text/plain; charset=utf-8"}),
    )


def route_job_log(github: FakeGitHub, job_id: int, log: str) -> None:
    """GitHub answers the log URL with a redirect to a short-lived blob URL on another host."""
    blob = f"https://{BLOB_HOST}/actions-results/8d2f/workflow-job-run-{job_id}/logs/job/job-logs.txt?sv=2021-12-02&sig=Zm9vYmFy"
    github.on(
        "GET",
        f"{API}/repos/{REPO}/actions/jobs/{job_id}/logs",
        httpx.Response(302, headers={"location": blob}),
    )
    github.on("GET", blob, httpx.Response(200, text=log, headers={"content-type": "text/plain"}))


def rate_limited(reset_in: int = 120) -> httpx.Response:
    return json_response(
        403,
        {
            "message": "API rate limit exceeded for installation ID 31337.",
            "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
        },
        headers={
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-used": "5000",
            "x-ratelimit-reset": str(int(time.time()) + reset_in),
            "x-ratelimit-resource": "core",
        },
    )


def add_spell(*, title: str, regex: str, sample: str, status: str = SpellStatus.APPROVED) -> Spell:
    spell = Spell.objects.create(
        title=title,
        description="Install the missing module in the CI environment.",
        status=status,
        source=SpellSource.MANUAL,
        language="python",
        error_type="ModuleNotFoundError",
    )
    SpellPattern.objects.create(spell=spell, regex=regex, sample=sample)
    return spell


def log_text(build: Build) -> str:
    return b"".join(logstore.iter_log_bytes(build.pk)).decode()


def run_due_schedules() -> None:
    """What the qcluster's scheduler does once a one-off Schedule is due."""
    from django_q.brokers import get_broker
    from django_q.models import Schedule
    from django_q.scheduler import scheduler

    Schedule.objects.filter(schedule_type=Schedule.ONCE).update(
        next_run=timezone.now() - timedelta(seconds=1)
    )
    scheduler(broker=get_broker())


# --- The receiver: signature, size, shape, once per delivery ------------------------------------


def test_it_rejects_a_bad_signature_and_stores_nothing(client):
    body = fixture_body("workflow_job__completed_failure")
    response = post_hook(client, "workflow_job", body, signature=sign(body, "wrong secret"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    assert WebhookDelivery.objects.count() == 0
    assert Build.objects.count() == 0


def test_it_rejects_a_signature_over_another_body(client):
    body = fixture_body("workflow_job__completed_failure")
    tampered = body.replace(b'"failure"', b'"success"', 1)
    response = post_hook(client, "workflow_job", tampered, signature=sign(body))
    assert response.status_code == 401
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize(
    "signature",
    [None, "", "sha256=", "sha1=" + "0" * 40, "sha256=" + "0" * 64, "0" * 64],
    ids=["missing", "empty", "no-digest", "sha1", "zeros", "no-prefix"],
)
def test_it_rejects_a_missing_or_malformed_signature(client, signature):
    response = post_hook(client, "ping", fixture_body("ping__ping"), signature=signature)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    assert WebhookDelivery.objects.count() == 0


def test_it_rejects_a_non_ascii_signature_with_401(client):
    response = post_hook(client, "ping", fixture_body("ping__ping"), signature="sha256=" + "é" * 64)
    assert response.status_code == 401
    assert WebhookDelivery.objects.count() == 0


def test_it_refuses_every_delivery_when_no_secret_is_configured(client, settings):
    settings.GITHUB_WEBHOOK_SECRET = ""
    body = fixture_body("ping__ping")
    # Even a body "signed" with the empty key must not pass.
    response = post_hook(client, "ping", body, signature=sign(body, ""))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_configured"
    assert WebhookDelivery.objects.count() == 0


def test_a_redelivery_is_acknowledged_and_does_no_new_work(
    client, deliver, github, django_capture_on_commit_callbacks
):
    route_job_log(github, JOB_ID, FAILED_LOG)
    delivery = str(uuid.uuid4())
    first = deliver("workflow_job__completed_failure", delivery=delivery)
    assert first.status_code == 202
    requests_after_first = len(github.requests)
    assert requests_after_first == 2  # the log URL and its blob

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = post_hook(
            client,
            "workflow_job",
            fixture_body("workflow_job__completed_failure"),
            delivery=delivery,
        )
    assert again.status_code == 200
    body = again.json()
    assert body["status"] == "duplicate"
    assert body["delivery"] == delivery
    assert body["result"]["builds"]  # what the first delivery did
    assert callbacks == []  # no job queued
    assert WebhookDelivery.objects.count() == 1
    assert WebhookDelivery.objects.get().attempts == 1
    assert Build.objects.count() == 1
    assert len(github.requests) == requests_after_first


def test_an_oversized_body_is_refused_with_413(client, settings):
    settings.GITHUB_WEBHOOK_MAX_BYTES = 1024
    body = json.dumps({"action": "completed", "padding": "x" * 2000}).encode()
    response = post_hook(client, "workflow_job", body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert WebhookDelivery.objects.count() == 0


def test_a_body_at_the_limit_is_accepted(client, settings):
    body = fixture_body("ping__ping")
    settings.GITHUB_WEBHOOK_MAX_BYTES = len(body)
    assert post_hook(client, "ping", body).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b'{"action": "opened", ', b"\xff\xfe not utf-8", b"[1, 2, 3]", b'"a string"', b""],
    ids=["truncated", "not-utf8", "array", "string", "empty"],
)
def test_a_malformed_body_is_refused_with_400(client, body):
    response = post_hook(client, "pull_request", body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.parametrize("missing", ["event", "delivery"])
def test_missing_github_headers_are_refused_with_400(client, missing):
    body = fixture_body("ping__ping")
    response = post_hook(
        client,
        None if missing == "event" else "ping",
        body,
        delivery="" if missing == "delivery" else None,
    )
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"code", "message", "details"}
    assert WebhookDelivery.objects.count() == 0


def test_only_post_is_allowed(client):
    assert client.get("/webhooks/github/").status_code == 405
    assert WebhookDelivery.objects.count() == 0


# --- One fixture per event variant --------------------------------------------------------------


def test_ping_is_answered_with_2xx_and_starts_nothing(deliver, github):
    response = deliver("ping__ping")
    assert response.status_code == 200
    body = response.json()
    assert body["event"] == "ping"
    assert body["status"] in {"success", "ignored"}
    assert response.callbacks == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "ping"
    assert delivery.repository == REPO
    assert github.requests == []


@pytest.mark.parametrize("fixture", ["pull_request__closed", "workflow_job__completed_success"])
def test_ignored_events_are_answered_with_2xx_and_recorded_as_ignored(deliver, github, fixture):
    response = deliver(fixture)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ignored"
    assert body["event"] == fixture.split("__")[0]
    assert body["action"] in {"closed", "completed"}
    assert response.callbacks == []
    assert WebhookDelivery.objects.get().status == DeliveryStatus.IGNORED
    assert Build.objects.count() == 0
    assert PullRequest.objects.count() == 0
    assert github.requests == []


def test_an_unknown_event_is_logged_and_acknowledged(deliver, caplog):
    with caplog.at_level(logging.INFO, logger="spells.webhooks"):
        response = deliver("star__created")
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert response.callbacks == []
    delivery = WebhookDelivery.objects.get()
    assert (delivery.event, delivery.action, delivery.status) == (
        "star",
        "created",
        DeliveryStatus.IGNORED,
    )
    assert any(getattr(r, "event", None) == "star" for r in caplog.records)


def test_pull_request_opened_fetches_every_page_of_files_and_the_diff(deliver, github):
    route_pr_files(github)
    # Builds of the PR's head commit that arrived before the PR event get its number.
    earlier = Build.objects.create(repository=REPO, commit_sha=HEAD_SHA, status=BuildStatus.FAILED)
    other_commit = Build.objects.create(repository=REPO, commit_sha="e" * 40)

    response = deliver("pull_request__opened")

    assert response.status_code == 202
    body = response.json()
    delivery = WebhookDelivery.objects.get()
    # The seed's response shape; files are not known yet (they are fetched by the job).
    assert body == {
        "status": "success",
        "event": "pull_request",
        "action": "opened",
        "delivery": delivery.delivery_id,
        "pr_processing": {"repo": REPO, "pr_number": 42, "files_changed": [], "status": "queued"},
        "matched_spells": [],
        "auto_generated_spell_id": None,
        "jobs": [f"gh-{delivery.delivery_id}"],
    }

    pr = PullRequest.objects.get()
    assert (pr.repository, pr.number, pr.head_sha, pr.state, pr.author) == (
        REPO,
        42,
        HEAD_SHA,
        "open",
        "mira-okafor",
    )
    assert pr.files_changed == PAGE_1 + PAGE_2  # both pages, in order
    assert pr.fetch_status == "success"
    assert pr.fetched_at is not None
    assert "import quuxlib" in pr.diff
    assert LEAKED not in pr.diff  # secrets in diffs are redacted before storing
    earlier.refresh_from_db()
    other_commit.refresh_from_db()
    assert earlier.pull_request == 42
    assert other_commit.pull_request is None

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PROCESSED
    assert delivery.attempts == 1
    assert delivery.result["files_changed"] == PAGE_1 + PAGE_2
    assert delivery.result["builds_attached"] == 1

    files_1, files_2, diff = github.requests
    assert files_1.url.path == f"/repos/{REPO}/pulls/42/files"
    assert files_1.url.params["per_page"] == "100"
    assert files_2.url.params["page"] == "2"  # followed the Link header
    assert diff.headers["accept"] == "application/vnd.github.diff"
    for request in github.requests:
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["x-github-api-version"] == "2022-11-28"


def test_pull_request_synchronize_refreshes_the_pr_and_answers_with_what_is_known(deliver, github):
    route_pr_files(github)
    deliver("pull_request__opened")
    # A failing build of the new head commit was matched and another one drafted a spell.
    build = Build.objects.create(repository=REPO, commit_sha=SYNC_SHA, status=BuildStatus.FAILED)
    known = add_spell(
        title="quuxlib missing", regex=r"No module named 'quuxlib'", sample=FAILED_LINE
    )
    SpellMatch.objects.create(build=build, spell=known, score=90, reason="pattern")
    drafted = Spell.objects.create(title="Drafted", description="d" * 20, auto_generated=True)
    SpellGeneration.objects.create(
        fingerprint="f" * 32, build=build, spell=drafted, status=GenerationStatus.COMPLETED
    )
    route_pr_files(github)

    response = deliver("pull_request__synchronize")

    assert response.status_code == 202
    body = response.json()
    assert body["action"] == "synchronize"
    assert body["pr_processing"] == {
        "repo": REPO,
        "pr_number": 42,
        "files_changed": PAGE_1 + PAGE_2,  # known from the earlier fetch
        "status": "success",
    }
    assert body["matched_spells"] == [known.pk]
    assert body["auto_generated_spell_id"] == drafted.pk
    pr = PullRequest.objects.get()
    assert pr.head_sha == SYNC_SHA
    assert pr.fetch_status == "success"
    build.refresh_from_db()
    assert build.pull_request == 42
    assert PullRequest.objects.count() == 1


def test_pull_request_attaches_only_builds_of_its_own_repository(deliver, github):
    route_pr_files(github)
    fork_build = Build.objects.create(repository="mira-okafor/widget-service", commit_sha=HEAD_SHA)
    deliver("pull_request__opened")
    fork_build.refresh_from_db()
    assert fork_build.pull_request is None


def test_pull_request_files_404_fails_the_delivery_with_the_reason(deliver, github):
    github.on(
        "GET",
        f"{API}/repos/{REPO}/pulls/42/files",
        json_response(
            404,
            {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"},
        ),
    )
    response = deliver("pull_request__opened")
    assert response.status_code == 202  # accepted; the job failed afterwards
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert "404" in delivery.error and "Not Found" in delivery.error
    pr = PullRequest.objects.get()
    assert pr.fetch_status == "failed"
    assert "404" in pr.fetch_error


def test_pull_request_rate_limited_is_retried_later_not_failed(deliver, github):
    from django_q.models import Schedule

    github.on("GET", f"{API}/repos/{REPO}/pulls/42/files", rate_limited(reset_in=120))
    deliver("pull_request__opened")

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.RECEIVED  # not failed: it will run again
    assert "rate limit" in delivery.error
    retry = Schedule.objects.get(func="spells.tasks.process_delivery")
    assert retry.schedule_type == Schedule.ONCE
    assert ast.literal_eval(retry.args) == (delivery.delivery_id,)
    wait = (retry.next_run - timezone.now()).total_seconds()
    assert 60 < wait <= 125  # when GitHub said the quota resets

    # When the schedule comes due the delivery runs again, and this time GitHub answers.
    route_pr_files(github)
    run_due_schedules()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PROCESSED
    assert delivery.attempts == 2
    assert PullRequest.objects.get().files_changed == PAGE_1 + PAGE_2


def test_secondary_rate_limit_honours_retry_after(deliver, github):
    from django_q.models import Schedule

    github.on(
        "GET",
        f"{API}/repos/{REPO}/pulls/42/files",
        json_response(
            403,
            {"message": "You have exceeded a secondary rate limit."},
            headers={"retry-after": "30"},
        ),
    )
    deliver("pull_request__opened")
    assert WebhookDelivery.objects.get().status == DeliveryStatus.RECEIVED
    retry = Schedule.objects.get(func="spells.tasks.process_delivery")
    wait = (retry.next_run - timezone.now()).total_seconds()
    assert 20 < wait <= 31


def test_a_delivery_that_keeps_being_rate_limited_ends_failed(deliver, github):
    from spells.tasks import MAX_DELIVERY_ATTEMPTS, process_delivery

    github.on(
        "GET",
        f"{API}/repos/{REPO}/pulls/42/files",
        *[rate_limited() for _ in range(MAX_DELIVERY_ATTEMPTS + 1)],
    )
    deliver("pull_request__opened")
    delivery = WebhookDelivery.objects.get()
    for _ in range(MAX_DELIVERY_ATTEMPTS):
        process_delivery(delivery.delivery_id)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED


def test_workflow_job_failure_downloads_the_log_and_matches_a_known_spell(deliver, github):
    spell = add_spell(
        title="A Python dependency is not installed",
        regex=r"ModuleNotFoundError: No module named '[\w.]+'",
        sample="ModuleNotFoundError: No module named 'requests'",
    )
    route_job_log(github, JOB_ID, FAILED_LOG)

    response = deliver("workflow_job__completed_failure")

    assert response.status_code == 202
    body = response.json()
    delivery = WebhookDelivery.objects.get()
    assert (body["status"], body["event"], body["action"]) == (
        "success",
        "workflow_job",
        "completed",
    )
    assert body["jobs"] == [f"gh-{delivery.delivery_id}"]

    build = Build.objects.get()
    assert build.source == "github"
    assert build.external_id == f"job:{JOB_ID}"
    assert (build.repository, build.commit_sha, build.branch, build.job_name) == (
        REPO,
        HEAD_SHA,
        "feature/payments-client",
        "tests (3.12)",
    )
    assert build.status == BuildStatus.FAILED
    assert log_text(build) == FAILED_LOG
    assert build.analysis_status == AnalysisStatus.DONE
    assert build.primary_error == FAILED_LINE
    match = SpellMatch.objects.get(build=build)
    assert match.spell == spell
    assert match.reason == "pattern"
    assert FAILED_LINE in match.matched_text
    spell.refresh_from_db()
    assert spell.match_count == 1
    assert SpellGeneration.objects.count() == 0  # a known failure drafts nothing
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PROCESSED
    assert delivery.result == {"builds": [str(build.pk)]}

    api_call, blob_call = github.requests
    assert api_call.url.path == f"/repos/{REPO}/actions/jobs/{JOB_ID}/logs"
    assert api_call.headers["authorization"] == f"Bearer {TOKEN}"
    assert blob_call.url.host == BLOB_HOST
    assert "authorization" not in blob_call.headers  # the token never goes to the blob host


def test_workflow_job_failure_nobody_knows_drafts_a_spell_with_the_llm(
    deliver, github, openai_draft
):
    PullRequest.objects.create(
        repository=REPO,
        number=42,
        head_sha=HEAD_SHA,
        files_changed=["scripts/migrate.py", "requirements.txt"],
        fetch_status="success",
    )
    assert Spell.objects.count() == 0
    route_job_log(github, JOB_ID, FAILED_LOG)

    deliver("workflow_job__completed_failure")

    build = Build.objects.get()
    assert SpellMatch.objects.count() == 0
    spell = Spell.objects.get()
    assert spell.title == DRAFT["title"]
    assert spell.description == DRAFT["description"]
    assert spell.solution_code == DRAFT["solution_code"]
    assert spell.auto_generated is True
    assert spell.human_reviewed is False
    assert spell.status == SpellStatus.DRAFT
    assert spell.source == SpellSource.AUTO
    assert spell.confidence_score == 72
    assert spell.fingerprints == [build.primary_fingerprint]
    assert spell.origin_build_id == build.pk
    assert spell.origin_error == FAILED_LINE
    assert spell.error_type == "ModuleNotFoundError"
    pattern = spell.patterns.get()
    assert pattern.sample == FAILED_LINE
    assert re.search(pattern.regex, pattern.sample)
    assert re.search(pattern.regex, "ModuleNotFoundError: No module named 'otherlib'")
    generation = SpellGeneration.objects.get()
    assert generation.status == GenerationStatus.COMPLETED
    assert generation.fingerprint == build.primary_fingerprint
    assert generation.spell == spell
    assert spell.revisions.get().action == "auto-generated"

    # The seed's prompt: the error, its code context and the PR context.
    (prompt,) = openai_draft.prompts()
    assert f"Error Message: {FAILED_LINE}" in prompt
    assert "Error Type: ModuleNotFoundError" in prompt
    assert "import quuxlib.frobnicate" in prompt
    assert f"Repository: {REPO}" in prompt
    assert "PR Number: 42" in prompt
    assert "Files Changed: scripts/migrate.py, requirements.txt" in prompt
    output = LLMOutput.objects.get()
    assert output.purpose == "spells.draft"
    assert spell.llm_output == output


def test_workflow_job_log_404_still_finishes_the_build(deliver, github):
    github.on(
        "GET",
        f"{API}/repos/{REPO}/actions/jobs/{JOB_ID}/logs",
        json_response(404, {"message": "Not Found"}),
    )
    deliver("workflow_job__completed_failure")
    build = Build.objects.get()
    assert build.status == BuildStatus.FAILED  # a terminal state, with the reason in the log
    assert "could not download the job log" in log_text(build)
    assert "404" in log_text(build)
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PROCESSED


def test_workflow_job_log_rate_limited_is_fetched_later(
    deliver, github, django_capture_on_commit_callbacks
):
    from django_q.models import Schedule

    github.on("GET", f"{API}/repos/{REPO}/actions/jobs/{JOB_ID}/logs", rate_limited(reset_in=300))
    deliver("workflow_job__completed_failure")
    build = Build.objects.get()
    assert build.status == BuildStatus.RUNNING  # waiting for its log, not failed
    assert build.log_bytes == 0
    retry = Schedule.objects.get(func="spells.tasks.fetch_job_log")
    assert ast.literal_eval(retry.args) == (str(build.pk), REPO, JOB_ID)

    route_job_log(github, JOB_ID, FAILED_LOG)
    with django_capture_on_commit_callbacks(execute=True):
        run_due_schedules()
    build.refresh_from_db()
    assert build.status == BuildStatus.FAILED
    assert log_text(build) == FAILED_LOG
    assert build.analysis_status == AnalysisStatus.DONE


def test_workflow_run_failure_lists_its_jobs_and_ingests_only_failed_ones(deliver, github):
    def job(job_id: int, name: str, conclusion: str) -> dict[str, Any]:
        return {
            "id": job_id,
            "run_id": RUN_ID,
            "name": name,
            "status": "completed",
            "conclusion": conclusion,
            "head_sha": HEAD_SHA,
            "head_branch": "feature/payments-client",
            "html_url": f"https://github.com/{REPO}/actions/runs/{RUN_ID}/job/{job_id}",
            "started_at": "2024-05-01T10:00:00Z",
            "completed_at": "2024-05-01T10:01:02Z",
        }

    jobs_url = f"{API}/repos/{REPO}/actions/runs/{RUN_ID}/jobs"
    page2 = (
        f"{API}/repositories/700123/actions/runs/{RUN_ID}/jobs?per_page=100&filter=latest&page=2"
    )
    github.on(
        "GET",
        jobs_url,
        json_response(
            200,
            {
                "total_count": 4,
                "jobs": [
                    job(101, "lint", "success"),
                    job(102, "tests (3.12)", "failure"),
                    job(103, "docs", "skipped"),
                ],
            },
            headers={"link": link(page2, "next")},
        ),
    )
    github.on(
        "GET",
        page2,
        json_response(200, {"total_count": 4, "jobs": [job(104, "typecheck", "timed_out")]}),
    )
    route_job_log(github, 102, FAILED_LOG)
    route_job_log(github, 104, TIMEOUT_LOG)

    response = deliver("workflow_run__completed_failure")

    assert response.status_code == 202
    builds = {b.external_id: b for b in Build.objects.all()}
    assert set(builds) == {"job:102", "job:104"}
    assert builds["job:102"].job_name == "tests (3.12)"
    assert log_text(builds["job:102"]) == FAILED_LOG
    assert log_text(builds["job:104"]) == TIMEOUT_LOG
    assert all(b.status == BuildStatus.FAILED for b in builds.values())
    assert all(b.commit_sha == HEAD_SHA for b in builds.values())
    assert github.requests[0].url.params["filter"] == "latest"
    assert github.requests[1].url.params["page"] == "2"
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PROCESSED
    assert sorted(delivery.result["builds"]) == sorted(str(b.pk) for b in builds.values())


def test_workflow_job_and_workflow_run_about_the_same_job_make_one_build(deliver, github):
    route_job_log(github, JOB_ID, FAILED_LOG)
    deliver("workflow_job__completed_failure")
    github.on(
        "GET",
        f"{API}/repos/{REPO}/actions/runs/{RUN_ID}/jobs",
        json_response(
            200,
            {
                "total_count": 1,
                "jobs": [
                    {
                        "id": JOB_ID,
                        "name": "tests (3.12)",
                        "conclusion": "failure",
                        "head_sha": HEAD_SHA,
                    }
                ],
            },
        ),
    )
    deliver("workflow_run__completed_failure")
    assert Build.objects.count() == 1
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.PROCESSED).count() == 2


def test_check_run_of_github_actions_uses_the_job_log(deliver, github):
    route_job_log(github, ACTIONS_CHECK_ID, FAILED_LOG)
    response = deliver("check_run__completed_failure_actions")
    assert response.status_code == 202
    build = Build.objects.get()
    assert build.external_id == f"job:{ACTIONS_CHECK_ID}"
    assert build.branch == "feature/payments-client"
    assert log_text(build) == FAILED_LOG
    assert build.primary_error == FAILED_LINE


def test_check_run_of_another_ci_uses_its_output_text(deliver, github):
    response = deliver("check_run__completed_failure_external")
    assert response.status_code == 202
    assert github.requests == []  # nothing to download: the output is the log
    build = Build.objects.get()
    assert build.external_id == f"check:{EXTERNAL_CHECK_ID}"
    assert build.job_name == "buildkite/widget-service/go-tests"
    assert build.status == BuildStatus.FAILED
    text = log_text(build)
    assert "go test ./... failed" in text
    assert "--- FAIL: TestInvoiceTotals (0.00s)" in text
    assert build.analysis_status == AnalysisStatus.DONE
    assert build.primary_error == "--- FAIL: TestInvoiceTotals (0.00s)"
    assert WebhookDelivery.objects.get().status == DeliveryStatus.PROCESSED


def test_check_run_of_another_ci_delivered_twice_makes_one_build(deliver):
    deliver("check_run__completed_failure_external")
    deliver("check_run__completed_failure_external")  # a new delivery id, the same check run
    assert Build.objects.count() == 1
    assert WebhookDelivery.objects.filter(status=DeliveryStatus.PROCESSED).count() == 2


def test_issues_opened_creates_the_issue(deliver, github):
    response = deliver("issues__opened")
    assert response.status_code == 202
    issue = Issue.objects.get()
    assert (issue.github_repository, issue.github_number, issue.github_author) == (
        REPO,
        131,
        "sam-reyes",
    )
    assert issue.title.startswith("Invoice PDF export crashes")
    assert "UnicodeEncodeError" in issue.description
    assert issue.source == "github"
    assert issue.github_url == f"https://github.com/{REPO}/issues/131"
    assert WebhookDelivery.objects.get().result == {"issue_id": str(issue.pk)}
    assert github.requests == []


def test_issues_edited_updates_the_issue(deliver):
    deliver("issues__opened")
    response = deliver("issues__edited")
    assert response.status_code == 202
    issue = Issue.objects.get()
    assert issue.title.startswith("Invoice PDF export fails")
    assert "Łukasz" in issue.description


def test_issues_edited_for_an_issue_never_seen_creates_it(deliver):
    deliver("issues__edited")
    assert Issue.objects.get().github_number == 131


def test_issues_reopened_opens_the_issue_again(deliver):
    deliver("issues__opened")
    Issue.objects.update(status="closed")
    deliver("issues__reopened")
    assert Issue.objects.get().status == "open"
    assert Issue.objects.count() == 1


def test_pr_comment_is_posted_when_enabled(deliver, github, settings):
    settings.SPELLS_COMMENT_ON_PRS = True
    build = Build.objects.create(repository=REPO, commit_sha=HEAD_SHA, status=BuildStatus.FAILED)
    spell = add_spell(
        title="quuxlib missing", regex=r"No module named 'quuxlib'", sample=FAILED_LINE
    )
    SpellMatch.objects.create(build=build, spell=spell, score=91, reason="pattern")
    route_pr_files(github)
    github.on(
        "POST",
        f"{API}/repos/{REPO}/issues/42/comments",
        json_response(201, {"id": 1, "body": "..."}),
    )
    deliver("pull_request__opened")
    comment = github.requests[-1]
    assert comment.method == "POST"
    assert "quuxlib missing" in json.loads(comment.content)["body"]
    assert PullRequest.objects.get().commented_at is not None


def test_a_github_server_error_is_retried_later_not_failed(deliver, github):
    from django_q.models import Schedule

    github.on(
        "GET",
        f"{API}/repos/{REPO}/pulls/42/files",
        json_response(502, {"message": "Server Error"}),
    )
    deliver("pull_request__opened")
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == DeliveryStatus.RECEIVED
    assert "502" in delivery.error
    assert Schedule.objects.filter(func="spells.tasks.process_delivery").exists()


def test_a_second_run_of_a_delivery_being_processed_does_nothing(deliver, github):
    from spells.tasks import process_delivery

    route_pr_files(github)
    deliver("pull_request__opened")
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PROCESSING)
    assert process_delivery(delivery.delivery_id) == DeliveryStatus.PROCESSING
    delivery.refresh_from_db()
    assert delivery.attempts == 1
