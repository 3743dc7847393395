"""manage.py ingest_build (logs on disk) and analyze_builds (the LLM failure-analysis loop)."""

from __future__ import annotations

import gzip
import io
import json
from datetime import timedelta
from types import SimpleNamespace

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from builds import logstore, reports, services
from builds.management.commands import analyze_builds as analyze_command
from builds.models import AnalysisStatus, Build, BuildReport
from builds.tests.samples import FAILED_LINE, PYTEST_LOG
from grimoire.testing import OPENAI_TEST_ENV, openai_chat
from llmcore import gateway
from llmcore.models import JobStatus, LLMOutput

pytestmark = pytest.mark.django_db

OPENAI_ENV = OPENAI_TEST_ENV
SECRET = "ghp_" + "Z9" * 18


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def analysis_jobs():
    # Analysing a build may also queue a spell draft; only this loop's jobs count here.
    return LLMOutput.objects.filter(purpose=reports.PURPOSE)


def stored_log(build: Build) -> bytes:
    return b"".join(logstore.iter_log_bytes(build.pk))


@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "build.log"
    path.write_text(PYTEST_LOG)
    return path


# --- ingest_build ------------------------------------------------------------------------------


def test_ingest_build_stores_analyses_and_prints_the_summary(log_file):
    out = run(
        "ingest_build",
        str(log_file),
        "--repo",
        "acme/shop",
        "--branch",
        "main",
        "--job",
        "tests (3.12)",
    )
    build = Build.objects.get()
    assert (build.repository, build.branch, build.job_name) == ("acme/shop", "main", "tests (3.12)")
    assert build.status == "failed"
    assert build.finished_at is not None
    assert stored_log(build) == PYTEST_LOG.encode()
    assert build.analysis_status == AnalysisStatus.DONE
    assert FAILED_LINE in [e["text"] for e in build.summary["errors"]]
    assert f"build {build.pk}" in out
    assert "[failed]" in out
    assert f"{build.error_count} errors" in out
    assert "primary error (line" in out
    assert FAILED_LINE in out
    assert "failed [pytest]" in out and "test_total" in out


def test_ingest_build_reads_gzip_whatever_the_name(tmp_path):
    for name in ("build.log.gz", "artifact.log"):
        path = tmp_path / name
        path.write_bytes(gzip.compress(PYTEST_LOG.encode()))
        run("ingest_build", str(path), "--status", "error")
    builds = list(Build.objects.all())
    assert len(builds) == 2
    assert all(stored_log(b) == PYTEST_LOG.encode() for b in builds)
    assert {b.status for b in builds} == {"error"}


def test_ingest_build_json_prints_one_object(log_file):
    out = run(
        "ingest_build",
        str(log_file),
        "--json",
        "--repo",
        "acme/shop",
        "--commit",
        "3f2a9c1d8e7b",
        "--pr",
        "12",
    )
    lines = out.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    build = Build.objects.get()
    assert data["build_id"] == str(build.pk)
    assert data["status"] == "failed"
    assert data["repository"] == "acme/shop"
    assert data["commit_sha"] == "3f2a9c1d8e7b"
    assert data["pull_request"] == 12
    assert data["analysis_status"] == "done"
    assert data["log_bytes"] == len(PYTEST_LOG.encode())
    assert data["total_lines"] == PYTEST_LOG.count("\n")
    assert data["error_count"] == len(data["errors"]) >= 1
    assert FAILED_LINE in [e["text"] for e in data["errors"]]
    assert all(set(e) >= {"line", "text", "fingerprint"} for e in data["errors"])
    assert any("test_total" in f["test"] for f in data["failures"])
    assert data["primary_error"]["text"]
    assert data["excerpt"]["start"] <= data["excerpt"]["end"]


def test_ingest_build_reads_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=io.BytesIO(PYTEST_LOG.encode())))
    run("ingest_build", "-", "--json")
    assert stored_log(Build.objects.get()) == PYTEST_LOG.encode()


def test_a_clean_log_reports_no_error(tmp_path):
    path = tmp_path / "ok.log"
    path.write_text("collected 3 items\n...\n3 passed in 0.1s\n")
    out = run("ingest_build", str(path), "--status", "success")
    assert "no error found" in out
    assert Build.objects.get().error_count == 0


def test_ingest_build_waits_for_a_worker_that_claimed_the_analysis(log_file, monkeypatch):
    real = services.build_analyze

    def claimed_elsewhere(*, build_id):
        real(build_id=build_id)  # the "worker" does the work...
        return None  # ...so this process's claim finds nothing to do

    monkeypatch.setattr(services, "build_analyze", claimed_elsewhere)
    data = json.loads(run("ingest_build", str(log_file), "--json"))
    assert data["analysis_status"] == "done"
    assert data["error_count"] >= 1


def test_ingest_build_gives_up_waiting_with_a_clear_error(log_file, monkeypatch):
    monkeypatch.setattr(services, "build_analyze", lambda *, build_id: None)
    with pytest.raises(CommandError, match="still pending"):
        run("ingest_build", str(log_file), "--wait", "0")
    assert Build.objects.count() == 1  # the log is kept; the worker will analyse it


def test_a_missing_file_is_a_clear_error_and_stores_nothing(tmp_path):
    with pytest.raises(CommandError, match=r"cannot read .*nope\.log"):
        run("ingest_build", str(tmp_path / "nope.log"))
    with pytest.raises(CommandError, match="cannot read"):
        run("ingest_build", str(tmp_path))  # a directory
    assert not Build.objects.exists()


def test_a_corrupt_gzip_file_is_a_clear_error_and_stores_nothing(tmp_path):
    path = tmp_path / "bad.log.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"\xff" * 64)
    with pytest.raises(CommandError, match="gzip"):
        run("ingest_build", str(path))
    assert not Build.objects.exists()
    assert not logstore.BuildLogChunk.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--commit", "not-a-sha"], "commit_sha"),
        (["--pr", "0"], "pull_request"),
        (["--repo", "r" * 300], "repository"),
    ],
)
def test_bad_metadata_is_a_clear_error_and_stores_nothing(log_file, args, message):
    with pytest.raises(CommandError, match=message):
        run("ingest_build", str(log_file), *args)
    assert not Build.objects.exists()


def test_only_final_statuses_are_accepted(log_file):
    with pytest.raises(CommandError, match="invalid choice"):
        run("ingest_build", str(log_file), "--status", "running")
    assert not Build.objects.exists()


def test_a_failed_analysis_keeps_the_build_and_exits_non_zero(log_file, monkeypatch):
    def explode(_build_id):
        raise RuntimeError("parser blew up")

    monkeypatch.setattr(services, "analyze_build_log", explode)
    with pytest.raises(CommandError, match="parser blew up"):
        run("ingest_build", str(log_file))
    build = Build.objects.get()
    assert build.analysis_status == AnalysisStatus.FAILED
    assert stored_log(build) == PYTEST_LOG.encode()


# --- analyze_builds ----------------------------------------------------------------------------


def openai_answer(body: dict) -> httpx.Response:
    return openai_chat(json.dumps(body), prompt_tokens=100, completion_tokens=40)


ANSWER = {
    "analysis": "total() adds one too few: the test expects 4 for [1, 2].",
    "recommendations": ["Fix the off-by-one in total()", "Add a test for empty lists"],
    "confidence": 0.8,
}


@pytest.fixture
def provider(llm_script):
    """Install a router whose OpenAI provider answers from `provider(resp, ...)`."""
    return llm_script


def failed_build(log: str = PYTEST_LOG, **meta) -> Build:
    meta.setdefault("status", "failed")
    build = services.build_create(log=[log.encode()], **meta)
    services.build_analyze(build_id=str(build.pk))
    build.refresh_from_db()
    return build


def test_a_pass_stores_an_llm_failure_analysis_for_each_failed_build(
    provider, django_capture_on_commit_callbacks
):
    transport = provider(openai_answer(ANSWER))
    build = failed_build(repository="acme/shop", branch="main", job_name="tests")
    with django_capture_on_commit_callbacks(execute=True):
        out = run("analyze_builds", "--once")
    assert "1 analysis job(s) queued" in out
    assert str(build.pk) in out

    report = BuildReport.objects.get()
    assert report.build == build
    assert report.type == "failure_analysis"
    assert report.analysis == ANSWER["analysis"]
    assert report.recommendations == ANSWER["recommendations"]
    assert report.confidence == 0.8
    assert report.author is None
    output = report.llm_output
    assert output.status == JobStatus.COMPLETED
    assert output.purpose == "builds.analysis"
    assert output.subject == f"build:{build.pk}"
    assert output.on_complete == "builds.reports.on_analysis_done"
    assert output.json_schema == reports.ANALYSIS_SCHEMA
    # The prompt carries the evidence: primary error, failures and the excerpt.
    assert build.primary_error in output.prompt
    assert "test_total" in output.prompt
    assert FAILED_LINE in output.prompt
    assert "E       assert 3 == 4" in output.prompt
    assert "acme/shop" in output.prompt
    # And the schema went to the provider as structured output.
    sent = json.loads(transport.requests[0].content)
    assert sent["response_format"]["json_schema"]["schema"]["required"] == [
        "analysis",
        "recommendations",
        "confidence",
    ]

    # The report is what the learning API shows; the next pass has nothing to do.
    with django_capture_on_commit_callbacks(execute=True):
        out = run("analyze_builds", "--once")
    assert "0 analysis job(s) queued" in out
    assert analysis_jobs().count() == 1


def test_only_failed_builds_without_a_failure_analysis_are_picked(provider):
    provider()
    picked = failed_build(job_name="picked")
    errored = failed_build(status="error", job_name="errored")
    other_report = failed_build(job_name="has a coverage report")
    services.build_report_create(
        build=other_report, type="test_coverage", analysis="x", recommendations=[], confidence=0.5
    )
    done = failed_build(job_name="already analysed")
    services.build_report_create(
        build=done, type="failure_analysis", analysis="x", recommendations=[], confidence=0.5
    )
    failed_build(status="success", job_name="green")
    services.build_create(status="running", log=[b"still going\n"], job_name="running")
    pending = services.build_create(status="failed", log=[b"boom\n"], job_name="not analysed yet")
    assert pending.analysis_status == AnalysisStatus.PENDING

    chosen = reports.builds_needing_analysis(limit=50)
    assert {b.job_name for b in chosen} == {
        picked.job_name,
        errored.job_name,
        other_report.job_name,
    }


def test_a_build_with_a_job_under_way_gets_no_second_job(provider):
    provider()  # no answers scripted: nothing may run in this test
    build = failed_build()
    # Jobs are queued on commit, which never comes inside this test: they stay pending.
    out = run("analyze_builds", "--once")
    assert "1 analysis job(s) queued" in out
    output = analysis_jobs().get()
    assert output.status == JobStatus.PENDING
    out = run("analyze_builds", "--once")
    assert "0 analysis job(s) queued" in out
    for status in (JobStatus.PROCESSING, JobStatus.RETRYING):
        LLMOutput.objects.filter(pk=output.pk).update(
            status=status, created_at=timezone.now() - timedelta(days=7)
        )
        assert reports.build_failure_analysis_submit(build=build) is None
    assert analysis_jobs().count() == 1


def test_a_failed_job_is_retried_only_after_the_retry_window(provider):
    provider()
    failed_build()
    run("analyze_builds", "--once")
    output = analysis_jobs().get()
    LLMOutput.objects.filter(pk=output.pk).update(status=JobStatus.FAILED)
    assert "0 analysis job(s) queued" in run("analyze_builds", "--once")
    LLMOutput.objects.filter(pk=output.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert "1 analysis job(s) queued" in run("analyze_builds", "--once")
    assert analysis_jobs().count() == 2
    analysis_jobs().filter(status=JobStatus.PENDING).update(
        status=JobStatus.FAILED, created_at=timezone.now() - timedelta(hours=2)
    )
    assert "1 analysis job(s) queued" in run("analyze_builds", "--once", "--retry-after", "1")


def test_the_limit_bounds_jobs_per_pass_newest_first(provider):
    provider()
    builds = [failed_build(job_name=f"job {n}") for n in range(5)]
    out = run("analyze_builds", "--once", "--limit", "2")
    assert "2 analysis job(s) queued" in out
    subjects = set(analysis_jobs().values_list("subject", flat=True))
    assert subjects == {f"build:{builds[4].pk}", f"build:{builds[3].pk}"}
    # Builds with a job under way do not starve the ones behind them.
    out = run("analyze_builds", "--once", "--limit", "2")
    assert "2 analysis job(s) queued" in out
    assert analysis_jobs().count() == 4


def test_secrets_in_the_log_never_reach_the_prompt(provider):
    provider()
    log = PYTEST_LOG.replace(
        "E       assert 3 == 4", f"E       assert 3 == 4\nE       token={SECRET}"
    )
    build = failed_build(log=log)
    assert SECRET in build.summary["excerpt"]["text"]
    run("analyze_builds", "--once")
    output = analysis_jobs().get()
    assert SECRET not in output.prompt
    assert SECRET not in json.dumps(output.context)


def test_a_build_whose_analysis_failed_is_explained_from_its_log_tail(provider):
    provider()
    build = services.build_create(status="failed", log=[b"step 1\nlinker exploded: ld error 7\n"])
    Build.objects.filter(pk=build.pk).update(analysis_status=AnalysisStatus.FAILED)
    run("analyze_builds", "--once")
    prompt = analysis_jobs().get().prompt
    assert "linker exploded: ld error 7" in prompt
    assert "(none found)" in prompt


def test_without_a_provider_it_refuses_unless_offline_is_allowed(
    django_capture_on_commit_callbacks,
):
    # Whatever keys the machine running the tests has: only the offline provider here.
    with gateway.use_router(gateway.build_router({})):
        build = failed_build()
        with pytest.raises(CommandError, match="no LLM provider"):
            run("analyze_builds", "--once")
        assert not analysis_jobs().exists()
        with django_capture_on_commit_callbacks(execute=True):
            run("analyze_builds", "--once", "--allow-offline")
    report = BuildReport.objects.get(build=build)
    assert report.llm_output.offline is True
    assert report.confidence <= reports.OFFLINE_MAX_CONFIDENCE
    assert report.analysis.startswith("[offline]")


@pytest.mark.parametrize(
    "args", [["--limit", "0"], ["--interval", "0"], ["--retry-after", "-1", "--once"]]
)
def test_bad_options_are_rejected(provider, args):
    provider()
    with pytest.raises(CommandError):
        run("analyze_builds", *args)


def test_the_loop_sleeps_between_passes_and_stops_cleanly(provider, monkeypatch):
    provider()
    failed_build()
    sleeps = []

    def fake_sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(analyze_command.time, "sleep", fake_sleep)
    out = run("analyze_builds", "--interval", "42")
    assert sleeps == [42.0, 42.0]
    assert out.count("analysis job(s) queued") == 2
    assert out.rstrip().endswith("stopped")
    assert analysis_jobs().count() == 1


# --- the completion hook -----------------------------------------------------------------------


def fake_output(build: Build, parsed, *, offline: bool = False) -> LLMOutput:
    return LLMOutput.objects.create(
        prompt="p",
        purpose=reports.PURPOSE,
        subject=reports.subject_for(build.pk),
        context={"build_id": str(build.pk)},
        status=JobStatus.COMPLETED,
        parsed=parsed,
        offline=offline,
    )


def test_the_hook_stores_one_report_however_often_it_runs():
    build = failed_build()
    output = fake_output(build, ANSWER)
    first = reports.on_analysis_done(output)
    again = reports.on_analysis_done(output)
    assert first.pk == again.pk
    assert BuildReport.objects.count() == 1
    assert first.llm_output == output


@pytest.mark.parametrize(
    ("confidence", "stored"), [(1.7, 1.0), (-3, 0.0), ("high", 0.0), (None, 0.0), (0.42, 0.42)]
)
def test_the_hook_clamps_confidence(confidence, stored):
    build = failed_build()
    report = reports.on_analysis_done(fake_output(build, {**ANSWER, "confidence": confidence}))
    assert report.confidence == stored


def test_the_hook_caps_offline_confidence():
    build = failed_build()
    report = reports.on_analysis_done(fake_output(build, ANSWER, offline=True))
    assert report.confidence == reports.OFFLINE_MAX_CONFIDENCE


@pytest.mark.parametrize("parsed", [None, {}, {"analysis": "   "}, ["not", "an", "object"]])
def test_an_unusable_answer_stores_nothing(parsed):
    build = failed_build()
    assert reports.on_analysis_done(fake_output(build, parsed)) is None
    assert not BuildReport.objects.exists()


def test_recommendations_are_normalised():
    build = failed_build()
    report = reports.on_analysis_done(
        fake_output(build, {**ANSWER, "recommendations": "just one, as a string"})
    )
    assert report.recommendations == ["just one, as a string"]
    report = reports.on_analysis_done(
        fake_output(build, {**ANSWER, "recommendations": ["  a ", "", 3, None]})
    )
    assert report.recommendations == ["a", "3", "None"]


def test_the_hook_ignores_a_build_that_was_deleted():
    build = failed_build()
    output = fake_output(build, ANSWER)
    build.delete()
    assert reports.on_analysis_done(output) is None
    assert not BuildReport.objects.exists()
