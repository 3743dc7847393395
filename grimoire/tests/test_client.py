"""The public Python client: against mocked transports, then against the real app."""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from grimoire.client import (
    BuildInfo,
    BuildsPage,
    GrimoireAPIError,
    GrimoireConnectionError,
    GrimoireTimeoutError,
    LLMClient,
)
from grimoire.testing import RecordingTransport, json_response

BUILD = {
    "id": "5a8a1150-12e8-4f72-9527-72ab52bcf9cb",
    "status": "failed",
    "repository": "acme/shop",
    "branch": "main",
    "commit_sha": "3f2a9c1",
    "pull_request": 4,
    "job_name": "tests",
    "job_url": "",
    "command": "",
    "started_at": "2026-01-01T10:00:00Z",
    "finished_at": "2026-01-01T10:01:00Z",
    "duration_seconds": 60.0,
    "error_count": 2,
    "warning_count": 0,
    "primary_error": "ImportError: no module named foo",
    "log_bytes": 123,
    "something_new": "from a newer server",
}
DETAIL = {
    "status": "ok",
    "build": {
        **BUILD,
        "log": "boom\n",
        "log_summary": {"errors": ["ImportError: no module named foo"], "error_count": 1},
        "llm_reports": [],
    },
}


def client_for(handler, **kwargs) -> tuple[LLMClient, RecordingTransport]:
    transport = RecordingTransport(handler)
    kwargs.setdefault("backend_url", "http://grimoire.test")
    return LLMClient(transport=transport, **kwargs), transport


def answer(body, status: int = 200):
    return lambda request: json_response(status, body)


def test_get_builds_returns_a_page_of_build_objects():
    page_body = {"status": "ok", "builds": [BUILD], "total": 41, "skip": 20, "limit": 20}
    client, transport = client_for(answer(page_body), token="tok-123")
    page = client.get_builds(skip=20)
    assert isinstance(page, BuildsPage)
    assert (page.total, page.skip, page.limit) == (41, 20, 20)
    assert len(page) == 1
    build = page.builds[0]
    assert isinstance(build, BuildInfo)
    assert build.id == BUILD["id"]
    assert build.status == "failed"
    assert build.pull_request == 4
    assert build.primary_error.startswith("ImportError")
    assert build.log is None
    assert build.get("something_new") == "from a newer server"
    assert [b.id for b in page] == [BUILD["id"]]
    request = transport.requests[0]
    assert request.method == "GET"
    assert request.url.path == "/llm/learning/builds"
    assert dict(request.url.params) == {"limit": "20", "skip": "20"}
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.headers["Accept"] == "application/json"


def test_get_builds_passes_filters_and_asks_for_logs():
    body = {"status": "ok", "builds": [{**BUILD, "log": "x"}], "total": 1, "skip": 0, "limit": 5}
    client, transport = client_for(answer(body))
    page = client.get_builds(limit=5, status="failed", include_log=True)
    assert page.builds[0].log == "x"
    assert dict(transport.requests[0].url.params) == {
        "limit": "5",
        "skip": "0",
        "status": "failed",
        "include_log": "true",
    }


def test_the_seed_example_works_on_get_build():
    client, transport = client_for(answer(DETAIL), token="t")
    data = client.get_build(BUILD["id"])
    errors = data["log_summary"]["errors"]
    assert errors == ["ImportError: no module named foo"]
    assert data["log"] == "boom\n"
    assert transport.requests[0].url.path == f"/llm/learning/build/{BUILD['id']}"


def test_a_build_id_cannot_walk_to_another_endpoint():
    client, transport = client_for(answer(DETAIL))
    client.get_build("../../admin")
    assert transport.requests[0].url.raw_path == b"/llm/learning/build/..%2F..%2Fadmin"


def test_get_codebase_returns_the_inner_object():
    body = {"status": "ok", "codebase": {"structure_summary": {"has_backend": True}}}
    client, transport = client_for(answer(body))
    assert client.get_codebase()["structure_summary"]["has_backend"] is True
    assert transport.requests[0].url.path == "/llm/learning/codebase"


@pytest.mark.parametrize("spelling", ["report_type", "type"])
def test_submit_report_accepts_both_spellings_of_the_type(spelling):
    stored = {"status": "ok", "message": "report stored", "report_id": 7}
    client, transport = client_for(answer(stored, 201))
    result = client.submit_report(
        build_id="b-1",
        analysis="Found 2 errors",
        recommendations=("Fix missing imports", "Update dependencies"),
        confidence=0.85,
        **{spelling: "failure_analysis"},
    )
    assert result["report_id"] == 7
    request = transport.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/llm/learning/report"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {
        "build_id": "b-1",
        "type": "failure_analysis",
        "analysis": "Found 2 errors",
        "recommendations": ["Fix missing imports", "Update dependencies"],
        "confidence": 0.85,
    }


def test_submit_report_positional_arguments_follow_the_seed_order():
    client, transport = client_for(answer({"status": "ok", "report_id": 1}, 201))
    client.submit_report("b-1", "test_coverage", "analysis text", ["r"], 0.3)
    sent = json.loads(transport.requests[0].content)
    assert (sent["type"], sent["analysis"], sent["recommendations"], sent["confidence"]) == (
        "test_coverage",
        "analysis text",
        ["r"],
        0.3,
    )


def test_a_single_string_recommendation_is_not_split_into_letters():
    client, transport = client_for(answer({"status": "ok", "report_id": 1}, 201))
    client.submit_report("b", type="failure_analysis", recommendations="See analysis above")
    assert json.loads(transport.requests[0].content)["recommendations"] == ["See analysis above"]


def test_submit_report_needs_exactly_one_type():
    client, transport = client_for(answer({}))
    with pytest.raises(TypeError, match="report_type"):
        client.submit_report("b", analysis="x")
    with pytest.raises(ValueError, match="disagree"):
        client.submit_report("b", report_type="failure_analysis", type="test_coverage")
    client.submit_report("b", report_type="test_coverage", type="test_coverage")
    assert len(transport.requests) == 1


def test_a_session_id_is_sent_as_the_seed_parameter_and_no_token_header():
    client, transport = client_for(
        answer({"status": "ok", "builds": [], "total": 0, "skip": 0, "limit": 20}),
        session_id="sess-1",
    )
    client.get_builds()
    client.submit_report("b", type="failure_analysis")
    for request in transport.requests:
        assert request.url.params["session_id"] == "sess-1"
        assert "Authorization" not in request.headers


def test_api_errors_carry_status_code_message_and_details():
    body = {
        "error": {
            "code": "invalid",
            "message": "confidence: Ensure this value is less than or equal to 1.",
            "details": {"confidence": ["Ensure this value is less than or equal to 1."]},
        }
    }
    client, _ = client_for(answer(body, 400))
    with pytest.raises(GrimoireAPIError) as caught:
        client.submit_report("b", type="failure_analysis", confidence=3)
    error = caught.value
    assert error.status == 400
    assert error.code == "invalid"
    assert error.message.startswith("confidence:")
    assert error.details == {"confidence": ["Ensure this value is less than or equal to 1."]}
    assert error.method == "POST"
    assert error.url == "http://grimoire.test/llm/learning/report"
    assert str(error) == "400 invalid: " + error.message


@pytest.mark.parametrize(
    ("status", "code"), [(401, "not_authenticated"), (403, "permission_denied"), (404, "not_found")]
)
def test_auth_and_missing_errors_are_api_errors(status, code):
    client, _ = client_for(
        answer({"error": {"code": code, "message": "no", "details": {}}}, status)
    )
    with pytest.raises(GrimoireAPIError) as caught:
        client.get_build("x")
    assert (caught.value.status, caught.value.code) == (status, code)


def test_an_error_page_that_is_not_json_is_still_a_clear_api_error():
    client, _ = client_for(
        lambda request: httpx.Response(502, text="<html><h1>Bad Gateway</h1></html>")
    )
    with pytest.raises(GrimoireAPIError) as caught:
        client.get_builds()
    assert caught.value.status == 502
    assert caught.value.code == "http_502"
    assert "Bad Gateway" in caught.value.message


def test_a_success_that_is_not_a_json_object_is_an_error():
    client, _ = client_for(lambda request: httpx.Response(200, text="<html>login</html>"))
    with pytest.raises(GrimoireAPIError) as caught:
        client.get_codebase()
    assert caught.value.code == "bad_response"
    client, _ = client_for(answer({"status": "ok"}))
    with pytest.raises(GrimoireAPIError, match="unexpected response shape"):
        client.get_build("x")
    with pytest.raises(GrimoireAPIError, match="unexpected response shape"):
        client.get_builds()


def test_a_refused_connection_is_a_connection_error_naming_the_server():
    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client, _ = client_for(refuse)
    with pytest.raises(GrimoireConnectionError) as caught:
        client.get_builds()
    assert "http://grimoire.test" in str(caught.value)
    assert "running" in str(caught.value)
    assert not isinstance(caught.value, GrimoireAPIError)


def test_a_timeout_is_a_timeout_error():
    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    client, transport = client_for(slow)
    with pytest.raises(GrimoireTimeoutError):
        client.get_codebase()
    assert len(transport.requests) == 1  # no hidden retries


def test_the_timeout_setting_reaches_httpx():
    seen = {}

    def record(request):
        seen.update(request.extensions["timeout"])
        return json_response(200, {"status": "ok", "codebase": {}})

    client, _ = client_for(record, timeout=4.5)
    client.get_codebase()
    assert seen == {"connect": 4.5, "read": 4.5, "write": 4.5, "pool": 4.5}


def test_defaults_come_from_the_environment_then_localhost(monkeypatch):
    monkeypatch.delenv("GRIMOIRE_URL", raising=False)
    monkeypatch.delenv("GRIMOIRE_TOKEN", raising=False)
    assert LLMClient().backend_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("GRIMOIRE_URL", "http://ci-box:9000/")
    monkeypatch.setenv("GRIMOIRE_TOKEN", "env-token")
    transport = RecordingTransport(answer({"status": "ok", "codebase": {}}))
    client = LLMClient(transport=transport)
    client.get_codebase()
    request = transport.requests[0]
    assert str(request.url) == "http://ci-box:9000/llm/learning/codebase"
    assert request.headers["Authorization"] == "Bearer env-token"
    # An explicit argument wins over the environment.
    assert LLMClient("http://other:1", transport=transport).backend_url == "http://other:1"


def test_the_backend_url_may_have_a_path_prefix():
    client, transport = client_for(
        answer({"status": "ok", "codebase": {}}), backend_url="https://tools.example.com/grimoire/"
    )
    client.get_codebase()
    assert (
        str(transport.requests[0].url) == "https://tools.example.com/grimoire/llm/learning/codebase"
    )


def test_the_client_is_a_context_manager_that_closes_its_connection():
    with LLMClient(transport=RecordingTransport(answer({}))) as client:
        assert not client._http.is_closed
    assert client._http.is_closed


def test_run_build_posts_the_command():
    client, transport = client_for(
        answer({"status": "ok", "build_id": "b", "state": "queued"}, 202)
    )
    assert client.run_build("tests", repository="acme/shop")["state"] == "queued"
    assert json.loads(transport.requests[0].content) == {
        "command": "tests",
        "repository": "acme/shop",
        "branch": "",
    }


def test_the_client_module_does_not_import_django():
    import subprocess

    code = (
        "import sys, grimoire.client; "
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- client and server together ----------------------------------------------------------------


def django_transport() -> httpx.MockTransport:
    """An httpx transport that answers from the Django app in this process (test client)."""
    from django.test import Client

    django_client = Client()

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "content-type")
        }
        response = django_client.generic(
            request.method,
            path,
            data=request.content,
            content_type=request.headers.get("content-type", "application/octet-stream"),
            headers=headers,
        )
        content = (
            b"".join(response.streaming_content)
            if getattr(response, "streaming", False)
            else response.content
        )
        return httpx.Response(
            response.status_code, headers=dict(response.headers.items()), content=content
        )

    return httpx.MockTransport(handle)


PYTEST_LOG = """\
=================================== FAILURES ===================================
_________________________________ test_total __________________________________
>       assert total([1, 2]) == 4
E       assert 3 == 4
tests/test_app.py:7: AssertionError
=========================== short test summary info ============================
FAILED tests/test_app.py::test_total - assert 3 == 4
========================= 1 failed, 1 passed in 0.05s ==========================
"""


@pytest.fixture
def live(db, alice, settings, tmp_path):
    from builds import services
    from grimoire.services import api_token_create

    workspace = tmp_path / "ws"
    (workspace / "app").mkdir(parents=True)
    (workspace / "app" / "main.py").write_text("print('hi')\n")
    (workspace / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    settings.WORKSPACE_ROOT = workspace
    failed = services.build_create(status="failed", log=[PYTEST_LOG.encode()], repository="a/b")
    services.build_analyze(build_id=str(failed.pk))
    services.build_create(status="success", log=[b"ok\n"], repository="a/b")
    _, token = api_token_create(user=alice, name="agent")
    return {"token": token, "failed": failed}


def test_the_client_and_the_server_agree_on_every_shape(live):
    from builds.models import BuildReport

    with LLMClient(
        "http://testserver", token=live["token"], transport=django_transport()
    ) as client:
        page = client.get_builds(limit=50)
        assert page.total == 2
        assert page.limit == 50
        failed = [b for b in page.builds if b.status == "failed"]
        assert [b.id for b in failed] == [str(live["failed"].pk)]
        assert failed[0].error_count >= 1

        data = client.get_build(failed[0].id)
        errors = data["log_summary"]["errors"]
        assert "FAILED tests/test_app.py::test_total - assert 3 == 4" in errors
        assert data["log"] == PYTEST_LOG
        assert data.get("llm_reports", []) == []

        codebase = client.get_codebase()
        assert codebase["structure_summary"]["has_backend"] is True
        assert "pyproject.toml" in codebase["key_config_files"]
        assert [f["path"] for f in codebase["backend_files"]] == ["app/main.py"]

        result = client.submit_report(
            build_id=failed[0].id,
            type="failure_analysis",
            analysis=f"Found {len(errors)} errors in build",
            recommendations=["Fix total()"],
            confidence=0.85,
        )
        assert result["status"] == "ok"
        report = BuildReport.objects.get(pk=result["report_id"])
        assert report.build_id == live["failed"].pk
        assert report.author.username == "alice"
        assert client.get_build(failed[0].id)["llm_reports"][0]["id"] == report.pk

        with pytest.raises(GrimoireAPIError) as caught:
            client.submit_report(failed[0].id, type="failure_analysis", analysis="x", confidence=7)
        assert caught.value.status == 400
        assert caught.value.code == "invalid"
        assert "confidence" in caught.value.message
        assert "confidence" in caught.value.details

        with pytest.raises(GrimoireAPIError) as caught:
            client.get_build("00000000-0000-0000-0000-000000000000")
        assert caught.value.status == 404
        assert caught.value.code == "not_found"

        with pytest.raises(GrimoireAPIError) as caught:
            client.get_builds(limit=0)
        assert caught.value.status == 400 and "limit" in caught.value.message

        with pytest.raises(GrimoireAPIError) as caught:
            client.run_build("echo")
        assert caught.value.status == 403


def test_the_client_authenticates_with_a_session_id_against_the_server(live, alice):
    from django.test import Client

    browser = Client()
    browser.force_login(alice)
    key = browser.session.session_key
    with LLMClient("http://testserver", session_id=key, transport=django_transport()) as client:
        assert client.get_builds().total == 2
    with LLMClient("http://testserver", session_id="bogus", transport=django_transport()) as client:
        with pytest.raises(GrimoireAPIError) as caught:
            client.get_builds()
        assert caught.value.status == 401


def test_a_bad_token_is_a_401_api_error_from_the_server(live):
    client = LLMClient("http://testserver", token="nope", transport=django_transport())
    with client, pytest.raises(GrimoireAPIError) as caught:
        client.get_codebase()
    assert caught.value.status == 401
    assert caught.value.message
