"""Run an allowed command in the workspace, streaming its output into a Build's log.

Only commands named in settings.BUILD_RUN_COMMANDS run (name → argv list, chosen by staff);
never a shell, a scrubbed environment (no service secrets leak into the child), a time limit,
and an output cap.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from builds import logstore, services
from builds.models import Build, BuildStatus

_SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "USER", "SHELL")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["CI"] = "true"
    return env


def allowed_commands() -> dict[str, list[str]]:
    return {name: list(argv) for name, argv in (settings.BUILD_RUN_COMMANDS or {}).items()}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_build(*, build_id: str) -> Build:
    """Execute the build's command (already validated at submit time) and finish the build."""
    build = Build.objects.get(pk=build_id)
    if build.status != BuildStatus.QUEUED:
        return build  # a second delivery of this job: it already ran or is running
    claimed = Build.objects.filter(pk=build_id, status=BuildStatus.QUEUED).update(
        status=BuildStatus.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return build
    build.refresh_from_db()
    argv = allowed_commands().get(build.command)
    root = Path(settings.WORKSPACE_ROOT)
    if not argv or not root.is_dir():
        logstore.append_log(
            build,
            [
                f"grimoire: command {build.command!r} is not allowed or the workspace is missing\n".encode()
            ],
        )
        return services.build_finish(build=build, status=BuildStatus.ERROR)

    limit = settings.BUILD_RUN_MAX_OUTPUT_BYTES
    deadline = time.monotonic() + settings.BUILD_RUN_TIMEOUT_SECONDS
    started = time.monotonic()
    written = 0
    outcome: str | None = None
    try:
        proc = subprocess.Popen(
            argv,
            cwd=root,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        logstore.append_log(build, [f"grimoire: could not start {argv[0]}: {exc}\n".encode()])
        return services.build_finish(build=build, status=BuildStatus.ERROR)
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
    buffer = bytearray()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome = f"timed out after {settings.BUILD_RUN_TIMEOUT_SECONDS}s"
                _kill(proc)
                break
            if not selector.select(timeout=min(remaining, 1.0)):
                if proc.poll() is not None:
                    break
                continue
            data = os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
            if not data:
                break
            if written + len(data) > limit:
                data = data[: max(0, limit - written)]
                outcome = f"output over {limit} bytes; stopped"
                _kill(proc)
            buffer += data
            written += len(data)
            if len(buffer) >= logstore.CHUNK_BYTES or outcome:
                logstore.append_log(build, [bytes(buffer)])
                buffer.clear()
            if outcome:
                break
    finally:
        selector.close()
        if buffer:
            logstore.append_log(build, [bytes(buffer)])
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill(proc)
            code = proc.wait()
    elapsed = time.monotonic() - started
    note = f"\ngrimoire: {outcome or f'exit code {code}'} ({elapsed:.1f}s)\n"
    logstore.append_log(build, [note.encode()])
    status = (
        BuildStatus.ERROR if outcome else (BuildStatus.SUCCESS if code == 0 else BuildStatus.FAILED)
    )
    return services.build_finish(build=build, status=status)
