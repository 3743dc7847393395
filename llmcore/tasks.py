"""django-q2 entry points for llmcore: thin, by id, safe to deliver twice."""

from __future__ import annotations

from llmcore import services


def run_llm_job(output_id: str) -> str | None:
    output = services.llm_job_run(output_id=output_id)
    return output.status if output is not None else None
