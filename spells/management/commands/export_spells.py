from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from spells import library, services
from spells.models import Spell


class Command(BaseCommand):
    help = "Export spells (not rejected ones unless --all) as YAML or JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")
        parser.add_argument("--output", "-o", help="File to write (default: standard output).")
        parser.add_argument("--all", action="store_true", help="Include rejected spells.")
        parser.add_argument("--status", choices=["draft", "approved", "rejected"])

    def handle(self, *args: Any, **options: Any) -> None:
        qs = Spell.objects.all() if options["all"] else Spell.objects.exclude(status="rejected")
        if options["status"]:
            qs = Spell.objects.filter(status=options["status"])
        text = library.dump_spells(services.spells_export(qs), fmt=options["format"])
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8") as fh:
                fh.write(text)
            self.stderr.write(f"Wrote {qs.count()} spells to {options['output']}.")
        else:
            self.stdout.write(text)
