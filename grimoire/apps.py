from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GrimoireConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "grimoire"
    verbose_name = "Grimoire"

    def ready(self) -> None:
        from grimoire import checks, schema  # noqa: F401  (registers checks and schema extensions)
        from grimoire.jobs import ensure_schedules

        # Periodic schedules follow settings.PERIODIC_TASKS after every migrate, so a deploy
        # that adds or changes a periodic task needs no manual step.
        post_migrate.connect(ensure_schedules, sender=self, dispatch_uid="grimoire-schedules")
