"""The LLM jobs API end to end: submit, list, detail, feedback, re-run, regenerate, metrics,
code generation. Providers are mocked at the httpx transport; nothing leaves the process."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import httpx
import pytest

from grimoire.testing import OPENAI_TEST_ENV, openai_chat
from llmcore import services
from llmcore.models import Feedback, JobStatus, LLMOutput
from llmcore.serializers import MAX_CONTEXT_BYTES

pytestmark = pytest.mark.django_db

JOBS = "/api/v1/llm_jobs"
OUTPUTS = "/api/v1/llm_outputs"
METRICS = "/api/v1/llm/metrics"
GENERATE = "/api/ai/generate"
OPENAI_ENV = OPENAI_TEST_ENV


def openai_ok(text: str, *, model: str = "gpt-4o-mini") -> httpx.Response:
    return openai_chat(text, model=model, prompt_tokens=20, completion_tokens=7)


@pytest.fixture
def provider(llm_script):
    """Script the provider's answers: `provider(resp, ...)` returns the recording transport."""
    return llm_script


@pytest.fixture
def enqueued(monkeypatch):
    """What reached the broker (function, args, q_options) once transactions committed."""
    sent: list[tuple[str, tuple, dict]] = []

    def record(func, *args, q_options=None, **kwargs):
        sent.append((func, args, q_options or {}))

    monkeypatch.setattr("grimoire.jobs.async_task", record)
    return sent


@pytest.fixture
def template(db):
    return services.prompt_template_save(
        name="explain-failure",
        body="Explain {{error}} in {{language}}.",
        system_prompt="You are a CI expert.",
        model="gpt-4o-mini",
    )


def submit(user, **kwargs) -> LLMOutput:
    kwargs.setdefault("prompt", "Explain {{error}}")
    kwargs.setdefault("context", {"error": "ImportError: no module named foo"})
    return services.llm_job_submit(user=user, **kwargs)


def finish(output: LLMOutput, **fields) -> LLMOutput:
    """Mark a job as answered without a provider (for list, filter and metrics tests)."""
    values = {
        "status": JobStatus.COMPLETED,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "raw_response": "answer",
        "latency_ms": 120.0,
        "input_tokens": 10,
        "output_tokens": 5,
    }
    values.update(fields)
    LLMOutput.objects.filter(pk=output.pk).update(**values)
    output.refresh_from_db()
    return output


def assert_error(response, status: int, field: str | None = None, code: str | None = None):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["message"]
    if code:
        assert error["code"] == code
    if field:
        named = field in error["message"] or field in json.dumps(error["details"])
        assert named, f"{field!r} not named in {error}"
    return error


def assert_queued(response, *, user) -> LLMOutput:
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"job_id", "output_id", "status", "estimated_completion"}
    assert body["status"] == "queued"
    output = LLMOutput.objects.get(pk=body["output_id"])
    assert str(output.job_id) == body["job_id"]
    assert output.user == user
    assert output.status == JobStatus.PENDING
    eta = datetime.fromisoformat(body["estimated_completion"])
    assert eta.tzinfo is not None
    assert eta >= output.created_at
    return output


# --- POST /api/v1/llm_jobs ----------------------------------------------------------------------


def test_a_prompt_job_is_queued_with_202_and_stored(alice, alice_client):
    response = alice_client.post(
        JOBS, {"prompt": "Explain {{error}}", "context": {"error": "SIGSEGV"}}, format="json"
    )
    output = assert_queued(response, user=alice)
    assert output.prompt == "Explain SIGSEGV"
    assert output.context == {"error": "SIGSEGV"}
    assert output.template is None
    assert output.priority == "default"
    assert output.output_format == "text"


def test_the_job_is_enqueued_only_when_the_request_commits_and_then_runs(
    alice, alice_client, provider, django_capture_on_commit_callbacks
):
    transport = provider(openai_ok("Install the missing module."))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = alice_client.post(
            JOBS, {"prompt": "Explain {{error}}", "context": {"error": "boom"}}, format="json"
        )
    assert len(callbacks) == 1
    output_id = response.json()["output_id"]
    assert len(transport.requests) == 1
    detail = alice_client.get(f"{OUTPUTS}/{output_id}").json()
    assert detail["status"] == "completed"
    assert detail["raw_response"] == "Install the missing module."
    assert detail["provider"] == "openai"
    assert detail["usage"] == {"input_tokens": 20, "output_tokens": 7, "cached_tokens": 0}
    assert [a["status"] for a in detail["provider_chain"]] == ["ok"]


def test_a_template_job_by_name_uses_the_live_version(alice, alice_client, template):
    newer = services.prompt_template_save(
        name=template.name, body="Explain {{error}} briefly, in {{language}}."
    )
    response = alice_client.post(
        JOBS,
        {"template": template.name, "context": {"error": "E1", "language": "Go"}},
        format="json",
    )
    output = assert_queued(response, user=alice)
    assert output.template == newer
    assert output.prompt == "Explain E1 briefly, in Go."
    assert output.purpose == template.name


def test_template_name_is_accepted_as_the_field_name_too(alice, alice_client, template):
    response = alice_client.post(
        JOBS,
        {"template_name": template.name, "context": {"error": "E1", "language": "Go"}},
        format="json",
    )
    output = assert_queued(response, user=alice)
    assert output.template == template
    assert output.system_prompt == "You are a CI expert."
    assert output.requested_model == "gpt-4o-mini"  # the template's default model


def test_a_template_job_by_id_uses_that_exact_version(alice, alice_client, template):
    services.prompt_template_save(name=template.name, body="A newer body {{error}} {{language}}")
    response = alice_client.post(
        JOBS,
        {"template": str(template.pk), "context": {"error": "E1", "language": "Go"}},
        format="json",
    )
    output = assert_queued(response, user=alice)
    assert output.template == template  # not live any more, but asked for by id
    assert output.prompt == "Explain E1 in Go."


def test_model_format_priority_and_parameters_are_stored(alice, alice_client):
    response = alice_client.post(
        JOBS,
        {
            "prompt": "Summarize {{x}}",
            "context": {"x": "the log"},
            "model": "gpt-4.1",
            "format": "markdown",
            "priority": "high",
            "max_tokens": 300,
            "temperature": 0.2,
        },
        format="json",
    )
    output = assert_queued(response, user=alice)
    assert output.requested_model == "gpt-4.1"
    assert output.output_format == "markdown"
    assert output.priority == "high"
    assert output.max_tokens == 300
    assert output.temperature == 0.2


def test_priority_picks_the_queue(alice_client, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for priority in ("high", "default", "low"):
            response = alice_client.post(
                JOBS, {"prompt": "hi", "priority": priority}, format="json"
            )
            assert response.status_code == 202
    assert [q["cluster"] for _, _, q in enqueued] == ["high", "default", "low"]
    assert {func for func, _, _ in enqueued} == {"llmcore.tasks.run_llm_job"}
    # The task name is the job id, so a duplicate enqueue is recognisable in the queue.
    for _, args, options in enqueued:
        output = LLMOutput.objects.get(pk=args[0])
        assert options["task_name"] == f"llm-{output.job_id}"


def test_a_json_schema_makes_a_json_job(alice, alice_client):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    response = alice_client.post(
        JOBS, {"prompt": "Is it ok?", "json_schema": schema}, format="json"
    )
    output = assert_queued(response, user=alice)
    assert output.output_format == "json"
    assert output.json_schema == schema


def test_secrets_in_the_context_are_redacted_before_the_prompt_is_stored(alice, alice_client):
    token = "ghp_" + "Ab3" * 12
    response = alice_client.post(
        JOBS,
        {"prompt": "Why does {{log}} fail?", "context": {"log": f"push with {token} denied"}},
        format="json",
    )
    output = assert_queued(response, user=alice)
    assert token not in output.prompt
    assert token not in json.dumps(output.context)
    assert "REDACTED" in output.prompt


BAD_SUBMISSIONS = [
    pytest.param({"context": {"error": "x"}}, "template", id="neither-template-nor-prompt"),
    pytest.param(
        {"template": "explain-failure", "prompt": "Explain", "context": {}},
        "template",
        id="both-template-and-prompt",
    ),
    pytest.param(
        {"template_name": "explain-failure", "prompt": "Explain"},
        "template",
        id="both-template-name-and-prompt",
    ),
    pytest.param(
        {"template": "no-such-template", "context": {}}, "template", id="unknown-template"
    ),
    pytest.param({"template": "987654", "context": {}}, "template", id="unknown-template-id"),
    pytest.param(
        {"template": "explain-failure", "context": {"error": "x"}},
        "language",
        id="missing-template-variable",
    ),
    pytest.param({"prompt": "Explain {{error}}"}, "error", id="missing-prompt-variable"),
    pytest.param({"prompt": "hi", "priority": "urgent"}, "priority", id="bad-priority"),
    pytest.param({"prompt": "hi", "format": "pdf"}, "format", id="bad-format"),
    pytest.param({"prompt": "hi", "context": ["a", "b"]}, "context", id="context-not-an-object"),
    pytest.param({"prompt": "hi", "temperature": 7}, "temperature", id="temperature-out-of-range"),
    pytest.param({"prompt": "hi", "max_tokens": 0}, "max_tokens", id="max-tokens-zero"),
    pytest.param({"prompt": "   "}, "prompt", id="blank-prompt"),
    pytest.param({"prompt": "{{x}}", "context": {"x": ""}}, "prompt", id="prompt-renders-empty"),
    pytest.param(
        {"prompt": "hi", "context": {"log": "x" * (MAX_CONTEXT_BYTES + 10)}},
        "context",
        id="oversized-context",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_SUBMISSIONS)
def test_bad_submissions_are_a_400_naming_the_field_and_write_nothing(
    alice_client, template, enqueued, django_capture_on_commit_callbacks, body, field
):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(JOBS, body, format="json")
    assert_error(response, 400, field)
    assert LLMOutput.objects.count() == 0
    assert enqueued == []


def test_missing_template_variables_are_listed_in_the_details(alice_client, template):
    response = alice_client.post(JOBS, {"template": template.name, "context": {}}, format="json")
    error = assert_error(response, 400, "context")
    assert sorted(error["details"]["context"]["missing"]) == ["error", "language"]


def test_a_body_that_is_not_json_is_a_400(alice_client):
    response = alice_client.post(JOBS, b"{not json", content_type="application/json")
    assert_error(response, 400, code="malformed_request")
    assert LLMOutput.objects.count() == 0


def test_submitting_needs_a_token(anon_client):
    response = anon_client.post(JOBS, {"prompt": "hi"}, format="json")
    assert_error(response, 401)
    assert LLMOutput.objects.count() == 0


def test_a_bad_token_is_a_401(db):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert_error(client.post(JOBS, {"prompt": "hi"}, format="json"), 401)


# --- GET /api/v1/llm_outputs and /{id} ----------------------------------------------------------


def test_users_list_only_their_own_outputs_and_staff_list_all(
    alice, bob, alice_client, bob_client, staff_client
):
    mine = {str(submit(alice).pk), str(submit(alice).pk)}
    theirs = {str(submit(bob).pk)}

    def ids(client):
        response = client.get(OUTPUTS)
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == len(body["results"])
        return {row["id"] for row in body["results"]}

    assert ids(alice_client) == mine
    assert ids(bob_client) == theirs
    assert ids(staff_client) == mine | theirs


def test_the_list_leaves_out_prompts_and_answers(alice, alice_client):
    finish(submit(alice))
    row = alice_client.get(OUTPUTS).json()["results"][0]
    assert "prompt" not in row
    assert "raw_response" not in row
    assert row["status"] == "completed"


def test_the_list_filters_by_status_template_model_and_provider(alice, alice_client, template):
    done = finish(submit(alice))
    failed = finish(submit(alice), status=JobStatus.FAILED, provider="", model="")
    by_template = submit(
        alice, prompt=None, template=template, context={"error": "e", "language": "Go"}
    )
    other_model = finish(submit(alice), model="claude-sonnet-4-5", provider="anthropic")

    def ids(query):
        response = alice_client.get(OUTPUTS, query)
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    assert ids({"status": "completed"}) == {str(done.pk), str(other_model.pk)}
    assert ids({"status": "failed"}) == {str(failed.pk)}
    assert ids({"status": "pending"}) == {str(by_template.pk)}
    assert ids({"template": template.name}) == {str(by_template.pk)}
    assert ids({"model": "claude-sonnet-4-5"}) == {str(other_model.pk)}
    assert ids({"provider": "anthropic"}) == {str(other_model.pk)}
    assert ids({"provider": "openai", "status": "completed"}) == {str(done.pk)}
    assert ids({"model": "no-such-model"}) == set()


def test_filters_never_widen_a_users_view(alice, bob, bob_client):
    finish(submit(alice))
    assert bob_client.get(OUTPUTS, {"status": "completed"}).json()["results"] == []
    assert bob_client.get(OUTPUTS, {"provider": "openai"}).json()["results"] == []


def test_the_detail_shows_the_whole_job(alice, alice_client, template):
    output = submit(alice, prompt=None, template=template, context={"error": "E", "language": "C"})
    response = alice_client.get(f"{OUTPUTS}/{output.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(output.pk)
    assert body["job_id"] == str(output.job_id)
    assert body["status"] == "pending"
    assert body["template"] == {"id": template.pk, "name": template.name, "version": 1}
    assert body["prompt"] == "Explain E in C."
    assert body["system_prompt"] == "You are a CI expert."
    assert body["feedback"] == {"up": 0, "down": 0, "mine": None}
    assert body["parent"] is None


def test_staff_can_read_any_output(alice, staff_client):
    output = submit(alice)
    response = staff_client.get(f"{OUTPUTS}/{output.pk}")
    assert response.status_code == 200
    assert response.json()["id"] == str(output.pk)


def test_an_unknown_output_is_a_404_in_the_error_shape(alice_client):
    assert_error(alice_client.get(f"{OUTPUTS}/{uuid.uuid4()}"), 404, code="not_found")


def test_reading_outputs_needs_a_token(alice, anon_client):
    output = submit(alice)
    assert_error(anon_client.get(OUTPUTS), 401)
    assert_error(anon_client.get(f"{OUTPUTS}/{output.pk}"), 401)


# --- Access control: another user's output is not found ----------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("get", "", None),
        ("post", "/feedback", {"vote": "up"}),
        ("post", "/feedback", {"vote": "sideways"}),  # bad input still says nothing about it
        ("post", "/re_run", None),
        ("post", "/regenerate", {"model": "gpt-4.1"}),
        ("post", "/regenerate", {"context": {"error": "new"}}),
    ],
)
def test_users_cannot_touch_another_users_output(
    alice, bob_client, enqueued, django_capture_on_commit_callbacks, method, suffix, body
):
    output = finish(submit(alice))
    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(bob_client, method)(
            f"{OUTPUTS}/{output.pk}{suffix}", body, format="json"
        )
    assert_error(response, 404, code="not_found")
    assert LLMOutput.objects.count() == 1
    assert Feedback.objects.count() == 0
    assert enqueued == []
    # Exactly what an id that does not exist answers: the output's existence is not revealed.
    missing = getattr(bob_client, method)(f"{OUTPUTS}/{uuid.uuid4()}{suffix}", body, format="json")
    assert missing.status_code == 404
    assert missing.json() == response.json()


# --- Feedback -----------------------------------------------------------------------------------


def test_a_thumbs_up_is_recorded(alice, alice_client):
    output = finish(submit(alice))
    response = alice_client.post(
        f"{OUTPUTS}/{output.pk}/feedback", {"vote": "up", "comment": "spot on"}, format="json"
    )
    assert response.status_code == 200
    assert response.json() == {
        "output_id": str(output.pk),
        "vote": "up",
        "comment": "spot on",
        "up": 1,
        "down": 0,
    }
    fb = Feedback.objects.get()
    assert (fb.user, fb.output_id, fb.vote, fb.comment) == (
        alice,
        output.pk,
        Feedback.UP,
        "spot on",
    )


def test_voting_again_changes_the_one_vote(alice, alice_client):
    output = finish(submit(alice))
    url = f"{OUTPUTS}/{output.pk}/feedback"
    alice_client.post(url, {"vote": "up"}, format="json")
    response = alice_client.post(url, {"vote": "down", "comment": "wrong fix"}, format="json")
    assert response.status_code == 200
    assert response.json()["up"] == 0
    assert response.json()["down"] == 1
    fb = Feedback.objects.get()
    assert fb.vote == Feedback.DOWN
    assert fb.comment == "wrong fix"
    detail = alice_client.get(f"{OUTPUTS}/{output.pk}").json()
    assert detail["feedback"] == {"up": 0, "down": 1, "mine": Feedback.DOWN}


def test_votes_are_one_per_user(alice, alice_client, staff, staff_client):
    output = finish(submit(alice))
    url = f"{OUTPUTS}/{output.pk}/feedback"
    alice_client.post(url, {"vote": "up"}, format="json")
    response = staff_client.post(url, {"vote": "down"}, format="json")
    assert response.status_code == 200
    assert (response.json()["up"], response.json()["down"]) == (1, 1)
    assert Feedback.objects.filter(output=output).count() == 2
    assert alice_client.get(f"{OUTPUTS}/{output.pk}").json()["feedback"]["mine"] == Feedback.UP


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"vote": "sideways"}, id="unknown-vote"),
        pytest.param({"vote": 5}, id="number-vote"),
        pytest.param({}, id="no-vote"),
        pytest.param({"vote": "up", "comment": "x" * 2001}, id="comment-too-long"),
    ],
)
def test_a_bad_vote_is_a_400_and_records_nothing(alice, alice_client, body):
    output = finish(submit(alice))
    response = alice_client.post(f"{OUTPUTS}/{output.pk}/feedback", body, format="json")
    field = "comment" if "comment" in body else "vote"
    assert_error(response, 400, field)
    assert Feedback.objects.count() == 0


def test_a_bad_vote_does_not_change_an_existing_one(alice, alice_client):
    output = finish(submit(alice))
    url = f"{OUTPUTS}/{output.pk}/feedback"
    alice_client.post(url, {"vote": "up", "comment": "good"}, format="json")
    assert alice_client.post(url, {"vote": "meh"}, format="json").status_code == 400
    fb = Feedback.objects.get()
    assert (fb.vote, fb.comment) == (Feedback.UP, "good")


# --- Re-run -------------------------------------------------------------------------------------


def test_a_re_run_reuses_the_template_version_and_links_to_the_original(
    alice, alice_client, template
):
    original = finish(
        submit(
            alice,
            prompt=None,
            template=template,
            context={"error": "E", "language": "Rust"},
            model="gpt-4.1",
            temperature=0.3,
            max_tokens=200,
            priority="low",
        )
    )
    services.prompt_template_save(name=template.name, body="v2 {{error}} {{language}}")
    response = alice_client.post(f"{OUTPUTS}/{original.pk}/re_run")
    rerun = assert_queued(response, user=alice)
    assert rerun.pk != original.pk
    assert rerun.parent == original
    assert rerun.relation == "re_run"
    assert rerun.template == template  # the same version, not the new live one
    assert rerun.prompt == original.prompt == "Explain E in Rust."
    assert rerun.system_prompt == original.system_prompt
    assert rerun.context == original.context
    assert (rerun.requested_model, rerun.temperature, rerun.max_tokens, rerun.priority) == (
        "gpt-4.1",
        0.3,
        200,
        "low",
    )
    detail = alice_client.get(f"{OUTPUTS}/{rerun.pk}").json()
    assert detail["parent"] == str(original.pk)
    assert detail["relation"] == "re_run"


def test_a_re_run_of_a_prompt_job_sends_the_same_prompt(alice, alice_client):
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    original = finish(submit(alice, json_schema=schema, system_prompt="Be brief."))
    rerun = assert_queued(alice_client.post(f"{OUTPUTS}/{original.pk}/re_run"), user=alice)
    assert rerun.prompt == original.prompt
    assert rerun.system_prompt == "Be brief."
    assert rerun.json_schema == schema
    assert rerun.output_format == "json"
    assert rerun.parent == original


def test_a_re_run_runs_through_the_provider(
    alice, alice_client, provider, django_capture_on_commit_callbacks
):
    transport = provider(openai_ok("first"), openai_ok("second"))
    with django_capture_on_commit_callbacks(execute=True):
        first = alice_client.post(JOBS, {"prompt": "Say hi"}, format="json").json()["output_id"]
    with django_capture_on_commit_callbacks(execute=True):
        second = alice_client.post(f"{OUTPUTS}/{first}/re_run").json()["output_id"]
    assert LLMOutput.objects.get(pk=first).raw_response == "first"
    assert LLMOutput.objects.get(pk=second).raw_response == "second"
    sent = [json.loads(r.content)["messages"] for r in transport.requests]
    assert sent[0] == sent[1]


def test_staff_can_re_run_anyones_output(alice, staff, staff_client):
    original = finish(submit(alice))
    rerun = assert_queued(staff_client.post(f"{OUTPUTS}/{original.pk}/re_run"), user=staff)
    assert rerun.parent == original


def test_a_re_run_of_a_prompt_job_keeps_its_context_for_a_later_regenerate(alice, alice_client):
    original = submit(alice, prompt="Explain {{error}}", context={"error": "old error"})
    rerun_id = alice_client.post(f"{OUTPUTS}/{original.pk}/re_run").json()["output_id"]
    rerun = LLMOutput.objects.get(pk=rerun_id)
    assert rerun.context == original.context
    response = alice_client.post(
        f"{OUTPUTS}/{rerun.pk}/regenerate", {"context": {"error": "new error"}}, format="json"
    )
    regenerated = assert_queued(response, user=alice)
    assert regenerated.prompt == "Explain new error"


# --- Regenerate ---------------------------------------------------------------------------------


def test_regenerate_renders_the_template_with_the_new_context(alice, alice_client, template):
    original = finish(
        submit(alice, prompt=None, template=template, context={"error": "E1", "language": "Go"})
    )
    response = alice_client.post(
        f"{OUTPUTS}/{original.pk}/regenerate", {"context": {"error": "E2"}}, format="json"
    )
    new = assert_queued(response, user=alice)
    assert new.parent == original
    assert new.relation == "regenerate"
    assert new.context == {"error": "E2", "language": "Go"}  # merged over the old context
    assert new.prompt == "Explain E2 in Go."
    assert new.requested_model == original.requested_model


def test_regenerate_with_a_new_model_keeps_the_prompt(alice, alice_client):
    original = finish(submit(alice, model="gpt-4o-mini"))
    response = alice_client.post(
        f"{OUTPUTS}/{original.pk}/regenerate", {"model": "claude-sonnet-4-5"}, format="json"
    )
    new = assert_queued(response, user=alice)
    assert new.requested_model == "claude-sonnet-4-5"
    assert new.prompt == original.prompt
    assert new.parent == original


def test_regenerate_re_renders_a_prompt_job(alice, alice_client):
    original = finish(
        submit(alice, prompt="Explain {{error}} ({{lang}})", context={"error": "A", "lang": "py"})
    )
    response = alice_client.post(
        f"{OUTPUTS}/{original.pk}/regenerate",
        {"context": {"error": "B"}, "model": "gpt-4.1"},
        format="json",
    )
    new = assert_queued(response, user=alice)
    assert new.prompt == "Explain B (py)"
    assert new.requested_model == "gpt-4.1"


def test_the_new_model_reaches_the_provider(
    alice, alice_client, provider, django_capture_on_commit_callbacks
):
    transport = provider(openai_ok("again", model="gpt-4.1"))
    original = finish(submit(alice))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(
            f"{OUTPUTS}/{original.pk}/regenerate", {"model": "gpt-4.1"}, format="json"
        )
    new = LLMOutput.objects.get(pk=response.json()["output_id"])
    assert new.status == JobStatus.COMPLETED
    assert json.loads(transport.requests[0].content)["model"] == "gpt-4.1"
    assert new.model == "gpt-4.1"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="no-changes"),
        pytest.param({"context": {}, "model": ""}, id="empty-changes"),
        pytest.param({"context": "not an object"}, id="context-not-an-object"),
    ],
)
def test_regenerate_without_changes_is_a_400_and_writes_nothing(alice, alice_client, body):
    original = finish(submit(alice))
    response = alice_client.post(f"{OUTPUTS}/{original.pk}/regenerate", body, format="json")
    assert_error(response, 400, "context")
    assert LLMOutput.objects.count() == 1


def test_regenerate_with_an_oversized_context_is_a_400(alice, alice_client):
    original = finish(submit(alice))
    big = {"error": "x" * (MAX_CONTEXT_BYTES + 10)}
    response = alice_client.post(
        f"{OUTPUTS}/{original.pk}/regenerate", {"context": big}, format="json"
    )
    assert_error(response, 400, "context")
    assert LLMOutput.objects.count() == 1


# --- Metrics ------------------------------------------------------------------------------------


def test_metrics_are_for_staff(alice, staff_client, alice_client, anon_client):
    done = finish(submit(alice), cost_usd="0.002", attempts=2)
    finish(submit(alice), status=JobStatus.FAILED, provider="", model="", attempts=1)
    submit(alice)
    services.feedback_set(output=done, user=alice, vote=Feedback.UP)

    response = staff_client.get(METRICS)
    assert response.status_code == 200
    body = response.json()
    assert body["jobs_by_status"]["completed"] == 1
    assert body["jobs_by_status"]["failed"] == 1
    assert body["jobs_by_status"]["pending"] == 1
    assert body["success_rate"] == 0.5
    assert body["retries"] == 1
    assert body["providers"]["openai"]["jobs"] == 1
    assert body["providers"]["openai"]["latency_ms_p50"] == 120.0
    assert body["providers"]["openai"]["cost_usd"] == pytest.approx(0.002)
    assert body["feedback_by_template"][0]["up"] == 1

    assert_error(alice_client.get(METRICS), 403, code="permission_denied")
    assert_error(anon_client.get(METRICS), 401)


def test_metrics_reject_a_bad_window(staff_client):
    assert_error(staff_client.get(METRICS, {"days": "week"}), 400, "days")
    assert_error(staff_client.get(METRICS, {"days": "0"}), 400, "days")


# --- POST /api/ai/generate ----------------------------------------------------------------------


def test_code_generation_is_queued_as_a_markdown_job(alice, alice_client):
    response = alice_client.post(
        GENERATE,
        {"prompt": "Parse a CSV file", "language": "python", "context": "pandas is not allowed"},
        format="json",
    )
    output = assert_queued(response, user=alice)
    assert output.purpose == "ai.generate"
    assert output.output_format == "markdown"
    assert output.priority == "high"
    assert "Parse a CSV file" in output.prompt
    assert "python" in output.prompt
    assert "pandas is not allowed" in output.prompt
    assert output.system_prompt


def test_code_generation_prompts_are_not_template_rendered(alice, alice_client):
    response = alice_client.post(
        GENERATE, {"prompt": "Write a Jinja macro {{ item }}"}, format="json"
    )
    output = assert_queued(response, user=alice)
    assert "{{ item }}" in output.prompt


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "priority": "asap"}, "priority"),
        ({"prompt": "x", "temperature": -1}, "temperature"),
    ],
)
def test_bad_generation_requests_are_a_400(alice_client, body, field):
    assert_error(alice_client.post(GENERATE, body, format="json"), 400, field)
    assert LLMOutput.objects.count() == 0


def test_generation_needs_a_token(anon_client):
    assert_error(anon_client.post(GENERATE, {"prompt": "x"}, format="json"), 401)


def test_regenerate_with_a_context_a_pre_rendered_prompt_cannot_use_is_a_400(alice, alice_client):
    response = alice_client.post(GENERATE, {"prompt": "Parse a CSV file"}, format="json")
    original = LLMOutput.objects.get(pk=response.json()["output_id"])
    response = alice_client.post(
        f"{OUTPUTS}/{original.pk}/regenerate", {"context": {"language": "go"}}, format="json"
    )
    assert_error(response, 400, "context")
    assert LLMOutput.objects.count() == 1
