from __future__ import annotations

import os
from typing import Any

from django.core.checks import Error, register


@register()
def check_llm_providers(app_configs: Any = None, **_: Any) -> list[Any]:
    """A provider list that cannot work (unknown name, missing key) is caught at start-up."""
    from llmcore.config import prices_from_env, providers_from_env

    problems = []
    try:
        providers_from_env(os.environ)
    except ValueError as exc:
        problems.append(
            Error(
                f"LLM provider configuration: {exc}",
                hint="See LLM_PROVIDERS in .env.example.",
                id="llmcore.E001",
            )
        )
    try:
        prices_from_env(os.environ)
    except ValueError as exc:
        problems.append(Error(str(exc), id="llmcore.E002"))
    return problems
