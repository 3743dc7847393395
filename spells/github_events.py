"""GitHub event handlers (run in jobs) and the previews the receiver answers with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from grimoire import jobs
from llmcore.redaction import redact
from spells.models import GenerationStatus, PullRequest, SpellGeneration, SpellMatch

logger = logging.getLogger(__name__)

FAILING = {"failure", "timed_out", "startup_failure"}


@dataclass(frozen=True)
class Handler:
    actions: frozenset[str] | None  # None: every action
    handle: Callable[[dict[str, Any]], dict[str, Any]]
    preview_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    condition: Callable[[dict[str, Any]], bool] | None = None

    def wants(self, payload: dict[str, Any]) -> bool:
        if self.actions is not None and payload.get("action") not in self.actions:
            return False
        return self.condition(payload) if self.condition else True

    def preview(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.preview_fn(payload) if self.preview_fn else {}


def _repo(payload: dict[str, Any]) -> str:
    return str((payload.get("repository") or {}).get("full_name") or "")


# --- pull_request -------------------------------------------------------------------------------


def _pr_preview(payload: dict[str, Any]) -> dict[str, Any]:
    pr = payload.get("pull_request") or {}
    repo, number, sha = (
        _repo(payload),
        pr.get("number") or payload.get("number"),
        (pr.get("head") or {}).get("sha", ""),
    )
    known = PullRequest.objects.filter(repository=repo, number=number).first() if number else None
    matched = (
        list(
            SpellMatch.objects.filter(build__commit_sha=sha, build__repository=repo)
            .values_list("spell_id", flat=True)
            .distinct()[:20]
        )
        if sha
        else []
    )
    generated = (
        SpellGeneration.objects.filter(build__commit_sha=sha, status=GenerationStatus.COMPLETED)
        .values_list("spell_id", flat=True)
        .first()
        if sha
        else None
    )
    return {
        "pr_processing": {
            "repo": repo,
            "pr_number": number,
            "files_changed": known.files_changed
            if known and known.fetch_status == "success"
            else [],
            "status": known.fetch_status if known and known.fetch_status == "success" else "queued",
        },
        "matched_spells": matched,
        "auto_generated_spell_id": generated,
    }


def handle_pull_request(payload: dict[str, Any]) -> dict[str, Any]:
    from spells.github import GitHub

    pr_data = payload.get("pull_request") or {}
    repo = _repo(payload)
    number = int(pr_data.get("number") or payload.get("number") or 0)
    pr, _ = PullRequest.objects.update_or_create(
        repository=repo,
        number=number,
        defaults={
            "title": str(pr_data.get("title") or "")[:300],
            "head_sha": str((pr_data.get("head") or {}).get("sha") or "")[:64],
            "state": str(pr_data.get("state") or "")[:20],
            "author": str((pr_data.get("user") or {}).get("login") or "")[:100],
        },
    )
    gh = GitHub()
    try:
        files = gh.pr_files(repo, number)
        diff = gh.pr_diff(repo, number)
    except Exception as exc:
        PullRequest.objects.filter(pk=pr.pk).update(
            fetch_status="failed", fetch_error=str(exc)[:2000]
        )
        raise
    PullRequest.objects.filter(pk=pr.pk).update(
        files_changed=files,
        diff=redact(diff),
        fetch_status="success",
        fetch_error="",
        fetched_at=timezone.now(),
    )
    from builds.models import Build

    attached = (
        Build.objects.filter(
            repository=repo, commit_sha=pr.head_sha, pull_request__isnull=True
        ).update(pull_request=number)
        if pr.head_sha
        else 0
    )
    if settings.SPELLS_COMMENT_ON_PRS:
        jobs.enqueue("spells.tasks.comment_on_pr", pr.pk, queue="low")
    return {
        "repo": repo,
        "pr_number": number,
        "files_changed": files[:200],
        "builds_attached": attached,
        "status": "success",
    }


# --- failing jobs: workflow_job, workflow_run, check_run ----------------------------------------


def _ingest_job(repo: str, job: dict[str, Any], *, run: dict[str, Any] | None = None) -> str | None:
    """Create the Build for one failed Actions job (once: external_id is unique) and queue its log."""
    from builds.models import Build, BuildSource, BuildStatus

    job_id = job.get("id")
    if not isinstance(job_id, int):
        return None
    started = job.get("started_at")
    try:
        with transaction.atomic():
            build = Build.objects.create(
                source=BuildSource.GITHUB,
                external_id=f"job:{job_id}",
                status=BuildStatus.RUNNING,
                repository=repo,
                branch=str(job.get("head_branch") or (run or {}).get("head_branch") or "")[:255],
                commit_sha=str(job.get("head_sha") or (run or {}).get("head_sha") or "")[:64],
                job_name=str(job.get("name") or "")[:255],
                job_url=str(job.get("html_url") or "")[:500],
                started_at=started or timezone.now(),
            )
    except IntegrityError:
        return None  # this job was already ingested (another event about the same failure)
    jobs.enqueue("spells.tasks.fetch_job_log", str(build.pk), repo, job_id, queue="default")
    return str(build.pk)


def handle_workflow_job(payload: dict[str, Any]) -> dict[str, Any]:
    build_id = _ingest_job(_repo(payload), payload.get("workflow_job") or {})
    return {"builds": [build_id] if build_id else []}


def handle_workflow_run(payload: dict[str, Any]) -> dict[str, Any]:
    from spells.github import GitHub

    run = payload.get("workflow_run") or {}
    repo = _repo(payload)
    builds = []
    for job in GitHub().run_jobs(repo, int(run.get("id") or 0)):
        if job.get("conclusion") in FAILING:
            build_id = _ingest_job(repo, job, run=run)
            if build_id:
                builds.append(build_id)
    return {"builds": builds}


def handle_check_run(payload: dict[str, Any]) -> dict[str, Any]:
    check = payload.get("check_run") or {}
    app = (check.get("app") or {}).get("slug")
    if app == "github-actions":
        # A check run of GitHub Actions is a job with the same id: use its full log.
        job = {
            "id": check.get("id"),
            "name": check.get("name"),
            "html_url": check.get("html_url"),
            "head_sha": check.get("head_sha"),
            "started_at": check.get("started_at"),
            "head_branch": ((check.get("check_suite") or {}).get("head_branch")),
        }
        build_id = _ingest_job(_repo(payload), job)
        return {"builds": [build_id] if build_id else []}
    # Another CI: the check's own output is the log we have.
    from builds.services import DuplicateBuildError, build_create

    output = check.get("output") or {}
    text = "\n".join(str(output.get(k) or "") for k in ("title", "summary", "text")).strip()
    try:
        build = build_create(
            source="github",
            status="failed",
            external_id=f"check:{check.get('id')}",
            repository=_repo(payload),
            commit_sha=str(check.get("head_sha") or "")[:64],
            job_name=str(check.get("name") or "")[:255],
            job_url=str(check.get("html_url") or "")[:500],
            log=[text.encode()] if text else None,
        )
    except DuplicateBuildError:
        return {"builds": []}  # the same check run was delivered before
    return {"builds": [str(build.pk)]}


def _failed_completed(key: str) -> Callable[[dict[str, Any]], bool]:
    return lambda payload: (payload.get(key) or {}).get("conclusion") in FAILING


# --- issues -------------------------------------------------------------------------------------


def handle_issues(payload: dict[str, Any]) -> dict[str, Any]:
    from issues.services import issue_from_github

    issue = issue_from_github(payload=payload)
    return {"issue_id": str(issue.pk) if issue else None}


def _ping(payload: dict[str, Any]) -> dict[str, Any]:
    return {"zen": payload.get("zen", "")}


HANDLERS: dict[str, Handler] = {
    "ping": Handler(None, _ping, condition=lambda p: False),  # answered inline, nothing to do
    "pull_request": Handler(
        frozenset({"opened", "synchronize", "reopened"}), handle_pull_request, _pr_preview
    ),
    "workflow_job": Handler(
        frozenset({"completed"}), handle_workflow_job, condition=_failed_completed("workflow_job")
    ),
    "workflow_run": Handler(
        frozenset({"completed"}), handle_workflow_run, condition=_failed_completed("workflow_run")
    ),
    "check_run": Handler(
        frozenset({"completed"}), handle_check_run, condition=_failed_completed("check_run")
    ),
    "issues": Handler(frozenset({"opened", "edited", "reopened"}), handle_issues),
}
