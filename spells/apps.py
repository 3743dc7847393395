from __future__ import annotations

from django.apps import AppConfig


class SpellsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "spells"

    def ready(self) -> None:
        from builds.signals import build_analyzed
        from spells import receivers, services, tasks  # noqa: F401  (sweepers)

        build_analyzed.connect(receivers.match_analyzed_build, dispatch_uid="spells-match-build")
