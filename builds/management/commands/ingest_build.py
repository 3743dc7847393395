"""python manage.py ingest_build FILE [--status failed] [--repo R] [--branch B] [--job NAME] [--json]

Store a build log from disk (plain or gzip, or `-` for stdin) as a Build, analyse it right away
and print the summary: what a CI step without network access to the API, or a person with a log
on disk, would use.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from builds import logstore, services
from builds.models import FINISHED_STATUSES, AnalysisStatus, Build
from builds.serializers import BuildMetadataInput

GZIP_MAGIC = b"\x1f\x8b"
_SHOWN = 10


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    blocks = logstore.iter_stream(stream)
    first = next(blocks, b"")
    whole = itertools.chain([first], blocks)
    # Recognised by content, not name: a ".log" that is really gzip is common in CI artefacts.
    return logstore.gunzip(whole) if first[:2] == GZIP_MAGIC else whole


class Command(BaseCommand):
    help = "Store a build log from a file (plain or gzip), analyse it and print the summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", metavar="FILE", help="log file (plain or gzip); - for stdin")
        parser.add_argument(
            "--status",
            default="failed",
            choices=[s.value for s in FINISHED_STATUSES],
            help="how the build ended (default: failed)",
        )
        parser.add_argument("--repo", default="", help="repository, e.g. acme/shop")
        parser.add_argument("--branch", default="")
        parser.add_argument("--job", default="", help="CI job name")
        parser.add_argument("--commit", default="", help="commit SHA")
        parser.add_argument("--pr", type=int, default=None, help="pull request number")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--wait",
            type=float,
            default=600.0,
            help="seconds to wait when a worker is already analysing the build (default 600)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        meta = BuildMetadataInput(
            data={
                "status": options["status"],
                "repository": options["repo"],
                "branch": options["branch"],
                "job_name": options["job"],
                "commit_sha": options["commit"],
                "pull_request": options["pr"],
            }
        )
        if not meta.is_valid():
            field, errors = next(iter(meta.errors.items()))
            raise CommandError(f"{field}: {' '.join(str(e) for e in errors)}")
        data = dict(meta.validated_data)
        data.pop("finished_at", None)
        status = data.pop("status")

        path = options["file"]
        try:
            stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            build = services.build_create(status=status, log=_blocks(stream), **data)
        except logstore.BadCompressionError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        except logstore.LogTooLargeError as exc:
            raise CommandError(f"{path}: {exc}") from exc
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()

        build = self._analyse(build, wait=options["wait"])
        if options["json"]:
            self.stdout.write(json.dumps(self._as_json(build), default=str))
        else:
            self._write_summary(build)
        if build.analysis_status == AnalysisStatus.FAILED:
            raise CommandError(
                f"build {build.pk} stored, but its analysis failed: {build.analysis_error}"
            )

    def _analyse(self, build: Build, *, wait: float) -> Build:
        analysed = services.build_analyze(build_id=str(build.pk))
        if analysed is not None:
            return analysed
        # A running worker claimed the queued analysis first: wait for its result.
        deadline = time.monotonic() + wait
        while True:
            build.refresh_from_db()
            if build.analysis_status in (AnalysisStatus.DONE, AnalysisStatus.FAILED):
                return build
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"build {build.pk} stored; its analysis is still {build.analysis_status} "
                    f"after {wait:.0f}s (a worker is on it)"
                )
            time.sleep(0.5)

    @staticmethod
    def _as_json(build: Build) -> dict[str, Any]:
        summary = build.summary or {}
        return {
            "build_id": str(build.pk),
            "status": build.status,
            "repository": build.repository,
            "branch": build.branch,
            "job_name": build.job_name,
            "commit_sha": build.commit_sha,
            "pull_request": build.pull_request,
            "log_bytes": build.log_bytes,
            "analysis_status": build.analysis_status,
            "total_lines": build.total_lines,
            "error_count": build.error_count,
            "warning_count": build.warning_count,
            "errors": summary.get("errors", []),
            "warnings": summary.get("warnings", []),
            "failures": summary.get("failures", []),
            "primary_error": summary.get("primary_error"),
            "excerpt": summary.get("excerpt"),
        }

    def _write_summary(self, build: Build) -> None:
        out = self.stdout
        summary = build.summary or {}
        label = " ".join(x for x in (build.repository, build.branch, build.job_name) if x)
        out.write(
            self.style.SUCCESS(f"build {build.pk}")
            + f" [{build.status}] {label} — {build.log_bytes} bytes, {build.total_lines} lines, "
            f"{build.error_count} errors, {build.warning_count} warnings, "
            f"{len(summary.get('failures', []))} test failures"
        )
        primary = summary.get("primary_error")
        if primary:
            out.write(f"  primary error (line {primary['line']}): {primary['text'][:300]}")
        else:
            out.write("  no error found")
        for failure in summary.get("failures", [])[:_SHOWN]:
            message = f": {failure['message'][:200]}" if failure.get("message") else ""
            out.write(f"  failed [{failure['runner']}] {failure['test']}{message}")
        errors = summary.get("errors", [])
        for error in errors[:_SHOWN]:
            out.write(f"  {error['line']:>7}: {error['text'][:200]}")
        if len(errors) > _SHOWN:
            out.write(f"  ... {len(errors) - _SHOWN} more errors")
        excerpt = summary.get("excerpt")
        if excerpt:
            out.write(f"  excerpt: lines {excerpt['start']}-{excerpt['end']}")
