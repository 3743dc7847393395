"""python manage.py summarize_log FILE [FILE ...] [--json]

Analyse build logs on disk (plain or gzip) with builds.logparse and print, per file, either one
JSON object per line (``--json``) or a short readable summary. A file that cannot be read gets a
clear message on stderr; the other files are still analysed and the command exits non-zero at
the end.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from builds.logparse import MAX_FINDINGS, LogAnalysis, analyze_path

_SHOWN_ERRORS = 10
_SHOWN_FAILURES = 10
_SHOWN_EXCERPT_LINES = 25


def _more(left: int, listed: int) -> str:
    # The analysis lists at most MAX_FINDINGS of each kind: a full list may hide more.
    return f"at least {left}" if listed >= MAX_FINDINGS else str(left)


class Command(BaseCommand):
    help = "Summarise build logs: errors, warnings, test failures, the primary error and the failure excerpt."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "files", nargs="+", metavar="FILE", help="log files (plain text or gzip)"
        )
        parser.add_argument(
            "--json", action="store_true", help="print one JSON object per file, one per line"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        failed: list[str] = []
        for path in options["files"]:
            try:
                analysis = analyze_path(path)
            except (OSError, EOFError) as exc:  # missing, unreadable, directory, truncated gzip
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                self.stderr.write(f"summarize_log: cannot read {path}: {reason}")
                failed.append(path)
                continue
            if options["json"]:
                self.stdout.write(json.dumps({"path": path, **analysis.to_dict()}))
            else:
                self._write_summary(path, analysis)
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(options['files'])} file(s) could not be read: {', '.join(failed)}"
            )

    def _write_summary(self, path: str, analysis: LogAnalysis) -> None:
        out = self.stdout
        out.write(
            self.style.MIGRATE_HEADING(path)
            + f": {analysis.total_lines} lines, {analysis.error_count} errors, "
            f"{analysis.warning_count} warnings, {len(analysis.failures)} test failures"
        )
        primary = analysis.primary_error
        if primary is None:
            out.write("  no error found")
        else:
            out.write(
                f"  primary error (line {primary.line}, {primary.kind}): {primary.text[:300]}"
            )
        for failure in analysis.failures[:_SHOWN_FAILURES]:
            message = f": {failure.message[:200]}" if failure.message else ""
            out.write(f"  failed [{failure.runner}] {failure.test} (line {failure.line}){message}")
        if len(analysis.failures) > _SHOWN_FAILURES:
            out.write(
                f"  ... {_more(len(analysis.failures) - _SHOWN_FAILURES, len(analysis.failures))}"
                " more test failures"
            )
        if analysis.errors:
            out.write("  errors:")
            for error in analysis.errors[:_SHOWN_ERRORS]:
                out.write(f"    {error.line:>7}: {error.text[:200]}")
            # errors lists the lines that explain the failure, which can be fewer
            # than error_count (every error-looking line), so count what is left of it.
            if len(analysis.errors) > _SHOWN_ERRORS:
                left = _more(len(analysis.errors) - _SHOWN_ERRORS, len(analysis.errors))
                out.write(f"    ... {left} more")
        excerpt = analysis.excerpt
        if excerpt is not None:
            out.write(f"  excerpt (lines {excerpt.start}-{excerpt.end}):")
            lines = excerpt.text.split("\n")
            for number, text in enumerate(lines[:_SHOWN_EXCERPT_LINES], start=excerpt.start):
                out.write(f"    {number:>7} | {text[:200]}")
            if len(lines) > _SHOWN_EXCERPT_LINES:
                out.write(f"    ... {len(lines) - _SHOWN_EXCERPT_LINES} more lines")
