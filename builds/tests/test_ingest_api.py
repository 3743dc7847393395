"""Build ingestion end to end: every way a log arrives, appends, finishing, analysis, access."""

from __future__ import annotations

import gzip
import io
import random
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from builds import logstore, services, tasks
from builds.models import AnalysisStatus, Build, BuildLogChunk, BuildReport, BuildStatus
from builds.tests.samples import FAILED_LINE, PYTEST_LOG

pytestmark = pytest.mark.django_db

URL = "/api/v1/builds"

SHA = "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"


def build_url(build_id, suffix: str = "") -> str:
    return f"{URL}/{build_id}{suffix}"


def stored_log(build_id) -> bytes:
    return b"".join(logstore.iter_log_bytes(build_id))


def streamed(response) -> bytes:
    assert response.streaming
    return b"".join(response.streaming_content)


def assert_error(response, status: int, field: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"code", "message", "details"}
    if field is not None:
        assert field in body["error"]["message"], body
    return body["error"]


def create_running(client, **meta) -> str:
    response = client.post(URL, {"status": "running", **meta}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


# --- every way a log arrives -----------------------------------------------------------------


def test_it_ingests_json_metadata_and_log(alice_client, alice):
    response = alice_client.post(
        URL,
        {
            "status": "failed",
            "repository": "acme/shop",
            "branch": "main",
            "commit_sha": SHA,
            "pull_request": 12,
            "job_name": "tests (3.12)",
            "job_url": "https://ci.example.com/jobs/1",
            "command": "pytest -q",
            "log": PYTEST_LOG,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    data = response.json()
    build = Build.objects.get(pk=data["id"])
    assert data["status"] == build.status == "failed"
    assert data["owner"] == "alice"
    assert build.owner == alice
    assert (build.repository, build.branch, build.commit_sha) == ("acme/shop", "main", SHA)
    assert build.pull_request == 12
    assert build.job_url == "https://ci.example.com/jobs/1"
    assert build.finished_at is not None
    assert build.log_bytes == len(PYTEST_LOG.encode())
    assert stored_log(build.pk) == PYTEST_LOG.encode()
    assert data["analysis"]["status"] == "pending"


def test_it_ingests_a_multipart_file(alice_client):
    upload = SimpleUploadedFile("build.log", PYTEST_LOG.encode(), content_type="text/plain")
    response = alice_client.post(
        URL,
        {"status": "failed", "repository": "acme/shop", "log": upload},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["id"])
    assert build.repository == "acme/shop"
    assert stored_log(build.pk) == PYTEST_LOG.encode()


def test_it_ingests_a_gzipped_multipart_file(alice_client):
    upload = SimpleUploadedFile("build.log.gz", gzip.compress(PYTEST_LOG.encode()))
    response = alice_client.post(URL, {"status": "failed", "log": upload}, format="multipart")
    assert response.status_code == 201, response.content
    assert stored_log(response.json()["id"]) == PYTEST_LOG.encode()


def test_a_multipart_log_sent_as_a_text_field_is_not_silently_dropped(alice_client):
    response = alice_client.post(
        URL, {"status": "failed", "log": "text as a form field\n"}, format="multipart"
    )
    if response.status_code == 201:
        assert stored_log(response.json()["id"]) == b"text as a form field\n"
    else:
        assert_error(response, 400, "log")
        assert not Build.objects.exists()


def test_it_ingests_raw_text_with_metadata_in_the_query(alice_client):
    response = alice_client.post(
        f"{URL}?status=error&repository=acme/web&branch=dev&job_name=jest&pull_request=7",
        data=PYTEST_LOG.encode(),
        content_type="text/plain",
    )
    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["id"])
    assert (build.status, build.repository, build.branch, build.job_name) == (
        "error",
        "acme/web",
        "dev",
        "jest",
    )
    assert build.pull_request == 7
    assert stored_log(build.pk) == PYTEST_LOG.encode()


def test_it_ingests_raw_text_sent_with_content_encoding_gzip(alice_client):
    response = alice_client.post(
        f"{URL}?status=failed",
        data=gzip.compress(PYTEST_LOG.encode()),
        content_type="text/plain",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 201, response.content
    assert stored_log(response.json()["id"]) == PYTEST_LOG.encode()


def test_it_recognises_gzip_by_its_magic_bytes_when_not_declared(alice_client):
    response = alice_client.post(
        f"{URL}?status=failed",
        data=gzip.compress(PYTEST_LOG.encode()),
        content_type="application/octet-stream",
    )
    assert response.status_code == 201, response.content
    assert stored_log(response.json()["id"]) == PYTEST_LOG.encode()


def test_concatenated_gzip_members_are_all_decoded(alice_client):
    body = gzip.compress(b"first half\n") + gzip.compress(b"second half\n")
    response = alice_client.post(f"{URL}?status=failed", data=body, content_type="text/plain")
    assert response.status_code == 201, response.content
    assert stored_log(response.json()["id"]) == b"first half\nsecond half\n"


def test_a_build_without_a_log_is_accepted(alice_client):
    response = alice_client.post(URL, {"status": "success", "repository": "a/b"}, format="json")
    assert response.status_code == 201
    build = Build.objects.get(pk=response.json()["id"])
    assert build.log_bytes == 0
    assert not BuildLogChunk.objects.filter(build=build).exists()


def test_a_multi_megabyte_log_is_stored_in_chunks_and_read_back_byte_identical(alice_client):
    rng = random.Random(4)
    lines = []
    size = 0
    while size < 3 * logstore.CHUNK_BYTES + 12345:
        line = f"{size:09d} step {rng.randint(0, 10**9):x} \x1b[31mred\x1b[0m ünïcødé\r\n"
        lines.append(line.encode())
        size += len(lines[-1])
    # Bytes that are not UTF-8 must survive too: the log is stored as sent.
    body = b"".join(lines) + b"\xff\xfe invalid utf-8 tail"
    upload = SimpleUploadedFile("big.log", body)
    response = alice_client.post(URL, {"status": "failed", "log": upload}, format="multipart")
    assert response.status_code == 201, response.content
    build = Build.objects.get(pk=response.json()["id"])
    assert build.log_bytes == len(body)
    assert build.log_chunks == BuildLogChunk.objects.filter(build=build).count() == 4
    chunks = list(BuildLogChunk.objects.filter(build=build).order_by("seq"))
    assert [c.seq for c in chunks] == [0, 1, 2, 3]
    assert all(c.raw_size == logstore.CHUNK_BYTES for c in chunks[:3])
    # Stored compressed: the repetitive log takes far less space than it holds.
    assert sum(len(bytes(c.data)) for c in chunks) < len(body) / 2

    response = alice_client.get(build_url(build.pk, "/log"))
    assert response.status_code == 200
    assert streamed(response) == body


# --- appending to a running build, then finishing it ------------------------------------------


def test_appended_chunks_then_finish_queue_analysis_after_commit(
    alice_client, django_capture_on_commit_callbacks
):
    build_id = create_running(alice_client, repository="acme/shop")
    head, tail = PYTEST_LOG[:300], PYTEST_LOG[300:]
    response = alice_client.post(build_url(build_id, "/log"), {"log": head}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["log_bytes"] == len(head.encode())
    response = alice_client.post(
        build_url(build_id, "/log"), data=tail.encode(), content_type="text/plain"
    )
    assert response.status_code == 200, response.content
    assert stored_log(build_id) == PYTEST_LOG.encode()
    assert Build.objects.get(pk=build_id).analysis_status == AnalysisStatus.NONE

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = alice_client.post(
            build_url(build_id, "/finish"), {"status": "failed"}, format="json"
        )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "failed"
    # Nothing ran before commit: the analysis waits for the row to be visible.
    build = Build.objects.get(pk=build_id)
    assert build.analysis_status == AnalysisStatus.PENDING
    assert build.analyzed_at is None
    assert callbacks, "finishing must enqueue the analysis on commit"
    for callback in callbacks:
        callback()

    build.refresh_from_db()
    assert build.analysis_status == AnalysisStatus.DONE
    assert build.analyzed_at is not None
    assert build.total_lines == PYTEST_LOG.count("\n")
    assert build.error_count >= 1
    assert FAILED_LINE in [e["text"] for e in build.summary["errors"]]
    assert build.primary_error
    assert build.summary["excerpt"]["start"] <= build.summary["excerpt"]["end"]

    detail = alice_client.get(build_url(build_id)).json()
    assert detail["analysis"]["status"] == "done"
    assert detail["summary"]["error_count"] == build.error_count


def test_appending_to_a_queued_build_starts_it(alice_client):
    response = alice_client.post(URL, {"status": "queued"}, format="json")
    build_id = response.json()["id"]
    assert Build.objects.get(pk=build_id).started_at is None
    alice_client.post(build_url(build_id, "/log"), {"log": "step 1\n"}, format="json")
    build = Build.objects.get(pk=build_id)
    assert build.status == BuildStatus.RUNNING
    assert build.started_at is not None


def test_appending_gzip_chunks_decodes_them(alice_client):
    build_id = create_running(alice_client)
    response = alice_client.post(
        build_url(build_id, "/log"),
        data=gzip.compress(b"compressed chunk\n"),
        content_type="text/plain",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 200, response.content
    assert stored_log(build_id) == b"compressed chunk\n"


def test_finish_records_duration(alice_client):
    started = timezone.now() - timedelta(minutes=3)
    build_id = create_running(alice_client, started_at=started.isoformat())
    finished = started + timedelta(seconds=90)
    response = alice_client.post(
        build_url(build_id, "/finish"),
        {"status": "success", "finished_at": finished.isoformat()},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["duration_seconds"] == pytest.approx(90.0)


def test_appending_to_a_finished_build_is_a_conflict(alice_client):
    response = alice_client.post(URL, {"status": "failed", "log": "done\n"}, format="json")
    build_id = response.json()["id"]
    response = alice_client.post(build_url(build_id, "/log"), {"log": "more\n"}, format="json")
    assert_error(response, 409)
    response = alice_client.post(
        build_url(build_id, "/log"), data=b"more\n", content_type="text/plain"
    )
    assert_error(response, 409)
    assert stored_log(build_id) == b"done\n"


def test_finishing_twice_with_the_same_status_is_a_no_op(alice_client):
    build_id = create_running(alice_client)
    first = alice_client.post(build_url(build_id, "/finish"), {"status": "failed"}, format="json")
    assert first.status_code == 200
    finished_at = Build.objects.get(pk=build_id).finished_at
    again = alice_client.post(build_url(build_id, "/finish"), {"status": "failed"}, format="json")
    assert again.status_code == 200
    assert again.json()["status"] == "failed"
    assert Build.objects.get(pk=build_id).finished_at == finished_at


def test_finishing_again_with_another_status_is_a_conflict(alice_client):
    build_id = create_running(alice_client)
    alice_client.post(build_url(build_id, "/finish"), {"status": "failed"}, format="json")
    response = alice_client.post(
        build_url(build_id, "/finish"), {"status": "success"}, format="json"
    )
    error = assert_error(response, 409)
    assert "failed" in error["message"]
    assert Build.objects.get(pk=build_id).status == "failed"


@pytest.mark.parametrize("status", ["running", "queued", "exploded", ""])
def test_finishing_with_a_non_final_status_is_rejected(alice_client, status):
    build_id = create_running(alice_client)
    response = alice_client.post(build_url(build_id, "/finish"), {"status": status}, format="json")
    assert_error(response, 400, "status")
    assert Build.objects.get(pk=build_id).status == "running"


def test_reanalysing_a_running_build_is_a_conflict(alice_client):
    build_id = create_running(alice_client)
    assert_error(alice_client.post(build_url(build_id, "/analyze")), 409)


def test_reanalyse_queues_a_fresh_analysis(alice_client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(URL, {"status": "failed", "log": PYTEST_LOG}, format="json")
    build_id = response.json()["id"]
    first = Build.objects.get(pk=build_id).analyzed_at
    assert first is not None
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(build_url(build_id, "/analyze"))
    assert response.status_code == 202
    build = Build.objects.get(pk=build_id)
    assert build.analysis_status == AnalysisStatus.DONE
    assert build.analyzed_at > first


# --- bad input: a 400 naming the field, and nothing written -------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"commit_sha": "not-a-sha!"}, "commit_sha"),
        ({"commit_sha": "abc"}, "commit_sha"),
        ({"job_url": "javascript:alert(1)"}, "job_url"),
        ({"job_url": "not a url"}, "job_url"),
        ({"pull_request": -3}, "pull_request"),
        ({"pull_request": 0}, "pull_request"),
        ({"pull_request": "seven"}, "pull_request"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"repository": "r" * 201}, "repository"),
        ({"log": {"not": "text"}}, "log"),
    ],
)
def test_bad_json_metadata_is_rejected_naming_the_field(alice_client, payload, field):
    response = alice_client.post(URL, {"status": "failed", "log": "x\n", **payload}, format="json")
    error = assert_error(response, 400, field)
    assert error["code"] == "invalid"
    assert field in error["details"]
    assert not Build.objects.exists()
    assert not BuildLogChunk.objects.exists()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=exploded", "status"),
        ("commit_sha=zzz", "commit_sha"),
        ("job_url=ftp:/broken", "job_url"),
        ("pull_request=-1", "pull_request"),
    ],
)
def test_bad_query_metadata_on_a_raw_upload_is_rejected(alice_client, query, field):
    response = alice_client.post(f"{URL}?{query}", data=PYTEST_LOG, content_type="text/plain")
    assert_error(response, 400, field)
    assert not Build.objects.exists()
    assert not BuildLogChunk.objects.exists()


def test_bad_multipart_metadata_is_rejected(alice_client):
    upload = SimpleUploadedFile("build.log", b"log\n")
    response = alice_client.post(
        URL, {"status": "failed", "pull_request": "-2", "log": upload}, format="multipart"
    )
    assert_error(response, 400, "pull_request")
    assert not Build.objects.exists()


def test_corrupt_gzip_declared_in_the_header_is_rejected_and_nothing_is_written(alice_client):
    response = alice_client.post(
        f"{URL}?status=failed",
        data=b"\x1f\x8b\x08\x00garbage that is not deflate" * 10,
        content_type="text/plain",
        HTTP_CONTENT_ENCODING="gzip",
    )
    error = assert_error(response, 400, "log")
    assert "gzip" in error["message"]
    assert not Build.objects.exists()
    assert not BuildLogChunk.objects.exists()


def test_corrupt_gzip_multipart_file_is_rejected_and_nothing_is_written(alice_client):
    upload = SimpleUploadedFile("build.log.gz", b"plainly not gzip at all\n" * 4)
    response = alice_client.post(URL, {"status": "failed", "log": upload}, format="multipart")
    assert_error(response, 400, "log")
    assert not Build.objects.exists()
    assert not BuildLogChunk.objects.exists()


def test_corrupt_gzip_appended_to_a_running_build_writes_nothing(alice_client):
    build_id = create_running(alice_client)
    alice_client.post(build_url(build_id, "/log"), {"log": "kept\n"}, format="json")
    response = alice_client.post(
        build_url(build_id, "/log"),
        data=b"\x1f\x8b\x08\x00\xff\xff\xff\xff not deflate",
        content_type="text/plain",
    )
    assert_error(response, 400, "log")
    build = Build.objects.get(pk=build_id)
    assert build.log_bytes == len(b"kept\n")
    assert stored_log(build_id) == b"kept\n"


def test_a_truncated_gzip_upload_is_rejected(alice_client):
    whole = gzip.compress(PYTEST_LOG.encode() * 50)
    response = alice_client.post(
        f"{URL}?status=failed",
        data=whole[: len(whole) // 2],
        content_type="text/plain",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert_error(response, 400, "log")
    assert not Build.objects.exists()


def test_an_empty_append_is_rejected(alice_client):
    build_id = create_running(alice_client)
    response = alice_client.post(build_url(build_id, "/log"), {"log": ""}, format="json")
    assert_error(response, 400, "log")


def test_malformed_json_is_a_400_in_the_error_shape(alice_client):
    response = alice_client.post(URL, data=b'{"status": ', content_type="application/json")
    error = assert_error(response, 400)
    assert error["code"] == "malformed_request"
    assert not Build.objects.exists()


def test_an_oversize_json_body_is_refused_with_413(alice_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    response = alice_client.post(URL, {"status": "failed", "log": "x" * 5_000}, format="json")
    error = assert_error(response, 413)
    assert error["code"] == "payload_too_large"
    assert "text/plain" in error["message"]
    assert not Build.objects.exists()


def test_an_oversize_json_append_is_refused_with_413(alice_client, settings):
    build_id = create_running(alice_client)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    response = alice_client.post(build_url(build_id, "/log"), {"log": "x" * 5_000}, format="json")
    assert_error(response, 413)
    assert stored_log(build_id) == b""


def test_a_raw_body_larger_than_the_json_limit_is_fine(alice_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    body = b"line of output\n" * 1_000
    response = alice_client.post(f"{URL}?status=failed", data=body, content_type="text/plain")
    assert response.status_code == 201, response.content
    assert stored_log(response.json()["id"]) == body


def test_a_log_over_the_size_cap_is_refused_with_413_and_nothing_kept(alice_client, monkeypatch):
    monkeypatch.setattr(logstore, "MAX_LOG_BYTES", 1_000)
    response = alice_client.post(
        f"{URL}?status=failed", data=b"y" * 5_000, content_type="text/plain"
    )
    assert_error(response, 413)
    assert not Build.objects.exists()
    assert not BuildLogChunk.objects.exists()


def test_a_gzip_bomb_is_refused_by_its_uncompressed_size(alice_client, monkeypatch):
    monkeypatch.setattr(logstore, "MAX_LOG_BYTES", 100_000)
    bomb = gzip.compress(b"\0" * 2_000_000)
    assert len(bomb) < 10_000
    response = alice_client.post(
        f"{URL}?status=failed", data=bomb, content_type="text/plain", HTTP_CONTENT_ENCODING="gzip"
    )
    assert_error(response, 413)
    assert not Build.objects.exists()


def test_unknown_build_ids_are_404_in_the_error_shape(alice_client):
    missing = "00000000-0000-0000-0000-000000000000"
    assert_error(alice_client.get(build_url(missing)), 404)
    assert_error(alice_client.get(build_url(missing, "/log")), 404)
    assert_error(alice_client.post(build_url(missing, "/log"), {"log": "x"}, format="json"), 404)
    assert_error(
        alice_client.post(build_url(missing, "/finish"), {"status": "failed"}, format="json"), 404
    )


# --- access ------------------------------------------------------------------------------------


def test_anonymous_callers_get_401_everywhere(anon_client, alice_client):
    build_id = create_running(alice_client)
    assert_error(anon_client.post(URL, {"status": "failed", "log": "x"}, format="json"), 401)
    assert_error(
        anon_client.post(f"{URL}?status=failed", data=b"x", content_type="text/plain"), 401
    )
    assert_error(anon_client.get(URL), 401)
    assert_error(anon_client.get(build_url(build_id)), 401)
    assert_error(anon_client.get(build_url(build_id, "/log")), 401)
    assert_error(anon_client.post(build_url(build_id, "/log"), {"log": "x"}, format="json"), 401)
    assert_error(
        anon_client.post(build_url(build_id, "/finish"), {"status": "failed"}, format="json"), 401
    )
    assert Build.objects.count() == 1
    assert stored_log(build_id) == b""


def test_a_bad_token_is_401(alice_client):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert_error(client.post(URL, {"status": "failed"}, format="json"), 401)
    assert not Build.objects.exists()


def test_another_user_cannot_append_finish_or_reanalyse(alice_client, bob_client):
    build_id = create_running(alice_client)
    response = bob_client.post(build_url(build_id, "/log"), {"log": "evil\n"}, format="json")
    assert_error(response, 403)
    response = bob_client.post(
        build_url(build_id, "/log"), data=b"evil\n", content_type="text/plain"
    )
    assert_error(response, 403)
    response = bob_client.post(build_url(build_id, "/finish"), {"status": "success"}, format="json")
    assert_error(response, 403)
    assert_error(bob_client.post(build_url(build_id, "/analyze")), 403)
    build = Build.objects.get(pk=build_id)
    assert build.status == "running"
    assert stored_log(build_id) == b""


def test_staff_can_append_to_and_finish_anyones_build(alice_client, staff_client):
    build_id = create_running(alice_client)
    response = staff_client.post(build_url(build_id, "/log"), {"log": "by staff\n"}, format="json")
    assert response.status_code == 200
    response = staff_client.post(
        build_url(build_id, "/finish"), {"status": "cancelled"}, format="json"
    )
    assert response.status_code == 200
    assert Build.objects.get(pk=build_id).status == "cancelled"
    assert stored_log(build_id) == b"by staff\n"


def test_any_signed_in_user_can_read_builds_and_logs(alice_client, bob_client):
    response = alice_client.post(URL, {"status": "failed", "log": PYTEST_LOG}, format="json")
    build_id = response.json()["id"]
    assert bob_client.get(build_url(build_id)).status_code == 200
    assert streamed(bob_client.get(build_url(build_id, "/log"))) == PYTEST_LOG.encode()


# --- reading -----------------------------------------------------------------------------------


def test_get_log_streams_plain_text(alice_client):
    response = alice_client.post(URL, {"status": "failed", "log": PYTEST_LOG}, format="json")
    build_id = response.json()["id"]
    response = alice_client.get(build_url(build_id, "/log"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "charset=utf-8" in response["Content-Type"]
    assert f"build-{build_id}.log" in response["Content-Disposition"]
    assert streamed(response).decode() == PYTEST_LOG


def test_the_list_filters_by_status_and_repository(alice_client):
    alice_client.post(URL, {"status": "failed", "repository": "a/one"}, format="json")
    alice_client.post(URL, {"status": "success", "repository": "a/one"}, format="json")
    alice_client.post(URL, {"status": "failed", "repository": "a/two"}, format="json")
    data = alice_client.get(URL, {"status": "failed"}).json()
    assert data["count"] == 2
    assert {b["status"] for b in data["results"]} == {"failed"}
    data = alice_client.get(URL, {"repository": "a/one", "status": "failed"}).json()
    assert data["count"] == 1
    assert data["results"][0]["repository"] == "a/one"


def test_the_list_does_not_query_per_build(alice_client, django_assert_max_num_queries):
    for n in range(6):
        alice_client.post(URL, {"status": "failed", "job_name": f"j{n}"}, format="json")
    with django_assert_max_num_queries(8):
        response = alice_client.get(URL)
    assert response.json()["count"] == 6


# --- analysis as a job: once, and never lost ---------------------------------------------------


def test_a_second_delivery_of_the_analysis_task_does_nothing(
    alice_client, monkeypatch, django_capture_on_commit_callbacks
):
    response = alice_client.post(URL, {"status": "failed", "log": PYTEST_LOG}, format="json")
    build_id = response.json()["id"]
    calls = []
    real = services.analyze_build_log
    monkeypatch.setattr(services, "analyze_build_log", lambda bid: calls.append(bid) or real(bid))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.analyze_build(build_id) == AnalysisStatus.DONE
    analyzed_at = Build.objects.get(pk=build_id).analyzed_at
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.analyze_build(build_id) is None
    assert len(calls) == 1
    assert Build.objects.get(pk=build_id).analyzed_at == analyzed_at


def test_a_failing_analyser_ends_the_analysis_failed_with_the_error(alice_client, monkeypatch):
    response = alice_client.post(URL, {"status": "failed", "log": PYTEST_LOG}, format="json")
    build_id = response.json()["id"]

    def explode(_build_id):
        raise RuntimeError("parser blew up")

    monkeypatch.setattr(services, "analyze_build_log", explode)
    assert tasks.analyze_build(build_id) is None
    build = Build.objects.get(pk=build_id)
    assert build.analysis_status == AnalysisStatus.FAILED
    assert "parser blew up" in build.analysis_error


def test_the_sweeper_reenqueues_stuck_analyses(
    alice_client, settings, django_capture_on_commit_callbacks
):
    settings.STUCK_AFTER_SECONDS = 60
    ids = [
        alice_client.post(URL, {"status": "failed", "log": PYTEST_LOG}, format="json").json()["id"]
        for _ in range(4)
    ]
    lost, stuck, fresh, done = ids
    long_ago = timezone.now() - timedelta(minutes=10)
    # Enqueue lost (broker down after commit): pending for long.
    Build.objects.filter(pk=lost).update(analysis_requested_at=long_ago)
    # Worker killed mid-analysis: running for longer than the stuck timeout.
    Build.objects.filter(pk=stuck).update(
        analysis_status=AnalysisStatus.RUNNING, analysis_started_at=long_ago
    )
    # Just requested: its own job is still on the way, leave it alone.
    Build.objects.filter(pk=fresh).update(analysis_requested_at=timezone.now())
    Build.objects.filter(pk=done).update(
        analysis_status=AnalysisStatus.DONE, analysis_requested_at=long_ago
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert services.sweep_stuck_analyses() == 2

    statuses = dict(Build.objects.values_list("pk", "analysis_status"))
    assert statuses[Build.objects.get(pk=lost).pk] == AnalysisStatus.DONE
    assert statuses[Build.objects.get(pk=stuck).pk] == AnalysisStatus.DONE
    assert statuses[Build.objects.get(pk=fresh).pk] == AnalysisStatus.PENDING
    assert FAILED_LINE in [e["text"] for e in Build.objects.get(pk=lost).summary["errors"]]


def test_a_running_analysis_within_its_timeout_is_not_claimed_again(alice_client, settings):
    settings.STUCK_AFTER_SECONDS = 600
    build_id = alice_client.post(URL, {"status": "failed", "log": "x\n"}, format="json").json()[
        "id"
    ]
    Build.objects.filter(pk=build_id).update(
        analysis_status=AnalysisStatus.RUNNING, analysis_started_at=timezone.now()
    )
    assert services.sweep_stuck_analyses() == 0
    assert tasks.analyze_build(build_id) is None
    assert Build.objects.get(pk=build_id).analysis_status == AnalysisStatus.RUNNING


def test_the_sweeper_is_registered_with_the_periodic_sweep():
    from grimoire import jobs

    assert jobs.registered_sweepers()["build_analysis"] is services.sweep_stuck_analyses


# --- dedupe on the CI system's own job id -------------------------------------------------------


def test_external_id_is_unique_per_source():
    services.build_create(status="failed", source="github", external_id="job-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Build.objects.create(status="failed", source="github", external_id="job-1")
    # Another CI system may use the same id; builds without an id never collide.
    Build.objects.create(status="failed", source="api", external_id="job-1")
    Build.objects.create(status="failed", source="github", external_id="")
    Build.objects.create(status="failed", source="github", external_id="")
    assert Build.objects.filter(external_id="job-1").count() == 2


def test_a_redelivered_build_with_the_same_external_id_is_not_a_server_error(alice_client):
    payload = {"status": "failed", "external_id": "gha-42", "log": "x\n"}
    first = alice_client.post(URL, payload, format="json")
    assert first.status_code == 201
    again = alice_client.post(URL, payload, format="json")
    assert again.status_code in (200, 201, 409), again.content
    if again.status_code == 409:
        assert "external_id" in again.json()["error"]["message"]
    else:
        assert again.json()["id"] == first.json()["id"]
    assert Build.objects.filter(external_id="gha-42").count() == 1


# --- the report model is reachable from a build -------------------------------------------------


def test_deleting_a_build_removes_its_chunks_and_reports(alice_client):
    build_id = alice_client.post(URL, {"status": "failed", "log": "x\n"}, format="json").json()[
        "id"
    ]
    build = Build.objects.get(pk=build_id)
    services.build_report_create(
        build=build, type="failure_analysis", analysis="a", recommendations=[], confidence=0.5
    )
    build.delete()
    assert not BuildLogChunk.objects.exists()
    assert not BuildReport.objects.exists()


def test_iter_log_lines_splits_across_chunk_boundaries(monkeypatch):
    monkeypatch.setattr(logstore, "CHUNK_BYTES", 7)
    build = services.build_create(status="running")
    text = "alpha\nbéta\r\ngamma delta\nlast"
    logstore.append_log(build, [io.BytesIO(text.encode()).read()])
    assert build.log_chunks > 3
    assert list(logstore.iter_log_lines(build.pk)) == ["alpha", "béta\r", "gamma delta", "last"]
