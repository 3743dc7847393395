from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spells import services


class Command(BaseCommand):
    help = "Analyse a log file and print its errors with the spells that match them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file")
        parser.add_argument("--json", action="store_true")
        parser.add_argument("--limit", type=int, default=5)

    def handle(self, *args: Any, **options: Any) -> None:
        from builds.logparse import analyze_path

        try:
            analysis = analyze_path(options["file"]).to_dict()
        except OSError as exc:
            raise CommandError(f"cannot read {options['file']}: {exc}") from exc
        errors = analysis.get("errors", [])
        primary = analysis.get("primary_error")
        targets = ([primary] if primary else []) + [
            e for e in errors if not primary or e["line"] != primary["line"]
        ]
        out = []
        for error in targets[:50]:
            matches = services.spells_match(
                message=error["text"],
                lines=[error["text"]],
                fingerprints=[error.get("fingerprint", "")],
                limit=options["limit"],
            )
            out.append(
                {
                    **error,
                    "primary": bool(primary) and error["line"] == primary["line"],
                    "matches": [m.to_dict() for m in matches],
                }
            )
        result = {
            "path": options["file"],
            "error_count": analysis.get("error_count", 0),
            "errors": out,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result, default=str))
            return
        for item in out:
            mark = "*" if item["primary"] else " "
            self.stdout.write(f"{mark} line {item['line']}: {item['text'][:160]}")
            for m in item["matches"]:
                self.stdout.write(
                    f"      → spell {m['spell_id']} ({m['reason']}, {m['score']:.0f})"
                )
