"""python manage.py analyze_builds [--once] [--interval 300] [--limit 50]

The seed's "full learning loop", inside Grimoire: every pass finds failed builds without a
failure_analysis report and queues one LLM analysis job for each (at most `--limit` per pass);
each job's completion hook stores the answer as a BuildReport. Jobs run on the django-q2 workers
(`qcluster`), so this loop only decides what to ask.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from builds import reports


class Command(BaseCommand):
    help = "Ask the configured LLM for a failure analysis of each failed build without one."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument(
            "--interval", type=float, default=300.0, help="seconds between passes (default 300)"
        )
        parser.add_argument(
            "--limit", type=int, default=50, help="most jobs queued per pass (default 50)"
        )
        parser.add_argument(
            "--retry-after",
            type=float,
            default=24.0,
            help="hours before a build whose analysis failed is asked about again (default 24)",
        )
        parser.add_argument(
            "--allow-offline",
            action="store_true",
            help="run even when no LLM provider is configured (stores clearly marked "
            "placeholder reports with confidence at most 0.1)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        if options["interval"] < 1 and not options["once"]:
            raise CommandError("--interval must be at least 1 second")
        if options["retry_after"] < 0:
            raise CommandError("--retry-after must not be negative")
        if not options["allow_offline"] and not reports.real_provider_configured():
            raise CommandError(
                "no LLM provider is configured, so only the offline placeholder would answer; "
                "set a provider key (e.g. OPENAI_API_KEY, see .env.example) or pass --allow-offline"
            )
        retry_after = timedelta(hours=options["retry_after"])
        try:
            while True:
                self.run_pass(limit=options["limit"], retry_after=retry_after)
                if options["once"]:
                    return
                time.sleep(options["interval"])
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    def run_pass(self, *, limit: int, retry_after: timedelta) -> int:
        submitted = 0
        for build in reports.builds_needing_analysis(limit=limit, retry_after=retry_after):
            output = reports.build_failure_analysis_submit(build=build, retry_after=retry_after)
            if output is None:
                continue  # another loop queued it between our read and our lock
            submitted += 1
            self.stdout.write(f"  queued analysis of build {build.pk} (job {output.job_id})")
        self.stdout.write(f"{submitted} analysis job(s) queued")
        return submitted
