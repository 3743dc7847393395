from __future__ import annotations

import sys

from django.apps import AppConfig


class LlmcoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "llmcore"
    verbose_name = "LLM gateway"

    def ready(self) -> None:
        from llmcore import checks, services  # noqa: F401  (registers the checks and the sweeper)

        # Say which providers answer, once, when a server or worker starts.
        if any(cmd in sys.argv for cmd in ("qcluster", "runserver")) or "gunicorn" in sys.argv[0]:
            from llmcore.gateway import log_available_providers

            log_available_providers()
