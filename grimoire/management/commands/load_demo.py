from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from grimoire import demo


class Command(BaseCommand):
    help = (
        "Load the demo data of every app (idempotent). Without --force only into an empty database."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Load even if data exists.")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.utils.module_loading import autodiscover_modules

        autodiscover_modules("demo")
        if not options["force"] and not demo.database_is_empty():
            self.stdout.write("Database already has data; demo data not loaded (use --force).")
            return
        counts = demo.load_all(self.stdout)
        total = sum(counts.values())
        parts = ", ".join(f"{name}: {n}" for name, n in counts.items()) or "no loaders"
        self.stdout.write(f"Demo data loaded ({total} rows; {parts}).")
