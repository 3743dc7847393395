from __future__ import annotations

from django.apps import AppConfig


class BuildsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "builds"

    def ready(self) -> None:
        from builds import autofix, services  # noqa: F401  (register their sweepers)
