"""The LLM output pages and the admin: login, ownership, safe rendering of hostile output, the
thumbs / re-run / regenerate forms (with real CSRF checks), changelists, versioned templates."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from grimoire.testing import make_user
from llmcore import services
from llmcore.models import Feedback, JobStatus, LLMOutput, PromptTemplate

pytestmark = pytest.mark.django_db

HOSTILE_HTML = (
    "<p>Fixed by <b>pinning</b> numpy.</p>"
    "<script>alert(1)</script>"
    '<img src="x" onerror="alert(2)">'
    '<a href="javascript:alert(3)">click</a>'
    '<iframe src="https://evil.example"></iframe>'
    "<style>body{display:none}</style>"
)
HOSTILE_MARKDOWN = (
    "# Fix\n\n"
    "Pin **numpy** and re-run `pip install`.\n\n"
    "<script>alert(1)</script>\n\n"
    '<img src="x" onerror="alert(2)">\n\n'
    "[docs](javascript:alert(3)) and [real docs](https://numpy.org)\n"
)
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def browser(user=None) -> Client:
    """A browser that enforces CSRF like production does."""
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def csrf_token(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    match = CSRF_INPUT.search(response.content.decode())
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def post_form(client: Client, output: LLMOutput, action: str, data: dict | None = None):
    token = csrf_token(client, f"/llm_outputs/{output.pk}")
    return client.post(
        f"/llm_outputs/{output.pk}/{action}", {"csrfmiddlewaretoken": token, **(data or {})}
    )


def make_output(user, *, raw: str = "answer", fmt: str = "text", **fields) -> LLMOutput:
    output = services.llm_job_submit(
        user=user,
        prompt="Explain {{error}}",
        context={"error": "ImportError"},
        output_format=fmt,
    )
    values = {
        "status": JobStatus.COMPLETED,
        "raw_response": raw,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "latency_ms": 321.0,
    }
    values.update(fields)
    LLMOutput.objects.filter(pk=output.pk).update(**values)
    output.refresh_from_db()
    return output


def output_block(html: str) -> str:
    """The rendered answer on the detail page (between its container and the action forms)."""
    start = html.index('id="llm-output">')
    end = html.index('<div class="llm-actions">', start)
    return html[start:end]


EVENT_HANDLER = re.compile(r"<[^<>]*\bon[a-z]+\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"""(?:href|src)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def assert_inert(html: str) -> None:
    """No markup in `html` can run code; hostile text shown escaped (as `&lt;img ...`) is fine."""
    lowered = html.lower()
    assert "<script" not in lowered
    assert not EVENT_HANDLER.search(html), EVENT_HANDLER.search(html)
    assert not JAVASCRIPT_URL.search(html), JAVASCRIPT_URL.search(html)
    assert "<iframe" not in lowered
    assert "<style" not in lowered


@pytest.fixture
def superuser(db):
    return make_user("root", superuser=True)


# --- Login and ownership ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/llm_outputs", "/llm_outputs/{pk}"])
def test_pages_need_a_login(alice, path):
    output = make_output(alice)
    url = path.format(pk=output.pk)
    response = browser().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert "next=" in response["Location"]


def test_actions_need_a_login(alice):
    output = make_output(alice)
    response = Client().post(f"/llm_outputs/{output.pk}/up")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert Feedback.objects.count() == 0


def test_the_list_shows_only_my_outputs(alice, bob):
    mine = make_output(alice)
    theirs = make_output(bob)
    html = browser(alice).get("/llm_outputs").content.decode()
    assert "Your LLM outputs" in html
    assert f"/llm_outputs/{mine.pk}" in html
    assert f"/llm_outputs/{theirs.pk}" not in html


def test_staff_see_everyones_outputs_in_the_list(alice, bob, staff):
    outputs = [make_output(alice), make_output(bob)]
    html = browser(staff).get("/llm_outputs").content.decode()
    assert "All LLM outputs" in html
    for output in outputs:
        assert f"/llm_outputs/{output.pk}" in html


def test_the_list_filters_by_status(alice):
    done = make_output(alice)
    failed = make_output(alice, status=JobStatus.FAILED, error="boom")
    html = browser(alice).get("/llm_outputs", {"status": "failed"}).content.decode()
    assert f"/llm_outputs/{failed.pk}" in html
    assert f"/llm_outputs/{done.pk}" not in html


def test_the_list_with_nothing_in_it_says_so(alice):
    response = browser(alice).get("/llm_outputs")
    assert response.status_code == 200
    assert "No outputs yet." in response.content.decode()


def test_another_users_output_page_is_not_found(alice, bob):
    output = make_output(alice)
    assert browser(bob).get(f"/llm_outputs/{output.pk}").status_code == 404
    assert browser(alice).get(f"/llm_outputs/{output.pk}").status_code == 200


def test_staff_can_open_anyones_output_page(alice, staff):
    output = make_output(alice, raw="hello from alice")
    response = browser(staff).get(f"/llm_outputs/{output.pk}")
    assert response.status_code == 200
    assert "hello from alice" in response.content.decode()


@pytest.mark.parametrize("action", ["up", "down", "re_run", "regenerate"])
def test_another_users_output_cannot_be_acted_on(alice, bob, action):
    output = make_output(alice)
    client = Client()  # CSRF is not the point here; ownership is
    client.force_login(bob)
    response = client.post(f"/llm_outputs/{output.pk}/{action}", {"model": "gpt-4.1"})
    assert response.status_code == 404
    assert Feedback.objects.count() == 0
    assert LLMOutput.objects.count() == 1


# --- Safe rendering -----------------------------------------------------------------------------


def test_html_output_is_sanitized_on_the_page(alice):
    output = make_output(alice, raw=HOSTILE_HTML, fmt="html")
    html = browser(alice).get(f"/llm_outputs/{output.pk}").content.decode()
    block = output_block(html)
    assert "<p>Fixed by <b>pinning</b> numpy.</p>" in block  # harmless markup survives
    assert_inert(block)
    assert "alert(1)" not in block  # a <script>'s content is dropped with it
    assert "<script>alert" not in html  # nor anywhere else on the page
    assert not EVENT_HANDLER.search(html)


def test_markdown_output_is_rendered_and_raw_html_in_it_is_escaped(alice):
    output = make_output(alice, raw=HOSTILE_MARKDOWN, fmt="markdown")
    block = output_block(browser(alice).get(f"/llm_outputs/{output.pk}").content.decode())
    assert "<h1>Fix</h1>" in block
    assert "<strong>numpy</strong>" in block
    assert "<code>pip install</code>" in block
    assert 'href="https://numpy.org"' in block
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block  # shown as text, not run
    assert_inert(block)


def test_json_output_is_pretty_printed_and_escaped(alice):
    parsed = {"title": "<script>alert(1)</script>", "confidence_score": 40, "tags": ["ci"]}
    output = make_output(alice, raw=json.dumps(parsed), fmt="json", parsed=parsed)
    block = output_block(browser(alice).get(f"/llm_outputs/{output.pk}").content.decode())
    assert "<pre class='json'>" in block
    # indented, one key per line (PostgreSQL stores JSON with its own key order: no trailing comma)
    assert "\n  &quot;confidence_score&quot;: 40" in block
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block
    assert_inert(block)


def test_invalid_json_output_is_shown_as_escaped_text(alice):
    output = make_output(alice, raw='{"broken": "<img src=x onerror=alert(1)>', fmt="json")
    block = output_block(browser(alice).get(f"/llm_outputs/{output.pk}").content.decode())
    assert "&lt;img src=x onerror=alert(1)&gt;" in block
    assert "<img" not in block


def test_text_output_is_escaped(alice):
    output = make_output(alice, raw="<script>alert(1)</script> & <b>bold</b>")
    block = output_block(browser(alice).get(f"/llm_outputs/{output.pk}").content.decode())
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in block


def test_the_prompt_and_the_error_are_escaped_too(alice):
    output = services.llm_job_submit(
        user=alice, prompt="Why <script>alert(1)</script>?", output_format="html"
    )
    LLMOutput.objects.filter(pk=output.pk).update(
        status=JobStatus.FAILED, error='provider said <img src=x onerror="alert(2)">'
    )
    html = browser(alice).get(f"/llm_outputs/{output.pk}").content.decode()
    assert "Why &lt;script&gt;alert(1)&lt;/script&gt;?" in html
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "<script>alert" not in html
    assert "<img src=x" not in html


def test_offline_answers_are_marked_on_the_page(alice):
    output = make_output(alice, raw="[offline] placeholder", provider="offline", offline=True)
    html = browser(alice).get(f"/llm_outputs/{output.pk}").content.decode()
    assert "Answered by the offline provider" in html


def test_html_output_is_sanitized_in_the_admin_change_view(alice, superuser):
    output = make_output(alice, raw=HOSTILE_HTML, fmt="html")
    response = browser(superuser).get(f"/admin/llmcore/llmoutput/{output.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<p>Fixed by <b>pinning</b> numpy.</p>" in html
    assert "<script>alert" not in html
    assert "alert(1)" not in html
    assert not EVENT_HANDLER.search(html), EVENT_HANDLER.search(html)
    assert not JAVASCRIPT_URL.search(html)
    assert "<iframe" not in html


def test_markdown_output_is_rendered_safely_in_the_admin_change_view(alice, superuser):
    output = make_output(alice, raw=HOSTILE_MARKDOWN, fmt="markdown")
    html = browser(superuser).get(f"/admin/llmcore/llmoutput/{output.pk}/change/").content.decode()
    assert "<h1>Fix</h1>" in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert not EVENT_HANDLER.search(html), EVENT_HANDLER.search(html)
    assert not JAVASCRIPT_URL.search(html)


# --- The forms on the detail page ---------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(alice):
    output = make_output(alice)
    response = browser(alice).post(f"/llm_outputs/{output.pk}/up")
    assert response.status_code == 403
    assert Feedback.objects.count() == 0


def test_actions_are_post_only(alice):
    output = make_output(alice)
    assert browser(alice).get(f"/llm_outputs/{output.pk}/up").status_code == 405
    assert Feedback.objects.count() == 0


def test_thumbs_up_then_down_keeps_one_changeable_vote(alice):
    output = make_output(alice)
    client = browser(alice)
    response = post_form(client, output, "up", {"comment": "worked"})
    assert response.status_code == 302
    assert response["Location"] == f"/llm_outputs/{output.pk}"
    fb = Feedback.objects.get()
    assert (fb.user, fb.vote, fb.comment) == (alice, Feedback.UP, "worked")

    post_form(client, output, "down")
    fb = Feedback.objects.get()
    assert fb.vote == Feedback.DOWN

    html = client.get(f"/llm_outputs/{output.pk}").content.decode()
    assert "👎 1" in html
    assert "👍 0" in html
    assert re.search(r'value="down"\s+disabled', html)  # my current vote


def test_the_re_run_form_queues_a_linked_output(alice):
    output = make_output(alice)
    response = post_form(browser(alice), output, "re_run")
    new = LLMOutput.objects.exclude(pk=output.pk).get()
    assert response.status_code == 302
    assert response["Location"] == f"/llm_outputs/{new.pk}"
    assert (new.parent, new.relation, new.prompt, new.user) == (
        output,
        "re_run",
        output.prompt,
        alice,
    )
    html = browser(alice).get(f"/llm_outputs/{output.pk}").content.decode()
    assert f"/llm_outputs/{new.pk}" in html  # listed under re-runs and regenerations


def test_the_regenerate_form_uses_the_new_context_and_model(alice):
    output = make_output(alice)
    response = post_form(
        browser(alice),
        output,
        "regenerate",
        {"model": "claude-sonnet-4-5", "context": json.dumps({"error": "KeyError"})},
    )
    new = LLMOutput.objects.exclude(pk=output.pk).get()
    assert response["Location"] == f"/llm_outputs/{new.pk}"
    assert new.relation == "regenerate"
    assert new.parent == output
    assert new.requested_model == "claude-sonnet-4-5"
    assert new.prompt == "Explain KeyError"


@pytest.mark.parametrize(
    "context", ["{not json", "[1, 2]", '"a string"'], ids=["not-json", "array", "string"]
)
def test_the_regenerate_form_rejects_a_bad_context_and_says_why(alice, context):
    output = make_output(alice)
    client = browser(alice)
    response = post_form(client, output, "regenerate", {"context": context, "model": "m"})
    assert response.status_code == 302
    assert response["Location"] == f"/llm_outputs/{output.pk}"
    assert LLMOutput.objects.count() == 1
    page = client.get(f"/llm_outputs/{output.pk}")
    messages = [str(m) for m in page.context["messages"]]
    assert messages and all(m != "Queued a new output." for m in messages)


def test_the_regenerate_form_with_nothing_changed_queues_nothing(alice):
    output = make_output(alice)
    post_form(
        browser(alice), output, "regenerate", {"context": "{}", "model": output.requested_model}
    )
    assert LLMOutput.objects.count() == 1


def test_an_unknown_action_is_not_found(alice):
    output = make_output(alice)
    assert post_form(browser(alice), output, "delete").status_code == 404
    assert LLMOutput.objects.count() == 1


# --- Admin --------------------------------------------------------------------------------------


@pytest.fixture
def populated(alice, bob):
    template = services.prompt_template_save(name="summarize", body="Summarize {{log}}")
    plain = make_output(alice)
    by_template = services.llm_job_submit(user=bob, template=template, context={"log": "x"})
    failed = make_output(bob, status=JobStatus.FAILED, provider="anthropic", error="401")
    services.feedback_set(output=plain, user=alice, vote=Feedback.UP)
    services.feedback_set(output=failed, user=bob, vote=Feedback.DOWN)
    return {"template": template, "plain": plain, "by_template": by_template, "failed": failed}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, {"plain", "by_template", "failed"}),
        ({"status__exact": "failed"}, {"failed"}),
        ({"provider__exact": "openai"}, {"plain"}),
        ({"model__exact": "gpt-4o-mini"}, {"plain", "failed"}),
        ({"feedback": "up"}, {"plain"}),
        ({"feedback": "down"}, {"failed"}),
        ({"feedback": "none"}, {"by_template"}),
        ({"purpose__exact": "summarize"}, {"by_template"}),
        ({"offline__exact": "0"}, {"plain", "by_template", "failed"}),
        ({"q": "Summarize"}, {"by_template"}),
    ],
)
def test_the_output_changelist_loads_and_filters(superuser, populated, query, expected):
    response = browser(superuser).get("/admin/llmcore/llmoutput/", query)
    assert response.status_code == 200
    shown = {row.pk for row in response.context["cl"].result_list}
    assert shown == {populated[name].pk for name in expected}


def test_the_output_changelist_filters_by_template(superuser, populated):
    template = populated["template"]
    response = browser(superuser).get(
        "/admin/llmcore/llmoutput/", {"template__id__exact": template.pk}
    )
    assert response.status_code == 200
    assert [row.pk for row in response.context["cl"].result_list] == [populated["by_template"].pk]


def test_the_output_changelist_shows_thumbs_cost_and_latency(superuser, populated):
    html = browser(superuser).get("/admin/llmcore/llmoutput/").content.decode()
    assert "321 ms" in html
    assert "1/0" in html  # thumbs up/down of the plain output
    assert "summarize v1" in html


def test_outputs_cannot_be_added_by_hand(superuser):
    assert browser(superuser).get("/admin/llmcore/llmoutput/add/").status_code == 403


def test_the_admin_re_run_action_queues_linked_outputs(superuser, populated):
    client = browser(superuser)
    token = csrf_token(client, "/admin/llmcore/llmoutput/")
    targets = [populated["plain"], populated["failed"]]
    response = client.post(
        "/admin/llmcore/llmoutput/",
        {
            "csrfmiddlewaretoken": token,
            "action": "re_run",
            "_selected_action": [str(o.pk) for o in targets],
        },
    )
    assert response.status_code == 302
    children = LLMOutput.objects.filter(relation="re_run")
    assert {c.parent_id for c in children} == {o.pk for o in targets}
    assert {c.user for c in children} == {superuser}


def test_the_admin_thumbs_actions_record_the_reviewers_vote(superuser, populated):
    client = browser(superuser)
    token = csrf_token(client, "/admin/llmcore/llmoutput/")
    for action, vote in (("thumbs_up", Feedback.UP), ("thumbs_down", Feedback.DOWN)):
        client.post(
            "/admin/llmcore/llmoutput/",
            {
                "csrfmiddlewaretoken": token,
                "action": action,
                "_selected_action": [str(populated["plain"].pk)],
            },
        )
        fb = Feedback.objects.get(output=populated["plain"], user=superuser)
        assert fb.vote == vote
    assert Feedback.objects.filter(output=populated["plain"]).count() == 2  # alice's + mine


def test_the_template_changelist_loads_and_filters(superuser, populated):
    services.prompt_template_save(name="summarize", body="Summarize briefly {{log}}")
    client = browser(superuser)
    response = client.get("/admin/llmcore/prompttemplate/")
    assert response.status_code == 200
    names = [(t.name, t.version) for t in response.context["cl"].result_list]
    assert ("summarize", 1) in names
    assert ("summarize", 2) in names
    live = client.get("/admin/llmcore/prompttemplate/", {"is_live__exact": "1"})
    assert ("summarize", 2) in [(t.name, t.version) for t in live.context["cl"].result_list]
    assert ("summarize", 1) not in [(t.name, t.version) for t in live.context["cl"].result_list]
    searched = client.get("/admin/llmcore/prompttemplate/", {"q": "briefly"})
    assert [(t.name, t.version) for t in searched.context["cl"].result_list] == [("summarize", 2)]
    by_format = client.get("/admin/llmcore/prompttemplate/", {"output_format__exact": "html"})
    assert by_format.status_code == 200
    assert list(by_format.context["cl"].result_list) == []


def template_form(template: PromptTemplate, **changes) -> dict:
    data = {
        "name": template.name,
        "description": template.description,
        "system_prompt": template.system_prompt,
        "body": template.body,
        "output_format": template.output_format,
        "json_schema": json.dumps(template.json_schema) if template.json_schema else "",
        "model": template.model,
        "max_tokens": template.max_tokens or "",
        "temperature": "" if template.temperature is None else template.temperature,
        "is_live": "on" if template.is_live else "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v != "" or k in ("json_schema", "model")}


def test_saving_a_template_in_the_admin_stores_a_new_immutable_version(superuser):
    original = services.prompt_template_save(name="summarize", body="Summarize {{log}}")
    used = services.llm_job_submit(template=original, context={"log": "x"})
    client = browser(superuser)
    url = f"/admin/llmcore/prompttemplate/{original.pk}/change/"
    token = csrf_token(client, url)
    response = client.post(
        url,
        {
            "csrfmiddlewaretoken": token,
            **template_form(original, body="Summarize {{log}} in 3 bullets"),
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    original.refresh_from_db()
    assert original.body == "Summarize {{log}}"  # the old version is untouched
    assert original.is_live is False
    newest = PromptTemplate.objects.get(name="summarize", version=2)
    assert newest.body == "Summarize {{log}} in 3 bullets"
    assert newest.is_live is True
    assert newest.created_by == superuser
    used.refresh_from_db()
    assert used.template == original  # outputs keep pointing at the version they used


def test_adding_a_new_template_in_the_admin_starts_at_version_one(superuser):
    client = browser(superuser)
    token = csrf_token(client, "/admin/llmcore/prompttemplate/add/")
    response = client.post(
        "/admin/llmcore/prompttemplate/add/",
        {
            "csrfmiddlewaretoken": token,
            "name": "triage",
            "body": "Triage {{issue}}",
            "output_format": "markdown",
            "json_schema": "",
            "model": "",
            "is_live": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    template = PromptTemplate.objects.get(name="triage")
    assert (template.version, template.is_live, template.created_by) == (1, True, superuser)


def test_adding_a_template_under_an_existing_name_in_the_admin_makes_the_next_version(superuser):
    services.prompt_template_save(name="triage", body="Triage {{issue}}")
    client = browser(superuser)
    token = csrf_token(client, "/admin/llmcore/prompttemplate/add/")
    response = client.post(
        "/admin/llmcore/prompttemplate/add/",
        {
            "csrfmiddlewaretoken": token,
            "name": "triage",
            "body": "Triage {{issue}} with labels",
            "output_format": "text",
            "json_schema": "",
            "model": "",
            "is_live": "on",
        },
    )
    assert response.status_code == 302
    assert PromptTemplate.objects.get(name="triage", is_live=True).version == 2


def test_the_make_live_action_switches_the_live_version(superuser):
    first = services.prompt_template_save(name="triage", body="v1 {{issue}}")
    second = services.prompt_template_save(name="triage", body="v2 {{issue}}")
    client = browser(superuser)
    token = csrf_token(client, "/admin/llmcore/prompttemplate/")
    client.post(
        "/admin/llmcore/prompttemplate/",
        {"csrfmiddlewaretoken": token, "action": "make_live", "_selected_action": [first.pk]},
    )
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.is_live, second.is_live) == (True, False)
    assert services.live_template("triage") == first
