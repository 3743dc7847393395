"""LLM jobs: submit, run (the django-q2 task calls `llm_job_run`), re-run, regenerate, feedback.

Lifecycle of an LLMOutput: pending → processing → completed | failed, with `retrying` between
attempts when every provider failed transiently. Every transition is a conditional UPDATE, so two
workers handed the same job (broker redelivery, sweeper) cannot both run or both finish it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from grimoire import jobs
from grimoire.logs import bind_job
from llmcore import gateway
from llmcore.models import (
    Feedback,
    JobStatus,
    LLMOutput,
    MissingVariablesError,
    OutputFormat,
    Priority,
    PromptTemplate,
    render_template,
)
from llmcore.redaction import redact, redact_obj
from llmcore.router import backoff_delay
from llmcore.types import (
    AllProvidersTransientError,
    LLMError,
    LLMRequest,
    LLMResponse,
    Message,
    ProviderError,
)

logger = logging.getLogger(__name__)

RUN_TASK = "llmcore.tasks.run_llm_job"


class TemplateNotFoundError(LookupError):
    pass


# --- Templates ----------------------------------------------------------------------------------


@transaction.atomic
def prompt_template_save(
    *,
    name: str,
    body: str,
    system_prompt: str = "",
    output_format: str = OutputFormat.TEXT,
    json_schema: dict[str, Any] | None = None,
    model: str = "",
    max_tokens: int | None = None,
    temperature: float | None = None,
    description: str = "",
    make_live: bool = True,
    user: Any = None,
) -> PromptTemplate:
    """Save a new immutable version of template `name` (version numbers count up per name)."""
    latest = (
        PromptTemplate.objects.select_for_update().filter(name=name).order_by("-version").first()
    )
    if make_live:
        PromptTemplate.objects.filter(name=name, is_live=True).update(is_live=False)
    return PromptTemplate.objects.create(
        name=name,
        version=(latest.version + 1) if latest else 1,
        body=body,
        system_prompt=system_prompt,
        output_format=output_format,
        json_schema=json_schema,
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        description=description,
        is_live=make_live or latest is None,
        created_by=user,
    )


@transaction.atomic
def prompt_template_make_live(*, template: PromptTemplate) -> PromptTemplate:
    PromptTemplate.objects.filter(name=template.name, is_live=True).update(is_live=False)
    PromptTemplate.objects.filter(pk=template.pk).update(is_live=True)
    template.is_live = True
    return template


def live_template(name: str) -> PromptTemplate:
    template = PromptTemplate.objects.filter(name=name, is_live=True).first()
    if template is None:
        raise TemplateNotFoundError(f"no live prompt template named {name!r}")
    return template


# --- Submitting ---------------------------------------------------------------------------------


@transaction.atomic
def llm_job_submit(
    *,
    template: PromptTemplate | str | None = None,
    prompt: str | None = None,
    context: dict[str, Any] | None = None,
    system_prompt: str | None = None,
    user: Any = None,
    model: str = "",
    output_format: str | None = None,
    json_schema: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    priority: str = Priority.DEFAULT,
    on_complete: str = "",
    purpose: str = "",
    subject: str = "",
    parent: LLMOutput | None = None,
    relation: str = "",
    render_prompt: bool = True,
) -> LLMOutput:
    """Store an LLM job and queue it when the caller's transaction commits.

    Give a template (instance or live name) with `context`, or a raw `prompt` (which may itself use
    `{{var}}` from `context`). Missing variables raise MissingVariablesError now, not in the
    worker. Secrets in the context are redacted before the prompt is rendered and stored, so the
    stored prompt is exactly what may leave the process.
    """
    if priority not in Priority.values:
        raise ValueError(f"priority must be one of {Priority.values}")
    if isinstance(template, str):
        template = live_template(template)
    safe_context = redact_obj(context or {})
    if template is not None:
        system_text, prompt_text = template.render(safe_context)
        system_text = system_prompt if system_prompt is not None else system_text
        output_format = output_format or template.output_format
        json_schema = json_schema if json_schema is not None else template.json_schema
        model = model or template.model
        max_tokens = max_tokens or template.max_tokens
        temperature = temperature if temperature is not None else template.temperature
    elif prompt is not None and not render_prompt:
        prompt_text, system_text = prompt, system_prompt or ""
    elif prompt is not None:
        prompt_text = render_template(prompt, safe_context)
        system_text = render_template(system_prompt or "", safe_context)
    else:
        raise ValueError("give a template or a prompt")
    if not prompt_text.strip():
        raise ValueError("the rendered prompt is empty")
    output = LLMOutput.objects.create(
        user=user,
        template=template,
        purpose=purpose or (template.name if template else ""),
        subject=subject[:200],
        context=safe_context,
        output_format=output_format or (OutputFormat.JSON if json_schema else OutputFormat.TEXT),
        json_schema=json_schema,
        system_prompt=redact(system_text),
        prompt=redact(prompt_text),
        source_prompt=redact(prompt) if template is None and prompt and render_prompt else "",
        source_system_prompt=(
            redact(system_prompt or "") if template is None and render_prompt else ""
        ),
        requested_model=model or "",
        max_tokens=max_tokens,
        temperature=temperature,
        priority=priority,
        on_complete=on_complete,
        parent=parent,
        relation=relation,
    )
    _enqueue(output)
    return output


def _enqueue(output: LLMOutput) -> None:
    jobs.enqueue(
        RUN_TASK,
        str(output.pk),
        queue=output.priority,
        task_name=f"llm-{output.job_id}",
    )


def estimated_completion(output: LLMOutput) -> Any:
    """A rough ETA: now + the recent median latency + what is queued ahead, for API clients."""
    ahead = LLMOutput.objects.filter(
        status__in=[JobStatus.PENDING, JobStatus.PROCESSING],
        priority=output.priority,
        created_at__lt=output.created_at,
    ).count()
    recent = list(
        LLMOutput.objects.filter(status=JobStatus.COMPLETED, latency_ms__isnull=False)
        .order_by("-completed_at")
        .values_list("latency_ms", flat=True)[:50]
    )
    typical = sorted(recent)[len(recent) // 2] / 1000 if recent else 5.0
    workers = max(1, settings.Q_CLUSTER.get("workers", 1))
    return output.created_at + timedelta(seconds=typical * (1 + ahead / workers))


# --- Running ------------------------------------------------------------------------------------


def _claim(output_id: str) -> tuple[LLMOutput, uuid.UUID] | None:
    """Take the job if it is runnable: pending/retrying, or processing but stuck past its timeout.

    A conditional UPDATE: when two workers race, one gets the row, the other gets 0 rows and goes
    away ("another worker got there first").
    """
    now = timezone.now()
    stuck_before = now - timedelta(seconds=settings.STUCK_AFTER_SECONDS)
    claim = uuid.uuid4()
    runnable = Q(status__in=[JobStatus.PENDING, JobStatus.RETRYING]) | Q(
        status=JobStatus.PROCESSING, claimed_at__lt=stuck_before
    )
    claimed = (
        LLMOutput.objects.filter(runnable, pk=output_id)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(
            status=JobStatus.PROCESSING,
            claim=claim,
            claimed_at=now,
            started_at=now,
            attempts=F("attempts") + 1,
        )
    )
    if not claimed:
        return None
    return LLMOutput.objects.get(pk=output_id), claim


def _request_for(output: LLMOutput) -> LLMRequest:
    return LLMRequest(
        messages=[Message("user", output.prompt)],
        system=output.system_prompt or None,
        model=output.requested_model or None,
        max_tokens=output.max_tokens,
        temperature=output.temperature,
        json_schema=output.json_schema,
        metadata={"output_id": str(output.pk), "purpose": output.purpose},
    )


def llm_job_run(*, output_id: str) -> LLMOutput | None:
    """Run one attempt of the job. Safe to call any number of times for the same id."""
    claimed = _claim(output_id)
    if claimed is None:
        logger.info(
            "llm job not runnable (finished, running elsewhere or not due)",
            extra={"output_id": output_id},
        )
        return None
    output, claim = claimed
    if output.attempts > settings.LLM_JOB_MAX_RETRIES + 1:
        # Re-claimed after its worker died (or hit the task timeout) once too often.
        return _fail(
            output,
            claim,
            LLMError(
                f"gave up after {output.attempts - 1} attempts: the worker died or exceeded "
                "the task timeout"
            ),
        )
    with bind_job(str(output.job_id)):
        try:
            response = gateway.get_router().complete(_request_for(output))
        except AllProvidersTransientError as exc:
            return _schedule_retry(output, claim, exc)
        except LLMError as exc:
            return _fail(output, claim, exc)
        except Exception as exc:  # a bug must still end the job, not leave it processing
            logger.exception("llm job crashed", extra={"output_id": output_id})
            return _fail(output, claim, exc)
        return _complete(output, claim, response)


def _attempts_json(attempts: list[Any]) -> list[dict[str, Any]]:
    return [a.to_dict() for a in attempts]


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ProviderError):
        return exc.code
    return type(exc).__name__[:50]


@transaction.atomic
def _complete(output: LLMOutput, claim: uuid.UUID, response: LLMResponse) -> LLMOutput | None:
    now = timezone.now()
    updated = LLMOutput.objects.filter(
        pk=output.pk, claim=claim, status=JobStatus.PROCESSING
    ).update(
        status=JobStatus.COMPLETED,
        provider=response.provider,
        model=response.model,
        offline=response.offline,
        raw_response=response.text,
        parsed=response.parsed,
        provider_chain=_attempts_json(response.attempts),
        structured_mode=response.structured_mode or "",
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
        cached_tokens=response.usage.cached_tokens,
        cost_usd=Decimal(str(round(response.cost_usd, 6))),
        latency_ms=response.latency_ms,
        error="",
        error_code="",
        next_attempt_at=None,
        completed_at=now,
    )
    if not updated:
        logger.warning(
            "llm job finished elsewhere; result dropped", extra={"output_id": str(output.pk)}
        )
        return None
    output.refresh_from_db()
    logger.info(
        "llm job completed",
        extra={
            "output_id": str(output.pk),
            "provider": output.provider,
            "model": output.model,
            "latency_ms": round(output.latency_ms or 0, 1),
            "cost_usd": float(output.cost_usd),
        },
    )
    _run_hook(output)
    return output


def _run_hook(output: LLMOutput) -> None:
    """Call the completion hook inside the completing transaction, once.

    A hook that raises does not undo the completed output (the answer was paid for and is
    reviewable); the error is stored on the output for staff to see.
    """
    if not output.on_complete:
        return
    try:
        hook = import_string(output.on_complete)
        with transaction.atomic():
            hook(output)
    except Exception as exc:
        logger.exception("llm completion hook failed", extra={"output_id": str(output.pk)})
        LLMOutput.objects.filter(pk=output.pk).update(
            hook_error=redact(f"{type(exc).__name__}: {exc}")[:2000]
        )


def _fail(output: LLMOutput, claim: uuid.UUID, exc: Exception) -> LLMOutput | None:
    attempts = getattr(exc, "attempts", []) or []
    with transaction.atomic():
        updated = LLMOutput.objects.filter(
            pk=output.pk, claim=claim, status=JobStatus.PROCESSING
        ).update(
            status=JobStatus.FAILED,
            error=redact(str(exc))[:4000],
            error_code=_error_code(exc),
            provider_chain=_attempts_json(attempts),
            next_attempt_at=None,
            completed_at=timezone.now(),
        )
        if not updated:
            return None
        output.refresh_from_db()
        _run_failure_hook(output)
    logger.warning(
        "llm job failed",
        extra={
            "output_id": str(output.pk),
            "error_code": output.error_code,
            "attempt": output.attempts,
        },
    )
    return output


def _run_failure_hook(output: LLMOutput) -> None:
    """Tell the owner of the job it failed (e.g. issues fall back to the offline tagger)."""
    if not output.on_complete:
        return
    try:
        hook = import_string(output.on_complete)
        on_failure = getattr(hook, "on_failure", None)
        if on_failure is not None:
            with transaction.atomic():
                on_failure(output)
    except Exception as exc:
        logger.exception("llm failure hook failed", extra={"output_id": str(output.pk)})
        LLMOutput.objects.filter(pk=output.pk).update(
            hook_error=redact(f"{type(exc).__name__}: {exc}")[:2000]
        )


def _schedule_retry(
    output: LLMOutput, claim: uuid.UUID, exc: AllProvidersTransientError
) -> LLMOutput | None:
    retries_done = output.attempts - 1  # attempts counts this one
    if retries_done >= settings.LLM_JOB_MAX_RETRIES:
        return _fail(output, claim, exc)
    delay = backoff_delay(
        retries_done + 1,
        base=settings.LLM_JOB_BACKOFF_BASE,
        cap=settings.LLM_JOB_BACKOFF_CAP,
    )
    if exc.retry_after:
        delay = max(delay, min(exc.retry_after, settings.LLM_JOB_BACKOFF_CAP))
    due = timezone.now() + timedelta(seconds=delay)
    with transaction.atomic():
        updated = LLMOutput.objects.filter(
            pk=output.pk, claim=claim, status=JobStatus.PROCESSING
        ).update(
            status=JobStatus.RETRYING,
            next_attempt_at=due,
            error=redact(str(exc))[:4000],
            error_code="transient",
            provider_chain=_attempts_json(exc.attempts),
        )
        if not updated:
            return None
        _schedule_at(output, due)
    output.refresh_from_db()
    logger.info(
        "llm job will retry",
        extra={
            "output_id": str(output.pk),
            "retry_in_s": round(delay, 1),
            "attempt": output.attempts,
        },
    )
    return output


def _schedule_at(output: LLMOutput, due: Any) -> None:
    """django-q2 has no delayed tasks: a one-off schedule fires the retry (within ~30 s of due).

    If the schedule is lost, the sweeper picks up retrying rows that are overdue.
    """
    from django_q.models import Schedule

    Schedule.objects.create(
        name=f"llm-retry-{output.pk}-{output.attempts}",
        func=RUN_TASK,
        args=repr((str(output.pk),)),
        kwargs=repr({"q_options": {"cluster": output.priority}}),
        schedule_type=Schedule.ONCE,
        repeats=-1,
        next_run=due,
    )


@jobs.register_sweeper("llm_outputs")
def sweep_stuck_outputs() -> int:
    """Re-enqueue jobs whose worker died, whose enqueue was lost, or whose retry never fired."""
    now = timezone.now()
    grace = timedelta(seconds=max(60, settings.Q_CLUSTER.get("poll", 0.2) * 10))
    stuck_before = now - timedelta(seconds=settings.STUCK_AFTER_SECONDS)
    ids = list(
        LLMOutput.objects.filter(
            Q(status=JobStatus.PENDING, created_at__lt=now - grace)
            | Q(status=JobStatus.PROCESSING, claimed_at__lt=stuck_before)
            | Q(status=JobStatus.RETRYING, next_attempt_at__lt=now - grace)
        ).values_list("pk", flat=True)[:500]
    )
    for output in LLMOutput.objects.filter(pk__in=ids).only("pk", "job_id", "priority"):
        _enqueue(output)
    return len(ids)


# --- Re-run, regenerate, feedback ---------------------------------------------------------------


def _follow_up(output: LLMOutput, *, user: Any, relation: str, **request: Any) -> LLMOutput:
    """A new job from `output`: same parameters unless `request` says otherwise, linked to it."""
    params: dict[str, Any] = {
        "user": user,
        "model": output.requested_model,
        "output_format": output.output_format,
        "json_schema": output.json_schema,
        "max_tokens": output.max_tokens,
        "temperature": output.temperature,
        "priority": output.priority,
        "purpose": output.purpose,
        "subject": output.subject,
        "parent": output,
        "relation": relation,
    }
    params.update(request)
    return llm_job_submit(**params)


def llm_output_rerun(*, output: LLMOutput, user: Any) -> LLMOutput:
    """The same request again (same prompt, template version, model, parameters) as a new output
    linked to the original."""
    if output.template_id:
        return _follow_up(
            output, user=user, relation="re_run", template=output.template, context=output.context
        )
    if output.source_prompt:
        # Rendering the same source with the same context gives the same prompt, and keeps the
        # source so the re-run can itself be regenerated later.
        return _follow_up(
            output,
            user=user,
            relation="re_run",
            prompt=output.source_prompt,
            system_prompt=output.source_system_prompt,
            context=output.context,
        )
    return _follow_up(
        output,
        user=user,
        relation="re_run",
        prompt=output.prompt,
        system_prompt=output.system_prompt,
        render_prompt=False,
        context=output.context,
    )


def llm_output_regenerate(
    *, output: LLMOutput, user: Any, context: dict[str, Any] | None = None, model: str = ""
) -> LLMOutput:
    """A new answer with a changed context and/or model. Template outputs render the template's
    live version; prompt outputs render their original prompt with the new context."""
    changes: dict[str, Any] = {"context": {**output.context, **(context or {})}}
    if model:
        changes["model"] = model
    if output.template_id:
        template = live_template(output.template.name)
        return _follow_up(output, user=user, relation="regenerate", template=template, **changes)
    if not output.source_prompt:
        # Submitted pre-rendered: there is nothing to re-render, only a new model to try.
        if context:
            raise ValueError(
                "context: this output's prompt was not built from a context; only the model can change"
            )
        return _follow_up(
            output,
            user=user,
            relation="regenerate",
            prompt=output.prompt,
            system_prompt=output.system_prompt,
            render_prompt=False,
            **changes,
        )
    return _follow_up(
        output,
        user=user,
        relation="regenerate",
        prompt=output.source_prompt,
        system_prompt=output.source_system_prompt,
        **changes,
    )


def feedback_set(*, output: LLMOutput, user: Any, vote: int, comment: str = "") -> Feedback:
    """One vote per user per output; voting again changes it."""
    if vote not in (Feedback.UP, Feedback.DOWN):
        raise ValueError("vote must be 1 (thumbs up) or -1 (thumbs down)")
    feedback, _ = Feedback.objects.update_or_create(
        output=output, user=user, defaults={"vote": vote, "comment": comment[:2000]}
    )
    return feedback


__all__ = [
    "MissingVariablesError",
    "TemplateNotFoundError",
    "feedback_set",
    "live_template",
    "llm_job_run",
    "llm_job_submit",
    "llm_output_regenerate",
    "llm_output_rerun",
    "prompt_template_make_live",
    "prompt_template_save",
    "sweep_stuck_outputs",
]
