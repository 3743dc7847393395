from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spells import library, services


class Command(BaseCommand):
    help = "Import spells from YAML/JSON files (idempotent by slug), or the starter library with --starter."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="*")
        parser.add_argument(
            "--starter", action="store_true", help="Import the shipped starter library."
        )
        parser.add_argument(
            "--skip-existing",
            action="store_true",
            help="Only create spells whose slug is new (keeps local edits).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        defs = []
        try:
            if options["starter"]:
                defs.extend(library.load_starter_library())
            for path in options["files"]:
                defs.extend(library.load_spell_file(path))
        except (OSError, ValueError) as exc:  # SpellFileError is a ValueError too
            raise CommandError(str(exc)) from exc
        if not defs:
            raise CommandError("Nothing to import: give files or --starter.")
        if options["skip_existing"]:
            from spells.models import Spell

            existing = set(
                Spell.objects.filter(slug__in=[d.slug for d in defs]).values_list("slug", flat=True)
            )
            defs = [d for d in defs if d.slug not in existing]
        counts = (
            services.spells_import(defs) if defs else {"created": 0, "updated": 0, "unchanged": 0}
        )
        self.stdout.write(
            f"Spells: {counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged."
        )
