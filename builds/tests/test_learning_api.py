"""The learning API for coding agents (seed 001): shapes, auth, codebase confinement, /build/run."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path

import pytest
from django.test import Client
from rest_framework.test import APIClient

from builds import codebase, logstore, services
from builds.models import AnalysisStatus, Build, BuildReport, BuildStatus
from builds.tests.samples import FAILED_LINE, PYTEST_LOG

pytestmark = pytest.mark.django_db

CANARY = "sk-proj-canary" + "Q7" * 20


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"code", "message", "details"}
    if field is not None:
        assert field in body["error"]["message"], body
    return body["error"]


def analysed_build(log: str = PYTEST_LOG, **meta) -> Build:
    meta.setdefault("status", "failed")
    build = services.build_create(log=[log.encode()], **meta)
    services.build_analyze(build_id=str(build.pk))
    build.refresh_from_db()
    assert build.analysis_status == AnalysisStatus.DONE
    return build


# --- GET /llm/learning/builds ------------------------------------------------------------------


def test_the_builds_list_has_the_seed_shape(alice_client):
    failed = analysed_build(repository="acme/shop", job_name="tests")
    services.build_create(status="success", log=[b"all good\n"], repository="acme/shop")
    response = alice_client.get("/llm/learning/builds")
    assert response.status_code == 200
    data = response.json()
    assert set(data) == {"status", "builds", "total", "skip", "limit"}
    assert data["status"] == "ok"
    assert (data["total"], data["skip"], data["limit"]) == (2, 0, 20)
    assert len(data["builds"]) == 2
    # Newest first.
    assert data["builds"][1]["id"] == str(failed.pk)
    item = data["builds"][1]
    assert item["status"] == "failed"
    assert item["repository"] == "acme/shop"
    assert item["job_name"] == "tests"
    assert item["error_count"] == failed.error_count >= 1
    assert item["primary_error"] == failed.primary_error
    # The full log only when asked for.
    assert "log" not in item


def test_the_builds_list_includes_logs_when_asked(alice_client):
    build = analysed_build()
    data = alice_client.get("/llm/learning/builds", {"include_log": "true"}).json()
    assert data["builds"][0]["id"] == str(build.pk)
    assert data["builds"][0]["log"] == PYTEST_LOG
    assert data["builds"][0]["log_truncated"] is False


def test_the_builds_list_pages_with_skip_and_limit(alice_client):
    ids = [str(services.build_create(status="failed", job_name=f"j{n}").pk) for n in range(5)]
    newest_first = list(reversed(ids))
    data = alice_client.get("/llm/learning/builds", {"limit": 2, "skip": 1}).json()
    assert (data["total"], data["skip"], data["limit"]) == (5, 1, 2)
    assert [b["id"] for b in data["builds"]] == newest_first[1:3]
    data = alice_client.get("/llm/learning/builds", {"limit": 2, "skip": 4}).json()
    assert [b["id"] for b in data["builds"]] == newest_first[4:]
    data = alice_client.get("/llm/learning/builds", {"skip": 50}).json()
    assert data["builds"] == []
    assert data["total"] == 5


def test_the_builds_list_filters_by_status(alice_client):
    services.build_create(status="failed")
    services.build_create(status="success")
    data = alice_client.get("/llm/learning/builds", {"status": "failed"}).json()
    assert data["total"] == 1
    assert data["builds"][0]["status"] == "failed"


def test_limit_is_capped_at_100(alice_client):
    data = alice_client.get("/llm/learning/builds", {"limit": 5000}).json()
    assert data["limit"] == 100


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"skip": "-1"}, "skip"),
        ({"skip": "x"}, "skip"),
    ],
)
def test_bad_paging_parameters_are_a_400_naming_them(alice_client, params, field):
    assert_error(alice_client.get("/llm/learning/builds", params), 400, field)


def test_the_builds_list_does_not_query_per_build(alice_client, django_assert_max_num_queries):
    for n in range(8):
        services.build_create(status="failed", job_name=f"j{n}")
    with django_assert_max_num_queries(6):
        data = alice_client.get("/llm/learning/builds").json()
    assert len(data["builds"]) == 8


# --- GET /llm/learning/build/{id} ---------------------------------------------------------------


def test_a_build_comes_with_its_log_summary_and_reports(alice_client, alice):
    build = analysed_build(repository="acme/shop")
    services.build_report_create(
        build=build,
        type="failure_analysis",
        analysis="total() is off by one",
        recommendations=["fix total"],
        confidence=0.8,
        author=alice,
    )
    response = alice_client.get(f"/llm/learning/build/{build.pk}")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    item = data["build"]
    assert item["id"] == str(build.pk)
    assert item["status"] == "failed"
    assert item["log"] == PYTEST_LOG
    assert item["log_truncated"] is False

    summary = item["log_summary"]
    assert summary["total_lines"] == PYTEST_LOG.count("\n")
    assert summary["error_count"] == build.error_count
    assert summary["warning_count"] == 0
    # Strings, as the seed's client code uses them ("for error in errors: print(f'- {error}')").
    assert all(isinstance(e, str) for e in summary["errors"])
    assert FAILED_LINE in summary["errors"]
    assert summary["warnings"] == []
    assert [d["text"] for d in summary["error_details"]] == summary["errors"]
    assert all(set(d) >= {"line", "text", "fingerprint"} for d in summary["error_details"])
    failed_detail = next(d for d in summary["error_details"] if d["text"] == FAILED_LINE)
    assert PYTEST_LOG.split("\n")[failed_detail["line"] - 1] == FAILED_LINE
    assert any("test_total" in f["test"] for f in summary["failures"])
    assert all(set(f) >= {"runner", "test", "message", "line"} for f in summary["failures"])
    assert summary["primary_error"]["text"] == build.primary_error
    excerpt = summary["excerpt"]
    assert 1 <= excerpt["start"] <= excerpt["end"] <= summary["total_lines"]
    assert "test_total" in excerpt["text"]

    assert len(item["llm_reports"]) == 1
    report = item["llm_reports"][0]
    assert report["type"] == "failure_analysis"
    assert report["analysis"] == "total() is off by one"
    assert report["recommendations"] == ["fix total"]
    assert report["confidence"] == 0.8


def test_a_build_not_yet_analysed_has_an_empty_summary(alice_client):
    build = services.build_create(status="running", log=[b"compiling\n"])
    summary = alice_client.get(f"/llm/learning/build/{build.pk}").json()["build"]["log_summary"]
    assert summary["errors"] == [] and summary["error_details"] == []
    assert summary["primary_error"] is None
    assert summary["excerpt"] is None
    assert summary["analysis_status"] == "none"


def test_a_long_log_is_cut_at_the_configured_size(alice_client, settings):
    settings.LEARNING_MAX_LOG_BYTES = 100
    build = services.build_create(status="failed", log=[b"x" * 1_000])
    item = alice_client.get(f"/llm/learning/build/{build.pk}").json()["build"]
    assert item["log"] == "x" * 100
    assert item["log_truncated"] is True


def test_an_unknown_build_is_404(alice_client):
    assert_error(alice_client.get(f"/llm/learning/build/{uuid.uuid4()}"), 404)


# --- POST /llm/learning/report ------------------------------------------------------------------


def report_payload(build: Build, **overrides) -> dict:
    return {
        "build_id": str(build.pk),
        "type": "failure_analysis",
        "analysis": "Missing import in tests/test_app.py",
        "recommendations": ["Fix missing imports", "Update dependencies"],
        "confidence": 0.85,
        **overrides,
    }


def test_a_report_is_stored(alice_client, alice):
    build = services.build_create(status="failed")
    response = alice_client.post("/llm/learning/report", report_payload(build), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "ok"
    assert data["message"] == "report stored"
    report = BuildReport.objects.get(pk=data["report_id"])
    assert report.build == build
    assert report.type == "failure_analysis"
    assert report.recommendations == ["Fix missing imports", "Update dependencies"]
    assert report.confidence == 0.85
    assert report.author == alice
    assert report.llm_output is None
    reports = alice_client.get(f"/llm/learning/build/{build.pk}").json()["build"]["llm_reports"]
    assert [r["id"] for r in reports] == [report.pk]


@pytest.mark.parametrize(
    "report_type",
    [
        "failure_analysis",
        "code_improvement",
        "test_coverage",
        "dependency_audit",
        "performance_analysis",
    ],
)
def test_every_report_type_is_accepted(alice_client, report_type):
    build = services.build_create(status="failed")
    response = alice_client.post(
        "/llm/learning/report", report_payload(build, type=report_type), format="json"
    )
    assert response.status_code == 201


def test_recommendations_may_be_left_out(alice_client):
    build = services.build_create(status="failed")
    payload = report_payload(build)
    del payload["recommendations"]
    response = alice_client.post("/llm/learning/report", payload, format="json")
    assert response.status_code == 201
    assert BuildReport.objects.get().recommendations == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "vibes"}, "type"),
        ({"type": None}, "type"),
        ({"confidence": 1.5}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": "sure"}, "confidence"),
        ({"analysis": ""}, "analysis"),
        ({"analysis": "x" * 50_001}, "analysis"),
        ({"recommendations": "fix it"}, "recommendations"),
        ({"recommendations": ["ok"] * 51}, "recommendations"),
        ({"build_id": "build-123"}, "build_id"),
        ({"build_id": str(uuid.uuid4())}, "build_id"),
    ],
)
def test_a_bad_report_is_a_400_naming_the_field_and_nothing_is_stored(
    alice_client, overrides, field
):
    build = services.build_create(status="failed")
    response = alice_client.post(
        "/llm/learning/report", report_payload(build, **overrides), format="json"
    )
    error = assert_error(response, 400, field)
    assert error["code"] == "invalid"
    assert field in error["details"]
    assert not BuildReport.objects.exists()


def test_a_report_with_missing_fields_names_them(alice_client):
    response = alice_client.post("/llm/learning/report", {}, format="json")
    error = assert_error(response, 400)
    assert {"build_id", "type", "analysis", "confidence"} <= set(error["details"])
    assert not BuildReport.objects.exists()


# --- authentication: token, or the seed's session_id --------------------------------------------


def logged_in_session_key(user) -> str:
    browser = Client()
    assert browser.login(username=user.username, password=f"{user.username}-password")
    return browser.session.session_key


@pytest.mark.parametrize(
    "path", ["/llm/learning/builds", "/llm/learning/codebase", "/llm/learning/report"]
)
def test_anonymous_callers_get_401(anon_client, path, settings, tmp_path):
    settings.WORKSPACE_ROOT = tmp_path
    response = (
        anon_client.post(path, {}, format="json")
        if path.endswith("report")
        else anon_client.get(path)
    )
    assert_error(response, 401)


def test_anonymous_callers_cannot_read_a_build(anon_client):
    build = services.build_create(status="failed")
    assert_error(anon_client.get(f"/llm/learning/build/{build.pk}"), 401)


def test_a_valid_session_id_authenticates(alice):
    build = services.build_create(status="failed", log=[b"boom\n"])
    key = logged_in_session_key(alice)
    client = APIClient()
    response = client.get("/llm/learning/builds", {"session_id": key})
    assert response.status_code == 200, response.content
    assert response.json()["total"] == 1
    response = client.get(f"/llm/learning/build/{build.pk}", {"session_id": key})
    assert response.status_code == 200
    assert response.json()["build"]["log"] == "boom\n"


def test_a_report_posted_with_a_session_id_is_authored_by_that_user(alice):
    build = services.build_create(status="failed")
    key = logged_in_session_key(alice)
    client = APIClient()
    response = client.post(
        "/llm/learning/report", {**report_payload(build), "session_id": key}, format="json"
    )
    assert response.status_code == 201, response.content
    assert BuildReport.objects.get().author == alice


@pytest.mark.parametrize("bogus", ["oauth-session-id-123", "x" * 500, "' OR 1=1 --"])
def test_a_bogus_session_id_is_401(db, bogus):
    response = APIClient().get("/llm/learning/builds", {"session_id": bogus})
    assert_error(response, 401)


def test_a_session_without_a_signed_in_user_is_401(db):
    browser = Client()
    session = browser.session
    session["something"] = "anonymous visitor"
    session.save()
    response = APIClient().get("/llm/learning/builds", {"session_id": session.session_key})
    assert_error(response, 401)


def test_a_logged_out_session_is_401(alice):
    browser = Client()
    browser.login(username="alice", password="alice-password")
    key = browser.session.session_key
    browser.logout()
    assert_error(APIClient().get("/llm/learning/builds", {"session_id": key}), 401)


def test_a_deactivated_users_session_is_401(alice):
    key = logged_in_session_key(alice)
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert_error(APIClient().get("/llm/learning/builds", {"session_id": key}), 401)


def test_a_session_from_before_a_password_change_is_401(alice):
    key = logged_in_session_key(alice)
    assert APIClient().get("/llm/learning/builds", {"session_id": key}).status_code == 200
    alice.set_password("a-brand-new-password-42")
    alice.save()
    assert_error(APIClient().get("/llm/learning/builds", {"session_id": key}), 401)


# --- GET /llm/learning/codebase -----------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path, settings) -> Path:
    root = tmp_path / "workspace"
    files = {
        "pyproject.toml": '[project]\nname = "shop"\n',
        "package.json": '{"name": "shop-web", "scripts": {"test": "jest"}}',
        "tsconfig.json": '{"compilerOptions": {"strict": true}}',
        "backend/main.py": "import os\n\n\ndef main():\n    return 42\n",
        "backend/models.py": "class Order:\n    pass\n",
        "frontend/src/app.ts": "export const x = 1;\n",
        "tests/test_main.py": "def test_main():\n    assert True\n",
        ".git/config": "[core]\n\tsecretgit = " + CANARY + "\n",
        "node_modules/left-pad/index.js": "module.exports = " + json.dumps(CANARY) + ";\n",
        ".venv/lib/site.py": f"TOKEN = {CANARY!r}\n",
        "dist/bundle.js": f"var k = {CANARY!r};\n",
        ".env": f"OPENAI_API_KEY={CANARY}\n",
        ".env.production": f"OPENAI_API_KEY={CANARY}\n",
        "id_rsa": f"-----BEGIN OPENSSH PRIVATE KEY-----\n{CANARY}\n",
        "certs/server.pem": f"-----BEGIN PRIVATE KEY-----\n{CANARY}\n",
        "config/secrets.yaml": f"password: {CANARY}\n",
        "deploy/prod.key": CANARY,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # Links pointing out of the workspace: a directory and files, one named like a config file.
    (root / "etc_link").symlink_to("/etc", target_is_directory=True)
    (root / "backend" / "passwd.py").symlink_to("/etc/passwd")
    (root / "frontend" / "package.json").symlink_to("/etc/passwd")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "leak.py").write_text(f"LEAK = {CANARY!r}\n")
    (root / "linked_dir").symlink_to(outside, target_is_directory=True)
    settings.WORKSPACE_ROOT = root
    return root


def tree_paths(tree: dict, prefix: str = "") -> set[str]:
    paths = set()
    for name, child in tree.items():
        paths.add(prefix + name)
        if isinstance(child, dict):
            paths |= tree_paths(child, prefix + name)
    return paths


def test_the_codebase_has_the_seed_shape(alice_client, workspace):
    response = alice_client.get("/llm/learning/codebase")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == "ok"
    cb = data["codebase"]
    assert set(cb) >= {
        "workspace_root",
        "file_tree",
        "key_config_files",
        "backend_files",
        "structure_summary",
    }
    assert cb["workspace_root"] == str(workspace.resolve())
    assert json.loads(cb["key_config_files"]["package.json"])["name"] == "shop-web"
    assert "shop" in cb["key_config_files"]["pyproject.toml"]
    assert "tsconfig.json" in cb["key_config_files"]
    backend = {f["path"]: f for f in cb["backend_files"]}
    assert set(backend) == {"backend/main.py", "backend/models.py"}
    assert backend["backend/main.py"]["name"] == "main.py"
    assert backend["backend/main.py"]["lines"] == 5
    assert backend["backend/main.py"]["preview"].startswith("import os")
    summary = cb["structure_summary"]
    assert summary["has_backend"] is True
    assert summary["has_frontend"] is True
    assert summary["has_tests"] is True
    assert summary["languages"]["python"] == 3
    assert summary["languages"]["typescript"] == 1
    paths = tree_paths(cb["file_tree"])
    assert {"backend/", "backend/main.py", "tests/test_main.py", "pyproject.toml"} <= paths


def test_the_codebase_skips_tooling_dirs_secrets_and_links(alice_client, workspace):
    cb = alice_client.get("/llm/learning/codebase").json()["codebase"]
    dumped = json.dumps(cb)
    assert CANARY not in dumped
    assert "root:x:0:0" not in dumped  # /etc/passwd through a link
    paths = tree_paths(cb["file_tree"])
    for hidden in (".git/", "node_modules/", ".venv/", "dist/", "etc_link/", "linked_dir/"):
        assert hidden not in paths
    for secret in (".env", ".env.production", "id_rsa", "certs/server.pem", "deploy/prod.key"):
        assert secret not in paths
    assert "config/secrets.yaml" not in paths
    assert "backend/passwd.py" not in paths
    assert "frontend/package.json" not in paths
    assert "frontend/package.json" not in cb["key_config_files"]
    assert all(not f["path"].startswith(("etc_link", "linked_dir")) for f in cb["backend_files"])


def test_ci_workflows_are_key_config_files(alice_client, workspace):
    (workspace / ".github" / "workflows").mkdir(parents=True)
    (workspace / ".github" / "workflows" / "ci.yml").write_text("on: push\njobs: {}\n")
    cb = alice_client.get("/llm/learning/codebase").json()["codebase"]
    assert cb["key_config_files"][".github/workflows/ci.yml"].startswith("on: push")


def test_the_workspace_root_itself_may_be_a_link(alice_client, workspace, tmp_path, settings):
    link = tmp_path / "ws-link"
    link.symlink_to(workspace, target_is_directory=True)
    settings.WORKSPACE_ROOT = link
    cb = alice_client.get("/llm/learning/codebase").json()["codebase"]
    assert cb["workspace_root"] == str(workspace.resolve())
    assert "backend/main.py" in tree_paths(cb["file_tree"])


def test_the_codebase_bounds_sizes_and_counts(alice_client, workspace):
    (workspace / "package.json").write_text('{"x": "' + "a" * 100_000 + '"}')
    (workspace / "backend" / "huge.py").write_text("x = 1\n" * 100_000)
    for n in range(80):
        (workspace / "backend" / f"mod_{n:03d}.py").write_text(f"VALUE = {n}\n")
    cb = alice_client.get("/llm/learning/codebase").json()["codebase"]
    assert len(cb["key_config_files"]["package.json"]) <= codebase.Limits.max_config_bytes
    assert len(cb["backend_files"]) <= codebase.Limits.max_backend_files
    assert all(len(f["preview"]) <= codebase.Limits.preview_chars for f in cb["backend_files"])


def test_the_scan_stops_at_its_file_and_depth_limits(workspace):
    deep = workspace.joinpath(*[f"d{n}" for n in range(12)])
    deep.mkdir(parents=True)
    (deep / "bottom.py").write_text("x = 1\n")
    for n in range(40):
        (workspace / f"f{n:02d}.txt").write_text("x\n")
    result = codebase.scan_codebase(workspace, codebase.Limits(max_files=10, max_tree_entries=5))
    assert result["file_count"] == 10
    assert result["truncated"] is True
    assert len(tree_paths(result["file_tree"])) <= 5 + 12  # entries plus directory nodes
    full = codebase.scan_codebase(workspace, codebase.Limits(max_depth=3))
    assert "bottom.py" not in json.dumps(full["file_tree"])


def test_a_missing_workspace_is_a_503(alice_client, settings, tmp_path):
    settings.WORKSPACE_ROOT = tmp_path / "nowhere"
    error = assert_error(alice_client.get("/llm/learning/codebase"), 503)
    assert error["code"] == "workspace_missing"


# --- POST /build/run ----------------------------------------------------------------------------


@pytest.fixture
def runner(settings, tmp_path):
    root = tmp_path / "run-workspace"
    root.mkdir()
    settings.WORKSPACE_ROOT = root
    settings.BUILD_RUN_TIMEOUT_SECONDS = 30
    settings.BUILD_RUN_MAX_OUTPUT_BYTES = 1_000_000
    settings.BUILD_RUN_COMMANDS = {
        "echo": [sys.executable, "-c", "print('hi'); import sys; sys.exit(3)"],
        "ok": [sys.executable, "-c", "import os; print('cwd=' + os.getcwd())"],
        "sleep": [
            sys.executable,
            "-c",
            "import time; print('sleeping', flush=True); time.sleep(60)",
        ],
        "flood": [
            sys.executable,
            "-c",
            "import sys\nfor _ in range(100000): sys.stdout.write('z' * 99 + '\\n')",
        ],
        "env": [
            sys.executable,
            "-c",
            "import os; print(sorted(os.environ)); print(os.environ.get('OPENAI_API_KEY', 'unset'))",
        ],
        "missing": ["/nonexistent/definitely-not-a-binary"],
    }
    return root


def run(staff_client, command: str, capture) -> Build:
    with capture(execute=True):
        response = staff_client.post("/build/run", {"command": command}, format="json")
    assert response.status_code == 202, response.content
    data = response.json()
    assert data["status"] == "ok"
    assert data["state"] == "queued"
    return Build.objects.get(pk=data["build_id"])


def log_text(build: Build) -> str:
    return b"".join(logstore.iter_log_bytes(build.pk)).decode()


def test_non_staff_cannot_run_commands(alice_client, anon_client, runner):
    assert_error(alice_client.post("/build/run", {"command": "echo"}, format="json"), 403)
    assert_error(anon_client.post("/build/run", {"command": "echo"}, format="json"), 401)
    assert not Build.objects.exists()


def test_an_unknown_command_is_a_400_naming_it(staff_client, runner):
    response = staff_client.post("/build/run", {"command": "rm -rf /"}, format="json")
    error = assert_error(response, 400, "command")
    assert "echo" in json.dumps(error["details"])
    assert_error(staff_client.post("/build/run", {}, format="json"), 400, "command")
    assert not Build.objects.exists()


def test_an_allowed_command_runs_as_a_job_and_its_output_is_the_log(
    staff_client, staff, runner, django_capture_on_commit_callbacks
):
    build = run(staff_client, "echo", django_capture_on_commit_callbacks)
    build.refresh_from_db()
    assert build.source == "runner"
    assert build.owner == staff
    assert build.command == "echo"
    assert build.status == BuildStatus.FAILED
    assert build.finished_at is not None
    text = log_text(build)
    assert text.startswith("hi\n")
    assert "exit code 3" in text
    # Finishing the build queued its analysis, which ran too.
    assert build.analysis_status == AnalysisStatus.DONE


def test_a_run_build_records_when_it_started_and_how_long_it_took(
    staff_client, runner, django_capture_on_commit_callbacks
):
    build = run(staff_client, "echo", django_capture_on_commit_callbacks)
    build.refresh_from_db()
    assert build.started_at is not None
    assert build.duration_seconds is not None
    assert 0 <= build.duration_seconds < 30


def test_the_command_runs_in_the_workspace_and_succeeds(
    staff_client, runner, django_capture_on_commit_callbacks
):
    build = run(staff_client, "ok", django_capture_on_commit_callbacks)
    build.refresh_from_db()
    assert build.status == BuildStatus.SUCCESS
    assert f"cwd={runner.resolve()}" in log_text(build)


def test_a_command_over_its_time_limit_ends_in_error(
    staff_client, runner, settings, django_capture_on_commit_callbacks
):
    settings.BUILD_RUN_TIMEOUT_SECONDS = 1
    build = run(staff_client, "sleep", django_capture_on_commit_callbacks)
    build.refresh_from_db()
    assert build.status == BuildStatus.ERROR
    text = log_text(build)
    assert "sleeping" in text
    assert "timed out" in text
    assert (build.finished_at - build.created_at).total_seconds() < 30


def test_the_output_cap_stops_a_flood(
    staff_client, runner, settings, django_capture_on_commit_callbacks
):
    settings.BUILD_RUN_MAX_OUTPUT_BYTES = 5_000
    build = run(staff_client, "flood", django_capture_on_commit_callbacks)
    build.refresh_from_db()
    assert build.status == BuildStatus.ERROR
    text = log_text(build)
    note = text[text.rindex("\ngrimoire:") :]
    assert "output over 5000 bytes" in note
    assert len(text) - len(note) <= 5_000
    assert build.log_bytes < 6_000


def test_the_child_does_not_see_the_services_secrets(
    staff_client, runner, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("DATABASE_URL", "postgres://u:" + CANARY + "@db/x")
    build = run(staff_client, "env", django_capture_on_commit_callbacks)
    text = log_text(build)
    assert CANARY not in text
    assert "OPENAI_API_KEY" not in text.split("\n")[0]
    assert "DATABASE_URL" not in text
    assert "unset" in text


def test_a_command_that_cannot_start_ends_in_error(
    staff_client, runner, django_capture_on_commit_callbacks
):
    build = run(staff_client, "missing", django_capture_on_commit_callbacks)
    build.refresh_from_db()
    assert build.status == BuildStatus.ERROR
    assert "could not start" in log_text(build)


def test_a_command_removed_from_settings_before_it_ran_ends_in_error(
    staff_client, runner, settings
):
    from builds.tasks import run_build

    response = staff_client.post("/build/run", {"command": "echo"}, format="json")
    build_id = response.json()["build_id"]
    settings.BUILD_RUN_COMMANDS = {}
    assert run_build(build_id) == BuildStatus.ERROR
    assert "not allowed" in log_text(Build.objects.get(pk=build_id))


def test_a_second_delivery_of_the_run_job_does_not_run_it_again(
    staff_client, runner, django_capture_on_commit_callbacks
):
    from builds.tasks import run_build

    build = run(staff_client, "echo", django_capture_on_commit_callbacks)
    before = log_text(build)
    assert run_build(str(build.pk)) == BuildStatus.FAILED
    assert log_text(build) == before
    assert before.count("hi\n") == 1


def test_the_runner_environment_is_minimal(monkeypatch):
    from builds.runner import child_env

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("SECRET_KEY", CANARY)
    env = child_env()
    assert CANARY not in env.values()
    assert env["CI"] == "true"
    assert "PATH" in env
    assert set(env) <= {"PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "SHELL", "CI"}
    assert os.environ["OPENAI_API_KEY"] == CANARY  # the parent keeps its own
