"""Tag issues offline: `manage.py tag_issue --json < issues.jsonl`.

Each input line is a JSON object `{"title": ..., "body": ...}`; each output line is
`{"kind", "tags", "summary", "source"}` from the fallback enrichment (`issues.tagger`), so no LLM
provider is ever called. A line that cannot be read yields `{"error": ..., "line": n}` and the run
goes on; the command exits non-zero at the end when any line failed.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from issues.tagger import DEFAULT_VOCABULARY, fallback_enrich

# A line longer than this is refused without being parsed: one runaway line must not hold the
# whole batch in memory. Far above GitHub's own limit for an issue body (65,536 characters).
MAX_LINE_CHARS = 1_000_000
_READ_CHUNK = 64 * 1024


def _lines(stream: IO[str]):
    """Yield (line_number, text, too_long) without ever holding more than MAX_LINE_CHARS."""
    number = 0
    while True:
        line = stream.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
            # Skip the rest of the runaway line in bounded chunks.
            while True:
                rest = stream.readline(_READ_CHUNK)
                if not rest or rest.endswith("\n"):
                    break
            yield number, "", True
            continue
        yield number, line, False


def _issue_from(text: str) -> tuple[str, str]:
    """Title and body from one JSON line; ValueError with a readable message otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(data, dict):
        raise ValueError('expected a JSON object {"title": ..., "body": ...}')
    title, body = data.get("title"), data.get("body")
    for name, value in (("title", title), ("body", body)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f'"{name}" must be a string')
    if not (title or body):
        raise ValueError('"title" or "body" is required')
    return title or "", body or ""


class Command(BaseCommand):
    help = (
        'Read JSON lines {"title", "body"} on standard input and write one JSON line each '
        '{"kind", "tags", "summary", "source"}, decided offline (no LLM provider is called).'
    )
    # call_command("tag_issue", "--json", stdin=io.StringIO(...)) in tests.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help="Read JSON lines on standard input, write JSON lines (the only mode).",
        )
        parser.add_argument(
            "--vocabulary",
            default=None,
            help="Comma-separated tag vocabulary (default: ISSUES_TAG_VOCABULARY or the common tags).",
        )
        parser.add_argument(
            "--allow-new-tags",
            action="store_true",
            default=None,
            help="Allow tags outside the vocabulary, such as component names "
            "(default: ISSUES_ALLOW_NEW_TAGS or off).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["json"]:
            raise CommandError(
                'Use --json: read {"title", "body"} JSON lines on stdin, e.g. '
                'echo \'{"title": "Crash on save", "body": "..."}\' | '
                "python manage.py tag_issue --json"
            )
        if options["vocabulary"] is not None:
            vocabulary = [v.strip() for v in options["vocabulary"].split(",") if v.strip()]
        else:
            vocabulary = list(
                getattr(settings, "ISSUES_TAG_VOCABULARY", None) or DEFAULT_VOCABULARY
            )
        allow_new = options["allow_new_tags"]
        if allow_new is None:
            allow_new = bool(getattr(settings, "ISSUES_ALLOW_NEW_TAGS", False))

        stream = options.get("stdin") or sys.stdin
        total = failed = 0
        for number, text, too_long in _lines(stream):
            if not too_long and not text.strip():
                continue  # blank lines separate batches; they are not issues
            total += 1
            try:
                if too_long:
                    raise ValueError(f"line longer than {MAX_LINE_CHARS} characters")
                title, body = _issue_from(text)
            except ValueError as exc:
                failed += 1
                self._emit({"error": str(exc), "line": number})
                continue
            enrichment = fallback_enrich(
                title, body, vocabulary=vocabulary, allow_new_tags=allow_new
            )
            self._emit(
                {
                    "kind": enrichment.kind,
                    "tags": enrichment.tags,
                    "summary": enrichment.summary,
                    "source": enrichment.source,
                }
            )
        if failed:
            raise CommandError(
                f"{failed} of {total} lines could not be tagged (see their error lines)."
            )

    def _emit(self, payload: dict[str, Any]) -> None:
        # One line per input line, flushed, so a consumer can stream the output.
        self.stdout.write(json.dumps(payload, ensure_ascii=False))
        self.stdout.flush()
