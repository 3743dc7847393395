"""Issues: create, update, enrich (LLM job with the fallback tagger underneath), GitHub sync."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from grimoire import jobs
from issues import tagger
from issues.models import EnrichmentSource, EnrichmentStatus, Issue, Source
from llmcore.models import LLMOutput

logger = logging.getLogger(__name__)

ENRICH_TEMPLATE = "issue-enrichment"


def vocabulary() -> list[str]:
    return list(settings.ISSUES_TAG_VOCABULARY or tagger.DEFAULT_VOCABULARY)


def _fallback(issue: Issue, *, note: str) -> None:
    """Apply the offline enrichment (always possible, never lost) and mark it as fallback."""
    result = tagger.fallback_enrich(
        issue.title,
        issue.description,
        vocabulary=vocabulary(),
        allow_new_tags=settings.ISSUES_ALLOW_NEW_TAGS,
    )
    issue.kind = result.kind
    issue.ai_summary = result.summary
    issue.tags = result.tags
    issue.enrichment_source = EnrichmentSource.FALLBACK
    issue.enrichment_note = note[:300]
    issue.enriched_at = timezone.now()


@transaction.atomic
def issue_create(
    *,
    title: str,
    description: str,
    priority: str = "medium",
    reporter: Any = None,
    source: str = Source.API,
    github_repository: str = "",
    github_number: int | None = None,
    github_url: str = "",
    github_author: str = "",
) -> Issue:
    issue = Issue(
        title=title,
        description=description,
        priority=priority,
        reporter=reporter,
        source=source,
        github_repository=github_repository,
        github_number=github_number,
        github_url=github_url,
        github_author=github_author,
    )
    # The fallback answers at once, so an issue is never without a summary and tags; the LLM's
    # answer replaces it when it arrives.
    _fallback(issue, note="provisional, LLM enrichment queued")
    issue.save()
    issue_enrich(issue=issue)
    return issue


@transaction.atomic
def issue_update(*, issue: Issue, data: dict[str, Any], user: Any = None) -> Issue:
    """Apply field changes; a changed title or description is enriched again.

    Staff editing the summary or tags takes precedence over enrichment (source "staff").
    """
    text_changed = any(
        key in data and data[key] != getattr(issue, key) for key in ("title", "description")
    )
    for key, value in data.items():
        setattr(issue, key, value)
    if "tags" in data:
        issue.tags = tagger.normalize_tags(data["tags"], vocabulary=None, allow_new=True)
    if "ai_summary" in data or "tags" in data:
        issue.enrichment_source = EnrichmentSource.STAFF
        issue.enrichment_status = EnrichmentStatus.DONE
        issue.enrichment_note = f"edited by {user}" if user else "edited"
    issue.save()
    if text_changed and issue.enrichment_source != EnrichmentSource.STAFF:
        issue_enrich(issue=issue)
    return issue


def _llm_available() -> bool:
    """True when some real provider is configured (not only the offline placeholder)."""
    import os

    from llmcore.config import providers_from_env

    try:
        return any(c.kind != "offline" for c in providers_from_env(os.environ))
    except ValueError:
        return False


@transaction.atomic
def issue_enrich(*, issue: Issue) -> Issue:
    """Queue LLM enrichment (after commit); with no provider, the fallback is final right away."""
    from llmcore.services import llm_job_submit

    if not _llm_available():
        _fallback(issue, note="no LLM provider configured")
        issue.enrichment_status = EnrichmentStatus.FALLBACK
        issue.llm_output = None
        issue.save()
        _after_enrichment(issue)
        return issue
    output = llm_job_submit(
        template=ENRICH_TEMPLATE,
        context={
            "title": issue.title,
            "description": issue.description,
            "vocabulary": ", ".join(vocabulary()),
        },
        user=issue.reporter,
        purpose="issues.enrich",
        subject=f"issue:{issue.pk}",
        on_complete="issues.services.on_enrichment_done",
    )
    issue.enrichment_status = EnrichmentStatus.PENDING
    issue.llm_output = output
    issue.save(update_fields=["enrichment_status", "llm_output", "updated_at"])
    return issue


def _current_issue(output: LLMOutput) -> Issue | None:
    """The issue this output enriches, locked, unless a newer enrichment replaced this one."""
    issue = Issue.objects.select_for_update().filter(llm_output=output).first()
    if issue is None:
        logger.info(
            "enrichment result for a superseded job ignored", extra={"output_id": str(output.pk)}
        )
    return issue


def on_enrichment_done(output: LLMOutput) -> None:
    """LLM job hook: validate, normalise and store, or fall back."""
    issue = _current_issue(output)
    if issue is None or issue.enrichment_source == EnrichmentSource.STAFF:
        return
    parsed = output.parsed if isinstance(output.parsed, dict) else {}
    summary = str(parsed.get("summary") or "").strip()
    tags = tagger.normalize_tags(
        parsed.get("tags"),
        vocabulary=[*vocabulary(), *tagger.RESERVED_TAGS],
        allow_new=settings.ISSUES_ALLOW_NEW_TAGS,
    )
    if output.offline:
        _fallback(issue, note="only the offline provider answered")
        issue.enrichment_status = EnrichmentStatus.FALLBACK
    elif not summary or not tags:
        _fallback(issue, note="LLM answer unusable (no summary or no allowed tags)")
        issue.enrichment_status = EnrichmentStatus.FALLBACK
    else:
        issue.ai_summary = summary[:600]
        issue.tags = tags
        issue.kind = tagger.classify_kind(issue.title, issue.description)
        issue.enrichment_source = EnrichmentSource.LLM
        issue.enrichment_status = EnrichmentStatus.DONE
        issue.enrichment_note = f"{output.provider} {output.model}"[:300]
        issue.enriched_at = timezone.now()
    issue.save()
    _after_enrichment(issue)


def _on_enrichment_failed(output: LLMOutput) -> None:
    issue = _current_issue(output)
    if issue is None or issue.enrichment_source == EnrichmentSource.STAFF:
        return
    _fallback(issue, note=f"LLM failed: {output.error_code or 'error'}")
    issue.enrichment_status = EnrichmentStatus.FALLBACK
    issue.save()
    _after_enrichment(issue)


on_enrichment_done.on_failure = _on_enrichment_failed  # type: ignore[attr-defined]


def _after_enrichment(issue: Issue) -> None:
    if (
        settings.ISSUES_SYNC_GITHUB_LABELS
        and issue.source == Source.GITHUB
        and issue.github_number
        and settings.GITHUB_API_TOKEN
    ):
        jobs.enqueue("issues.tasks.sync_labels", str(issue.pk), queue="low")


def issue_sync_labels(*, issue_id: str, client: httpx.Client | None = None) -> bool:
    """Add the issue's tags as labels on GitHub (POST adds, never removes people's labels)."""
    issue = Issue.objects.filter(pk=issue_id, source=Source.GITHUB).first()
    if issue is None or not issue.tags or not issue.github_number:
        return False
    owner_repo = issue.github_repository
    if owner_repo.count("/") != 1 or ".." in owner_repo:
        logger.warning("refusing label sync for odd repository name", extra={"repo": owner_repo})
        return False
    url = f"{settings.GITHUB_API_URL}/repos/{owner_repo}/issues/{issue.github_number}/labels"
    headers = {
        "Authorization": f"Bearer {settings.GITHUB_API_TOKEN}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    own = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(10.0, connect=5.0))
    try:
        response = client.post(url, json={"labels": issue.tags}, headers=headers)
    finally:
        if own:
            client.close()
    if response.status_code >= 400:
        logger.warning(
            "GitHub label sync failed",
            extra={"issue": str(issue.pk), "status": response.status_code},
        )
        response.raise_for_status()  # the task fails visibly; django-q2 records the error
    Issue.objects.filter(pk=issue.pk).update(labels_synced_at=timezone.now())
    return True


# --- GitHub `issues` events (called by the webhook receiver) ------------------------------------


@transaction.atomic
def issue_from_github(*, payload: dict[str, Any]) -> Issue | None:
    """Create or update the issue of an `issues` event (opened, edited, reopened)."""
    data = payload.get("issue") or {}
    repo = (payload.get("repository") or {}).get("full_name", "")
    number = data.get("number")
    if not repo or not isinstance(number, int):
        return None
    if data.get("pull_request"):
        return None  # pull requests arrive through their own events
    title = (data.get("title") or "").strip()[
        : Issue._meta.get_field("title").max_length
    ] or f"#{number}"
    body = (data.get("body") or "").strip()[:20_000] or title
    existing = Issue.objects.select_for_update().filter(
        source=Source.GITHUB, github_repository=repo, github_number=number
    )
    issue = existing.first()
    if issue is None:
        try:
            with transaction.atomic():
                return issue_create(
                    title=title,
                    description=body,
                    source=Source.GITHUB,
                    github_repository=repo,
                    github_number=number,
                    github_url=data.get("html_url", "")[:200],
                    github_author=((data.get("user") or {}).get("login") or "")[:100],
                )
        except IntegrityError:
            # Another delivery about the same new issue (opened, then edited at once) created it
            # first: update that one instead.
            issue = existing.get()
    changed = {}
    if issue.title != title:
        changed["title"] = title
    if issue.description != body:
        changed["description"] = body
    if payload.get("action") == "reopened":
        changed["status"] = "open"
    if changed:
        issue_update(issue=issue, data=changed)
    return issue
