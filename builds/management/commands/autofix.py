"""python manage.py autofix PATH [--command "..."] [--max-iterations N] [--allow-test-changes]

Run the autofix loop in the foreground on a workspace (a directory, a git repository, or a
file:// URL of one): a progress line per iteration on stderr, the final patch on stdout. The
workspace is never changed; apply the patch yourself with `git apply` after reading it. The run
is stored like an API run, for review in the admin.

Exit status: 0 when the tests pass at the end, 1 when the loop stopped without green tests,
2 for bad arguments.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from builds import autofix
from builds.models import AutofixStatus


class Command(BaseCommand):
    help = "Run tests in a scratch copy of PATH, ask an LLM for fixes, re-run; print the patch."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="workspace directory, git repository or file:// URL")
        parser.add_argument(
            "--command",
            dest="test_command",
            help='test command, e.g. "python -m pytest -q" (split like a shell, run without one); '
            "detected from the workspace when left out",
        )
        parser.add_argument(
            "--max-iterations",
            type=int,
            default=None,
            help="fix attempts at most (default MAX_AUTOCORRECTION_ITERATIONS)",
        )
        parser.add_argument(
            "--allow-test-changes",
            action="store_true",
            default=None,
            help="let patches change test files too",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = autofix.autofix_request(
                workspace=options["path"],
                command=options["test_command"],
                max_iterations=options["max_iterations"],
                allow_test_changes=options["allow_test_changes"],
                # At the terminal the operator already reads what they like: any path goes.
                restrict_to_root=False,
                enqueue=False,
            )
        except autofix.AutofixError as exc:
            where = f"{exc.field}: " if exc.field else ""
            raise CommandError(f"{where}{exc.message}", returncode=2) from None

        def progress(line: str) -> None:
            self.stderr.write(f"[autofix] {line}")

        self.stderr.write(
            f"[autofix] run {run.pk}: {run.runner}, up to {run.max_iterations} iteration(s)"
        )
        finished = autofix.autofix_run(run_id=run.pk, progress=progress)
        if finished is None:  # pragma: no cover - only if another process claimed it
            raise CommandError("the run was taken by another worker")
        if finished.final_patch:
            self.stdout.write(
                finished.final_patch, ending="" if finished.final_patch.endswith("\n") else "\n"
            )
        else:
            self.stderr.write("[autofix] no patch")
        if finished.status != AutofixStatus.SUCCEEDED:
            raise CommandError(
                f"{finished.status} ({finished.stop_reason}): {finished.message}", returncode=1
            )
