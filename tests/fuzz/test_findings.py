"""What the API fuzzer found, each kept as a regression test now that it is fixed.

A new finding goes in as a strict xfail (`finding_open(reason)`) with an entry in
test_schemathesis.SCHEMA_FIXES, so the fuzzer runs past it meanwhile; the fix turns the mark
into `finding(reason)` and drops the entry. The steps that set the scene use `expect`: their
failure means the reproduction no longer reproduces what it says.
"""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db]

LOG = b"E       KeyError: 'discount'\nFAILED tests/test_cart.py::test_totals\n"


def expect(condition: bool, what: str) -> None:
    if not condition:
        pytest.fail(f"the reproduction no longer holds: {what}")


def finding_open(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


def finding(reason: str):  # a fixed finding: a plain regression test
    return lambda test: test


@pytest.fixture
def openapi(anon_client: Any) -> dict[str, Any]:
    response = anon_client.get("/api/schema/?format=json")
    expect(response.status_code == 200, "the schema is served")
    return response.json()


def _responses(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return schema["paths"][path][method.lower()]["responses"]


@finding(
    "SpellOutput.reviewed_by is null for unreviewed spells but the schema says string",
)
def test_unreviewed_spell_reviewed_by_is_nullable_in_schema(staff, staff_client, openapi):
    from spells.models import Spell

    spell = Spell.objects.create(title="KeyError discount", description="Restore the key.")
    body = staff_client.get(f"/api/v1/spells/{spell.pk}").json()
    expect(body["reviewed_by"] is None, "an unreviewed spell has reviewed_by null")

    reviewed_by = openapi["components"]["schemas"]["SpellOutput"]["properties"]["reviewed_by"]
    assert reviewed_by.get("nullable") is True


@finding(
    "POST /api/v1/builds answers 200 for a re-delivered external_id; only 201 is documented",
)
def test_redelivered_build_answer_is_documented(alice_client, openapi):
    payload = {"status": "failed", "external_id": "ci-run-42", "log": "boom\n"}
    first = alice_client.post("/api/v1/builds", payload, format="json")
    expect(first.status_code == 201, "the first delivery is created")
    again = alice_client.post("/api/v1/builds", payload, format="json")
    expect(again.status_code == 200, "the re-delivery answers 200")

    assert "200" in _responses(openapi, "POST", "/api/v1/builds")


@pytest.fixture
def finished_build(alice: Any) -> Any:
    from builds.services import build_create

    return build_create(owner=alice, status="failed", log=[LOG])


@finding(
    "finishing a finished build with another status is 409, not documented",
)
def test_finish_conflict_is_documented(finished_build, alice_client, openapi):
    response = alice_client.post(
        f"/api/v1/builds/{finished_build.pk}/finish", {"status": "success"}, format="json"
    )
    expect(response.status_code == 409, "a conflicting finish is 409")
    expect(response.json()["error"]["code"] == "conflict", "in the error shape")

    assert "409" in _responses(openapi, "POST", "/api/v1/builds/{build_id}/finish")


@finding(
    "appending to a finished build's log is 409, not documented",
)
def test_append_to_finished_build_conflict_is_documented(finished_build, alice_client, openapi):
    response = alice_client.post(
        f"/api/v1/builds/{finished_build.pk}/log", {"log": "more\n"}, format="json"
    )
    expect(response.status_code == 409, "appending to a finished build is 409")

    assert "409" in _responses(openapi, "POST", "/api/v1/builds/{build_id}/log")


@finding(
    "a missing workspace is 503 workspace_missing on /llm/learning/codebase, not documented",
)
def test_missing_workspace_answer_is_documented(settings, tmp_path, staff_client, openapi):
    settings.WORKSPACE_ROOT = tmp_path / "no-such-workspace"
    response = staff_client.get("/llm/learning/codebase")
    expect(response.status_code == 503, "a missing workspace is 503")
    expect(response.json()["error"]["code"] == "workspace_missing", "named workspace_missing")

    assert "503" in _responses(openapi, "GET", "/llm/learning/codebase")


@finding(
    "no operation documents its error responses (400/401/403/404/429, the error shape)",
)
def test_error_responses_are_documented_with_the_error_shape(anon_client, openapi):
    # Every operation needs a token: without one the answer is 401 in the error shape.
    response = anon_client.get("/api/v1/me")
    expect(response.status_code == 401, "no token is 401")
    expect(set(response.json()["error"]) == {"code", "message", "details"}, "the error shape")

    undocumented = []
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            documented = set(operation["responses"])
            expected = {"401"} | ({"404"} if "{" in path else set())
            if method in ("post", "put", "patch"):
                expected.add("400")
            if not expected <= documented:
                undocumented.append(f"{method.upper()} {path}: {sorted(expected - documented)}")
    assert undocumented == []
    error = openapi["components"]["schemas"].get("Error") or {}
    assert "error" in error.get("properties", {})
