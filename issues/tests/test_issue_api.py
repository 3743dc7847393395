from __future__ import annotations

import json

import httpx
import pytest
from django.db import transaction

from grimoire.testing import json_response, openai_chat, scripted_transport
from issues import services
from issues.models import Issue
from llmcore.models import LLMOutput

pytestmark = pytest.mark.django_db

OPENAI_ENV = {"LLM_PROVIDERS": "openai", "OPENAI_API_KEY": "sk-test-" + "b" * 40}
VALID = {
    "title": "Login button not responding",
    "description": "The login button on the homepage does not respond when clicked in Firefox. "
    "Console shows TypeError: cannot read properties of undefined in src/auth/login.js",
    "priority": "high",
}


def openai_json(obj) -> httpx.Response:
    return openai_chat(json.dumps(obj), prompt_tokens=50, completion_tokens=20)


@pytest.fixture
def llm(monkeypatch, llm_script):
    """Configure a (mocked) OpenAI provider; returns a function that scripts its answers."""
    for key, value in OPENAI_ENV.items():
        monkeypatch.setenv(key, value)
    return lambda *responses: llm_script(*responses, env=OPENAI_ENV)


@pytest.fixture
def no_llm(monkeypatch):
    for key in (
        "LLM_PROVIDERS",
        "LLM_PROVIDER",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GROQ_API_KEY",
        "GITHUB_TOKEN",
        "HUGGINGFACE_API_KEY",
        "HF_TOKEN",
        "CLOUDFLARE_API_KEY",
        "OLLAMA_BASE_URL",
        "OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(key, raising=False)


def test_create_enriches_with_the_llm_after_commit(
    alice_client, llm, django_capture_on_commit_callbacks
):
    transport = llm(
        openai_json(
            {
                "summary": "Clicking login in Firefox does nothing.",
                "tags": ["Bug", "frontend", "UI/UX"],
            }
        )
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post("/issues", VALID, format="json")
    assert response.status_code == 201
    issue = Issue.objects.get(pk=response.json()["id"])
    assert issue.reporter.username == "alice"
    assert issue.enrichment_source == "llm"
    assert issue.enrichment_status == "done"
    assert issue.ai_summary == "Clicking login in Firefox does nothing."
    assert issue.tags == ["bug", "frontend", "ui-ux"]  # normalised into the vocabulary
    assert len(transport.requests) == 1
    body = alice_client.get(f"/issues/{issue.pk}").json()
    assert body["enrichment"]["source"] == "llm"
    assert body["tags"] == ["bug", "frontend", "ui-ux"]


def test_an_issue_has_a_provisional_fallback_before_the_llm_answers(alice_client, llm):
    llm()
    response = alice_client.post("/issues", VALID, format="json")  # on_commit not executed
    body = response.json()
    assert body["enrichment"]["status"] == "pending"
    assert body["ai_summary"]
    assert body["tags"]


def test_tags_outside_the_vocabulary_are_dropped_unless_allowed(
    alice_client, llm, settings, django_capture_on_commit_callbacks
):
    llm(
        openai_json({"summary": "S.", "tags": ["bug", "firefox", "login-flow"]}),
        openai_json({"summary": "S.", "tags": ["bug", "firefox", "login-flow"]}),
    )
    with django_capture_on_commit_callbacks(execute=True):
        first = alice_client.post("/issues", VALID, format="json").json()
    assert Issue.objects.get(pk=first["id"]).tags == ["bug"]
    settings.ISSUES_ALLOW_NEW_TAGS = True
    with django_capture_on_commit_callbacks(execute=True):
        second = alice_client.post("/issues", VALID, format="json").json()
    assert Issue.objects.get(pk=second["id"]).tags == ["bug", "firefox", "login-flow"]


def test_without_any_provider_the_fallback_is_final_and_marked(
    alice_client, no_llm, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        body = alice_client.post("/issues", VALID, format="json").json()
    issue = Issue.objects.get(pk=body["id"])
    assert issue.enrichment_source == "fallback"
    assert issue.enrichment_status == "fallback"
    assert "no LLM provider" in issue.enrichment_note
    assert issue.kind == "bug"
    assert 3 <= len(issue.tags) <= 5
    assert issue.ai_summary and issue.ai_summary != issue.description[: len(issue.ai_summary)]
    assert LLMOutput.objects.count() == 0


def test_a_failing_provider_falls_back_after_retries(
    alice_client, llm, settings, django_capture_on_commit_callbacks
):
    settings.LLM_JOB_MAX_RETRIES = 1
    llm(*[json_response(500, {"error": {"message": "boom"}}) for _ in range(10)])
    with django_capture_on_commit_callbacks(execute=True):
        body = alice_client.post("/issues", VALID, format="json").json()
    issue = Issue.objects.get(pk=body["id"])
    assert issue.enrichment_status == "pending"  # first attempt failed transiently: retrying
    output = issue.llm_output
    assert output.status == "retrying"
    from llmcore.tasks import run_llm_job

    LLMOutput.objects.filter(pk=output.pk).update(next_attempt_at=None)
    run_llm_job(str(output.pk))
    issue.refresh_from_db()
    assert issue.llm_output.status == "failed"
    assert issue.enrichment_source == "fallback"
    assert issue.enrichment_status == "fallback"
    assert "LLM failed" in issue.enrichment_note


def test_invalid_json_from_the_llm_falls_back(
    alice_client, llm, django_capture_on_commit_callbacks
):
    garbage = json_response(
        200,
        {
            "id": "c",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "I think it is a bug"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        },
    )
    llm(garbage, garbage, garbage)
    with django_capture_on_commit_callbacks(execute=True):
        body = alice_client.post("/issues", VALID, format="json").json()
    issue = Issue.objects.get(pk=body["id"])
    assert issue.enrichment_source == "fallback"
    assert issue.tags


def test_an_issue_created_in_a_rolled_back_transaction_is_never_enriched(
    alice, llm, django_capture_on_commit_callbacks
):
    transport = llm()
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.issue_create(title="Crash", description="It crashes", reporter=alice)
        raise RuntimeError("rollback")
    assert Issue.objects.count() == 0
    assert LLMOutput.objects.count() == 0
    assert transport.requests == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"description": "x"}, "title"),
        ({"title": "A title"}, "description"),
        ({"title": "", "description": "x"}, "title"),
        ({"title": "ab", "description": "x"}, "title"),
        ({"title": "t" * 201, "description": "x"}, "title"),
        ({"title": "A title", "description": "d" * 20_001}, "description"),
        ({"title": "A title", "description": "x", "priority": "whenever"}, "priority"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(alice_client, payload, field):
    response = alice_client.post("/issues", payload, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"].startswith(f"{field}:")
    assert Issue.objects.count() == 0


def test_malformed_json_is_a_400(alice_client):
    response = alice_client.post("/issues", data="{oops", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"


def test_anonymous_requests_are_401(anon_client):
    assert anon_client.post("/issues", VALID, format="json").status_code == 401
    assert anon_client.get("/issues").status_code == 401


def test_creation_is_throttled_per_user(alice_client, bob_client, no_llm):
    from rest_framework.throttling import SimpleRateThrottle

    original = SimpleRateThrottle.THROTTLE_RATES
    SimpleRateThrottle.THROTTLE_RATES = {**original, "issue_create": "2/min"}
    try:
        for _ in range(2):
            assert alice_client.post("/issues", VALID, format="json").status_code == 201
        response = alice_client.post("/issues", VALID, format="json")
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "throttled"
        assert bob_client.post("/issues", VALID, format="json").status_code == 201
    finally:
        SimpleRateThrottle.THROTTLE_RATES = original
    assert Issue.objects.count() == 3


def test_list_filters_by_tag_and_priority(alice_client, no_llm):
    alice_client.post("/issues", VALID, format="json")
    alice_client.post(
        "/issues",
        {
            "title": "Add dark mode",
            "description": "Please add a dark theme option",
            "priority": "low",
        },
        format="json",
    )
    assert alice_client.get("/issues").json()["count"] == 2
    low = alice_client.get("/issues?priority=low").json()["results"]
    assert [i["title"] for i in low] == ["Add dark mode"]
    bugs = alice_client.get("/issues?tag=bug").json()["results"]
    assert [i["title"] for i in bugs] == [VALID["title"]]


def test_patch_by_reporter_and_staff_only(alice_client, bob_client, staff_client, no_llm):
    issue_id = alice_client.post("/issues", VALID, format="json").json()["id"]
    assert (
        bob_client.patch(f"/issues/{issue_id}", {"status": "closed"}, format="json").status_code
        == 403
    )
    response = alice_client.patch(f"/issues/{issue_id}", {"status": "in_progress"}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "in_progress"
    # Summary and tags are staff-only.
    assert (
        alice_client.patch(f"/issues/{issue_id}", {"tags": ["x"]}, format="json").status_code == 403
    )
    response = staff_client.patch(
        f"/issues/{issue_id}",
        {"tags": ["Security", "api"], "ai_summary": "Reviewed."},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["tags"] == ["security", "api"]
    assert response.json()["enrichment"]["source"] == "staff"


def test_patch_rejects_unknown_fields_and_empty_bodies(alice_client, no_llm):
    issue_id = alice_client.post("/issues", VALID, format="json").json()["id"]
    assert alice_client.patch(f"/issues/{issue_id}", {}, format="json").status_code == 400
    response = alice_client.patch(f"/issues/{issue_id}", {"reporter": "bob"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("reporter:")


def test_unknown_issue_is_404_in_error_shape(alice_client):
    response = alice_client.get("/issues/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_enrich_endpoint_reruns_enrichment(alice_client, llm, django_capture_on_commit_callbacks):
    llm(
        openai_json({"summary": "First.", "tags": ["bug", "frontend", "api"]}),
        openai_json({"summary": "Second.", "tags": ["bug", "backend", "api"]}),
    )
    with django_capture_on_commit_callbacks(execute=True):
        issue_id = alice_client.post("/issues", VALID, format="json").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/issues/{issue_id}/enrich")
    assert response.status_code == 202
    issue = Issue.objects.get(pk=issue_id)
    assert issue.ai_summary == "Second."
    assert LLMOutput.objects.filter(purpose="issues.enrich").count() == 2


def test_a_superseded_enrichment_result_is_ignored(alice, llm):
    llm(openai_json({"summary": "Old.", "tags": ["bug", "api", "backend"]}))
    issue = services.issue_create(
        title="Crash on save", description="Saving crashes", reporter=alice
    )
    old_output = issue.llm_output
    services.issue_enrich(issue=issue)  # a newer job replaces it
    from llmcore.tasks import run_llm_job

    run_llm_job(str(old_output.pk))
    issue.refresh_from_db()
    assert issue.ai_summary != "Old."


def _gh_payload(
    action: str,
    *,
    title: str = "Crash when saving settings",
    body: str = "Traceback: KeyError in settings/store.py",
    number: int = 7,
) -> dict:
    return {
        "action": action,
        "issue": {
            "number": number,
            "title": title,
            "body": body,
            "html_url": f"https://github.com/acme/app/issues/{number}",
            "user": {"login": "octocat"},
        },
        "repository": {"full_name": "acme/app"},
    }


def test_github_opened_creates_and_edited_updates_the_same_issue(no_llm):
    issue = services.issue_from_github(payload=_gh_payload("opened"))
    assert issue.source == "github"
    assert issue.github_repository == "acme/app"
    assert issue.github_author == "octocat"
    again = services.issue_from_github(
        payload=_gh_payload("edited", title="Crash when saving user settings")
    )
    assert again.pk == issue.pk
    assert Issue.objects.count() == 1
    issue.refresh_from_db()
    assert issue.title == "Crash when saving user settings"


def test_github_reopened_reopens(no_llm):
    issue = services.issue_from_github(payload=_gh_payload("opened"))
    Issue.objects.filter(pk=issue.pk).update(status="closed")
    services.issue_from_github(payload=_gh_payload("reopened"))
    issue.refresh_from_db()
    assert issue.status == "open"


def test_github_issue_without_body_or_number_is_handled(no_llm):
    assert (
        services.issue_from_github(
            payload={"action": "opened", "issue": {}, "repository": {"full_name": "a/b"}}
        )
        is None
    )
    issue = services.issue_from_github(payload=_gh_payload("opened", body=None))
    assert issue.description == issue.title


def test_labels_are_written_back_when_enabled(no_llm, settings):
    settings.ISSUES_SYNC_GITHUB_LABELS = True
    settings.GITHUB_API_TOKEN = "ghp_" + "x" * 36
    issue = services.issue_from_github(payload=_gh_payload("opened"))
    transport = scripted_transport([json_response(200, [{"name": t} for t in issue.tags])])
    assert (
        services.issue_sync_labels(issue_id=str(issue.pk), client=httpx.Client(transport=transport))
        is True
    )
    request = transport.requests[0]
    assert request.url.path == "/repos/acme/app/issues/7/labels"
    assert json.loads(request.content) == {"labels": issue.tags}
    assert request.headers["authorization"].startswith("Bearer ghp_")
    issue.refresh_from_db()
    assert issue.labels_synced_at is not None


def test_label_sync_failure_raises_so_the_task_is_marked_failed(no_llm, settings):
    settings.GITHUB_API_TOKEN = "ghp_" + "x" * 36
    issue = services.issue_from_github(payload=_gh_payload("opened"))
    transport = scripted_transport([json_response(403, {"message": "Resource not accessible"})])
    with pytest.raises(httpx.HTTPStatusError):
        services.issue_sync_labels(issue_id=str(issue.pk), client=httpx.Client(transport=transport))
