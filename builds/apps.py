from __future__ import annotations

from django.apps import AppConfig


class BuildsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "builds"

    def ready(self) -> None:
        from builds import services  # noqa: F401  (registers the analysis sweeper)
