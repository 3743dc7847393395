"""Autofix: run a workspace's tests, ask an LLM for a patch, apply it, re-run, iterate.

Grimoire proposes; people decide. Everything happens in a scratch copy of the workspace and the
result is a unified diff stored on an AutofixRun for review: the user's workspace is only ever
read (never written, not even its .git) and nothing is pushed anywhere.

The loop (seed 004's autocorrection cycle):

1. copy the workspace to a scratch directory: a local clone when it is a git repository (plus its
   uncommitted changes and untracked files), else a copy that skips VCS, dependency and build
   folders; a baseline commit in the scratch repository makes every later diff exact;
2. run the test command: an argv list from an allowlist of test runners, no shell, a scrubbed
   environment, a time limit (the whole process group is killed) and an output cap;
3. parse the failures with builds.logparse;
4. build a bounded prompt (failing tests, messages, the output's tail, the relevant source
   excerpts, secrets redacted) and ask for {"diff", "explanation"} as structured output; every
   call is stored as an LLMOutput for review;
5. apply the diff with our own parser: every path must stay inside the scratch copy (no absolute
   paths, no `..`, no `.git`, no symlinks on the way), test files are refused unless allowed,
   and all files change or none do;
6. re-run; stop when the tests pass, when the improvement is below
   MIN_IMPROVEMENT_THRESHOLD_PERCENT, when patches failed to apply twice in a row, or after
   MAX_AUTOCORRECTION_ITERATIONS. A patch that made things no better is taken back out.

When no LLM provider answers (or only the offline placeholder does), a heuristic fallback applies
only deterministic, well-known fixes (a missing stdlib import named by a NameError, a missing
node builtin `require` named by a ReferenceError, an import of a local module misspelt by one
or two letters) and the run says so.

A caveat for operators: the tests are the workspace's own code and run with Grimoire's rights.
The allowlist stops callers from choosing arbitrary programs or pointing runners outside the
scratch copy; it is not a sandbox. Run autofix on workspaces you trust, or run the worker in a
container.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import logging
import os
import re
import selectors
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlparse

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from builds.codebase import SECRET_NAMES, SECRET_SUFFIXES
from builds.models import (
    AutofixFixSource,
    AutofixIteration,
    AutofixReview,
    AutofixRun,
    AutofixStatus,
    AutofixStopReason,
)
from builds.runner import _kill as kill_process_group
from builds.runner import child_env
from grimoire import jobs
from llmcore import gateway
from llmcore.models import JobStatus, LLMOutput, OutputFormat
from llmcore.redaction import redact
from llmcore.types import (
    AllProvidersFailedError,
    AllProvidersTransientError,
    LLMError,
    LLMRequest,
    LLMResponse,
    Message,
    StructuredOutputError,
)

logger = logging.getLogger(__name__)

RUN_TASK = "builds.tasks.run_autofix"
LLM_PURPOSE = "builds.autofix"

# --- Settings (read with defaults; see the README for what they mean) ---------------------------


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def max_iterations_setting() -> int:
    return int(_setting("MAX_AUTOCORRECTION_ITERATIONS", 5))


def improvement_threshold() -> float:
    return float(_setting("MIN_IMPROVEMENT_THRESHOLD_PERCENT", 5.0))


def test_timeout() -> float:
    return float(_setting("AUTOFIX_TEST_TIMEOUT_SECONDS", 300))


def allow_test_changes_setting() -> bool:
    return bool(_setting("AUTOFIX_ALLOW_TEST_CHANGES", False))


def max_output_bytes() -> int:
    return int(_setting("AUTOFIX_MAX_OUTPUT_BYTES", 5_000_000))


def max_active_runs() -> int:
    """Runs one (non-staff) user may have queued or running at once."""
    return int(_setting("AUTOFIX_MAX_ACTIVE_RUNS_PER_USER", 3))


def run_time_budget() -> float:
    """Seconds one run may take as a job: below the low queue's task timeout, or django-q2 would
    deliver the task again while it still runs."""
    low = settings.Q_CLUSTER.get("ALT_CLUSTERS", {}).get("low", {})
    queue_timeout = low.get("timeout") or settings.Q_CLUSTER.get("timeout") or 1800
    return float(_setting("AUTOFIX_RUN_TIMEOUT_SECONDS", max(60, queue_timeout - 60)))


MAX_ITERATIONS_CAP = 20
STORED_OUTPUT_CHARS = 64_000  # per stored test output: the head and, mostly, the tail
PROMPT_MAX_CHARS = 60_000
PROMPT_OUTPUT_CHARS = 8_000
PROMPT_FAILURES = 20
PROMPT_FILE_CHARS = 16_000
MAX_PATCH_CHARS = 400_000
MAX_PATCH_FILES = 50
MAX_WORKSPACE_BYTES = 500_000_000
MAX_WORKSPACE_FILES = 100_000
GIT_TIMEOUT = 300
LLM_MAX_TOKENS = 4096

# --- Errors -------------------------------------------------------------------------------------


class AutofixError(Exception):
    """Bad input or a refused request; `code` is a stable word for the API's error shape."""

    code = "invalid"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class WorkspaceError(AutofixError):
    code = "invalid_workspace"


class CommandNotAllowedError(AutofixError):
    code = "command_not_allowed"


class PatchError(AutofixError):
    """The patch is unsafe, malformed or does not match the files."""

    code = "patch_rejected"


# --- Runners and the command allowlist ----------------------------------------------------------

RUNNERS = ("pytest", "jest", "mocha", "node", "cargo", "go")

# (runner, argv prefix). A command must start with one of these; the rest are its arguments.
ALLOWED_PREFIXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pytest", ("pytest",)),
    ("pytest", ("python", "-m", "pytest")),
    ("pytest", ("python3", "-m", "pytest")),
    ("jest", ("jest",)),
    ("jest", ("npx", "--no-install", "jest")),
    ("jest", ("npx", "jest")),
    ("mocha", ("mocha",)),
    ("mocha", ("npx", "--no-install", "mocha")),
    ("mocha", ("npx", "mocha")),
    ("node", ("node", "--test")),
    ("cargo", ("cargo", "test")),
    ("go", ("go", "test")),
)

DEFAULT_COMMANDS: dict[str, list[str]] = {
    "pytest": ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
    "jest": ["npx", "--no-install", "jest", "--ci"],
    "mocha": ["npx", "--no-install", "mocha"],
    "node": ["node", "--test"],
    "cargo": ["cargo", "test", "--color", "never"],
    "go": ["go", "test", "./..."],
}

# Options that would run a program or code chosen by the caller rather than the workspace's tests.
FORBIDDEN_OPTIONS: dict[str, tuple[str, ...]] = {
    "node": (
        "-e",
        "--eval",
        "-p",
        "--print",
        "-r",
        "--require",
        "--import",
        "--loader",
        "--experimental-loader",
        "--inspect",
        "--inspect-brk",
        "--env-file",
    ),
    "cargo": ("--config", "-Z", "--manifest-path"),
    "go": ("-exec", "--exec", "-toolexec", "--toolexec", "-overlay", "--overlay", "-modfile"),
    "jest": ("--globalSetup", "--globalTeardown", "--testRunner", "--runner"),
    "mocha": ("--require", "-r", "--file", "--loader"),
    "pytest": ("--pyargs", "--confcutdir", "--basetemp", "-c", "--config-file"),
}
MAX_ARGS = 40
MAX_ARG_CHARS = 300


def parse_command(value: str | list[str] | None) -> list[str] | None:
    """A command as an argv list: a list is taken as is, a string is split like a shell would
    (shlex), never run through one. None or empty means "detect"."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise CommandNotAllowedError(
                f"cannot split the command: {exc}", field="command"
            ) from None
    elif isinstance(value, (list, tuple)) and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        raise CommandNotAllowedError("must be a list of strings or a string", field="command")
    return argv or None


def _option_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def check_command(argv: list[str]) -> str:
    """The runner of an allowed test command; CommandNotAllowedError for anything else.

    The program must be a bare runner name (no path: it is looked up on the scrubbed PATH), the
    command must start with a known test-runner prefix, and no argument may point outside the
    scratch copy (absolute paths, `~`, `..`) or name an option that runs arbitrary code.
    """
    if not argv:
        raise CommandNotAllowedError("the command is empty", field="command")
    if len(argv) > MAX_ARGS:
        raise CommandNotAllowedError(f"at most {MAX_ARGS} arguments", field="command")
    for arg in argv:
        if not arg or len(arg) > MAX_ARG_CHARS or "\x00" in arg or "\n" in arg:
            raise CommandNotAllowedError(
                f"argument {arg[:40]!r} is empty, too long or has control characters",
                field="command",
            )
    runner = None
    prefix_len = 0
    for name, prefix in ALLOWED_PREFIXES:
        if tuple(argv[: len(prefix)]) == prefix:
            runner, prefix_len = name, len(prefix)
            break
    if runner is None:
        allowed = ", ".join(" ".join(p) for _, p in ALLOWED_PREFIXES)
        raise CommandNotAllowedError(
            f"{shlex.join(argv)[:120]!r} is not an allowed test command (allowed: {allowed})",
            field="command",
        )
    forbidden = FORBIDDEN_OPTIONS.get(runner, ())
    for arg in argv[prefix_len:]:
        if arg.startswith("-") and (
            _option_name(arg) in forbidden
            or any(arg.startswith(f) and len(f) == 2 and f[1] != "-" for f in forbidden)
        ):
            raise CommandNotAllowedError(
                f"option {_option_name(arg)!r} is not allowed for {runner}", field="command"
            )
        for part in (arg, arg.split("=", 1)[-1]):
            if part.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", part):
                raise CommandNotAllowedError(
                    f"argument {arg[:60]!r}: paths must be relative to the workspace",
                    field="command",
                )
            if ".." in re.split(r"[\\/]", part):
                raise CommandNotAllowedError(
                    f"argument {arg[:60]!r}: paths may not leave the workspace", field="command"
                )
    return runner


def _package_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / "package.json").read_text(encoding="utf-8")[:1_000_000])
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def detect_runner(path: Path) -> str | None:
    """The test runner a project uses, from its files (the first match wins)."""
    if (path / "Cargo.toml").is_file():
        return "cargo"
    if (path / "go.mod").is_file():
        return "go"
    if (path / "package.json").is_file():
        pkg = _package_json(path)
        deps: dict[str, Any] = {}
        for key in ("dependencies", "devDependencies"):
            if isinstance(pkg.get(key), dict):
                deps.update(pkg[key])
        scripts = pkg.get("scripts") if isinstance(pkg.get("scripts"), dict) else {}
        test_script = str(scripts.get("test", ""))
        if "jest" in deps or re.search(r"\bjest\b", test_script):
            return "jest"
        if "mocha" in deps or re.search(r"\bmocha\b", test_script):
            return "mocha"
        return "node"
    python_markers = ("pytest.ini", "pyproject.toml", "setup.cfg", "setup.py", "tox.ini")
    if any((path / m).is_file() for m in python_markers) or (path / "conftest.py").is_file():
        return "pytest"
    for pattern in ("test_*.py", "*_test.py", "tests/test_*.py", "tests/*_test.py"):
        if next(path.glob(pattern), None) is not None:
            return "pytest"
    for pattern in ("*.test.js", "*.test.mjs", "test/*.js", "test/*.mjs"):
        if next(path.glob(pattern), None) is not None:
            return "node"
    return None


def default_command(runner: str) -> list[str]:
    return list(DEFAULT_COMMANDS[runner])


def python_executable() -> str:
    """The interpreter that runs `python`/`pytest` commands (Grimoire's own unless configured)."""
    return str(_setting("AUTOFIX_PYTHON", "") or sys.executable)


def resolve_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    """The argv to execute: `python`/`pytest` on the configured interpreter, other programs
    looked up on the scrubbed PATH. FileNotFoundError when the program is not installed."""
    program = argv[0]
    if program in ("python", "python3"):
        return [python_executable(), *argv[1:]]
    if program == "pytest":
        return [python_executable(), "-m", "pytest", *argv[1:]]
    found = shutil.which(program, path=env.get("PATH"))
    if found is None:
        raise FileNotFoundError(f"{program!r} is not installed (not found on PATH)")
    if program == "npx" and "--no-install" not in argv[1:2]:
        # Only the project's own runner: never download a package from the registry to run it.
        return [found, "--no-install", *argv[1:]]
    return [found, *argv[1:]]


# --- Running the tests --------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class TestRun:
    __test__ = False  # not a pytest class

    argv: list[str]
    exit_code: int | None
    output: str
    timed_out: bool = False
    truncated: bool = False
    duration: float = 0.0
    error: str = ""  # could not start
    failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.truncated

    @property
    def failure_count(self) -> int:
        return 0 if self.passed else max(1, len(self.failures))


def _test_env(argv: list[str] | None = None) -> dict[str, str]:
    env = child_env()
    if argv and argv[0] in ("python", "python3", "pytest") and not _setting("AUTOFIX_PYTHON", ""):
        # Grimoire's own interpreter: its pytest plugins (pytest-django, ...) are Grimoire's,
        # not the project's, and must not load into the project's test run.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.update(
        {
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
            "CARGO_TERM_COLOR": "never",
            "NODE_OPTIONS": "",
        }
    )
    return env


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    timeout: float,
    max_output: int,
    env: dict[str, str] | None = None,
) -> TestRun:
    """Run argv (no shell) in cwd; kill its whole process group at the time limit or when the
    output passes max_output bytes. stdout and stderr are merged, as a CI log would show them."""
    env = _test_env(argv) if env is None else env
    started = time.monotonic()
    try:
        exe = resolve_argv(argv, env)
        proc = subprocess.Popen(
            exe,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return TestRun(argv=argv, exit_code=None, output="", error=f"could not start: {exc}")
    deadline = started + timeout
    chunks: list[bytes] = []
    size = 0
    timed_out = truncated = False
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                kill_process_group(proc)
                break
            if not selector.select(timeout=min(remaining, 0.5)):
                if proc.poll() is not None:
                    break  # exited; a child it left behind may still hold the pipe open
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            if size + len(data) > max_output:
                data = data[: max(0, max_output - size)]
                truncated = True
            chunks.append(data)
            size += len(data)
            if truncated:
                kill_process_group(proc)
                break
    finally:
        selector.close()
        proc.stdout.close()
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            code = proc.wait()
        if not (timed_out or truncated):
            # The runner exited but a child it left behind may still hold the group: end it.
            kill_process_group(proc)
    output = b"".join(chunks).decode("utf-8", errors="replace")
    if timed_out:
        output += f"\n[grimoire] killed: the test command ran over its {timeout:g}s time limit\n"
    if truncated:
        output += f"\n[grimoire] killed: output over {max_output} bytes\n"
    return TestRun(
        argv=argv,
        exit_code=code,
        output=output,
        timed_out=timed_out,
        truncated=truncated,
        duration=time.monotonic() - started,
    )


_FALLBACK_FAILURE_PATTERNS = (
    ("pytest", re.compile(r"^(?:FAILED|ERROR) (\S+)(?: - (.*))?$")),
    ("go", re.compile(r"^\s*--- FAIL: (\S+)")),
    ("cargo", re.compile(r"^test (\S+) \.\.\. FAILED$")),
    ("jest", re.compile(r"^\s*● (.+)$")),
    ("tap", re.compile(r"^\s*not ok \d+ - (.+)$")),
    ("mocha", re.compile(r"^\s+\d+\) (.+)$")),
)


def _fallback_failures(text: str) -> list[dict[str, Any]]:
    """A minimal parser used only if builds.logparse cannot be imported."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for runner, pattern in _FALLBACK_FAILURE_PATTERNS:
            m = pattern.match(line)
            if m:
                message = m.group(2) if m.lastindex and m.lastindex >= 2 else ""
                found.append(
                    {"runner": runner, "test": m.group(1), "message": message or "", "line": lineno}
                )
                break
    return found


def parse_failures(output: str) -> list[dict[str, Any]]:
    """Failed tests in a test run's output, one entry per test (builds.logparse's parsers)."""
    try:
        from builds.logparse import analyze_text
    except ImportError:  # the parser module is optional for this loop
        raw = _fallback_failures(output)
    else:
        analysis = analyze_text(output)
        raw = [
            {
                "runner": f.runner,
                "test": f.test,
                "message": f.message,
                "line": f.line,
                "file": getattr(f, "file", None),
            }
            for f in analysis.failures
        ]
    seen: set[str] = set()
    failures = []
    for item in raw:
        key = item["test"]
        if key in seen:
            continue
        seen.add(key)
        item["message"] = (item.get("message") or "")[:2000]
        failures.append(item)
    return failures


def run_tests(
    argv: list[str], *, cwd: Path, timeout: float | None = None, max_output: int | None = None
) -> TestRun:
    result = run_command(
        argv,
        cwd=cwd,
        timeout=test_timeout() if timeout is None else timeout,
        max_output=max_output_bytes() if max_output is None else max_output,
    )
    if not result.passed:
        result.failures = parse_failures(result.output)
        if not result.failures:
            last = _last_meaningful_line(result.output) or result.error or "the command failed"
            if result.timed_out:
                last = "the test command timed out"
            result.failures = [
                {
                    "runner": "",
                    "test": "(test command)",
                    "message": last[:2000],
                    "line": 0,
                    "file": None,
                }
            ]
    return result


def _last_meaningful_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip() and not line.startswith("[grimoire]"):
            return line.strip()
    return ""


def clip_output(text: str, limit: int = STORED_OUTPUT_CHARS) -> str:
    """Keep the head and (mostly) the tail of a long output: summaries are at the end."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head - 60
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


# --- Scratch copies -----------------------------------------------------------------------------

SKIP_ANYWHERE = frozenset(
    [
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".next",
        ".nuxt",
        ".gradle",
        ".eggs",
        ".cache",
        "bower_components",
    ]
)
SKIP_TOP_LEVEL = frozenset({"build", "dist", "target", "coverage", "out", "htmlcov"})
# Dependency folders are linked (read-only by convention) into the scratch copy, not copied.
LINKED_DEPENDENCIES = ("node_modules",)
IDENTITY = ("-c", "user.name=Grimoire autofix", "-c", "user.email=autofix@grimoire.invalid")


@dataclasses.dataclass(slots=True)
class Workspace:
    """A resolved workspace: a directory, or a git repository (with or without a work tree)."""

    path: Path
    kind: str  # "dir" | "git"
    has_worktree: bool = True


@dataclasses.dataclass(slots=True)
class Scratch:
    root: Path  # the temporary directory (removed at the end)
    path: Path  # the checkout inside it, where tests run and patches apply
    baseline: str  # the commit holding the workspace as it was

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _git_env() -> dict[str, str]:
    env = child_env()
    env.update(
        {
            # Never the user's or the system's git config: no hooks, signing or aliases of theirs.
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            # Reads in the user's repository must not refresh its index.
            "GIT_OPTIONAL_LOCKS": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
        }
    )
    return env


_GIT_SAFETY = (
    "-c",
    "core.hooksPath=" + os.devnull,
    "-c",
    "core.fsmonitor=false",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "safe.directory=*",
    "-c",
    "gc.auto=0",
    "-c",
    "protocol.allow=never",
    "-c",
    "protocol.file.allow=always",
)


def git(
    *args: str, cwd: Path | None = None, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run git (no shell, our own config only, a time limit)."""
    program = shutil.which("git")
    if program is None:
        raise WorkspaceError("git is not installed; autofix needs it")
    try:
        proc = subprocess.run(
            [program, *_GIT_SAFETY, *args],
            cwd=cwd,
            env=_git_env(),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT,
        )
    except FileNotFoundError as exc:
        raise WorkspaceError("git is not installed; autofix needs it") from exc
    except subprocess.TimeoutExpired as exc:
        raise WorkspaceError(f"git {args[0]} timed out") from exc
    if check and proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip()[-500:]
        raise WorkspaceError(f"git {args[0]} failed: {redact(message)}")
    return proc


def _is_bare_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


PROJECT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def resolve_workspace(
    value: str | None = None, *, project_id: str | None = None, root: Path | None = None
) -> Workspace:
    """Where the run reads from. With `root` (the API), everything must resolve inside it.

    `project_id` names a folder directly under the root. `value` is a path (relative to the root,
    or absolute), or a `file://` URL of a git repository on this machine.
    """
    root_real = Path(root).resolve() if root is not None else None
    if project_id is not None:
        if root_real is None:
            raise WorkspaceError("projectId needs a WORKSPACE_ROOT", field="projectId")
        if not PROJECT_ID_RE.match(project_id) or project_id in (".", ".."):
            raise WorkspaceError(
                "must be a folder name under WORKSPACE_ROOT (letters, digits, . _ -)",
                field="projectId",
            )
        candidate = root_real / project_id
        field = "projectId"
    else:
        field = "workspace"
        text = (value or "").strip()
        if not text:
            raise WorkspaceError("give a workspace path or a projectId", field=field)
        if "\x00" in text or len(text) > 1000:
            raise WorkspaceError("not a valid path", field=field)
        if "://" in text or re.match(r"^[\w.-]+@[\w.-]+:", text):
            url = urlparse(text)
            if url.scheme != "file" or url.netloc not in ("", "localhost"):
                raise WorkspaceError(
                    "only local workspaces: a path or a file:// URL of a git repository",
                    field=field,
                )
            candidate = Path(unquote(url.path))
        else:
            candidate = Path(text).expanduser() if root_real is None else Path(text)
        if not candidate.is_absolute():
            candidate = (root_real or Path.cwd()) / candidate
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise WorkspaceError(f"{candidate} does not exist", field=field) from None
    if root_real is not None and not _inside(resolved, root_real):
        raise WorkspaceError("the workspace must be inside WORKSPACE_ROOT", field=field)
    if not resolved.is_dir():
        raise WorkspaceError(f"{candidate} is not a directory", field=field)
    if (resolved / ".git").exists():
        return Workspace(resolved, "git", has_worktree=True)
    if _is_bare_repo(resolved):
        return Workspace(resolved, "git", has_worktree=False)
    if value and value.strip().startswith("file://"):
        raise WorkspaceError("a file:// URL must name a git repository", field=field)
    return Workspace(resolved, "dir")


def _skip(dirpath: str, names: list[str], *, top: str) -> set[str]:
    skipped = set()
    for name in names:
        if name in SKIP_ANYWHERE or (dirpath == top and name in SKIP_TOP_LEVEL):
            skipped.add(name)
            continue
        try:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
        except OSError:
            skipped.add(name)
            continue
        # FIFOs, sockets and devices: copying would block or make no sense.
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skipped.add(name)
    return skipped


class _CopyBudget:
    def __init__(self) -> None:
        self.bytes = 0
        self.files = 0

    def copy(self, src: str, dst: str) -> str:
        self.files += 1
        self.bytes += os.lstat(src).st_size
        if self.files > MAX_WORKSPACE_FILES or self.bytes > MAX_WORKSPACE_BYTES:
            raise WorkspaceError(
                f"the workspace is too large to copy (over {MAX_WORKSPACE_FILES} files "
                f"or {MAX_WORKSPACE_BYTES // 1_000_000} MB)"
            )
        return shutil.copy2(src, dst, follow_symlinks=False)


def _copy_tree(source: Path, dest: Path) -> None:
    budget = _CopyBudget()
    top = str(source)
    shutil.copytree(
        source,
        dest,
        symlinks=True,
        ignore=lambda d, names: _skip(d, names, top=top),
        copy_function=budget.copy,
        dirs_exist_ok=True,
    )


def _copy_untracked(source: Path, dest: Path) -> None:
    listed = git("ls-files", "--others", "--exclude-standard", "-z", cwd=source).stdout
    budget = _CopyBudget()
    for raw in listed.split(b"\0"):
        if not raw:
            continue
        rel = Path(os.fsdecode(raw))
        if any(part in SKIP_ANYWHERE for part in rel.parts):
            continue
        src = source / rel
        try:
            mode = os.lstat(src).st_mode
        except OSError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        budget.copy(str(src), str(target))


def _link_dependencies(source: Path, dest: Path) -> list[str]:
    linked = []
    for name in LINKED_DEPENDENCIES:
        src = source / name
        if src.is_dir() and not src.is_symlink() and not (dest / name).exists():
            os.symlink(src, dest / name, target_is_directory=True)
            linked.append(name)
    return linked


def _exclude(dest: Path, names: Iterable[str]) -> None:
    info = dest / ".git" / "info"
    info.mkdir(parents=True, exist_ok=True)
    with open(info / "exclude", "a", encoding="utf-8") as fh:
        for name in names:
            fh.write(f"/{name}\n")
        fh.write("__pycache__/\n.pytest_cache/\n")


def make_scratch(workspace: Workspace, *, parent: str | os.PathLike[str] | None = None) -> Scratch:
    """A private copy of the workspace with a baseline commit. The workspace is only read."""
    parent = parent if parent is not None else _setting("AUTOFIX_SCRATCH_ROOT", None)
    if parent is not None:
        Path(parent).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="grimoire-autofix-", dir=parent)).resolve()
    if _inside(root, workspace.path):
        shutil.rmtree(root, ignore_errors=True)
        raise WorkspaceError("the scratch directory may not be inside the workspace")
    dest = root / "work"
    try:
        if workspace.kind == "git" and _has_head(workspace.path):
            _clone(workspace, dest)
        else:
            dest.mkdir()
            _copy_tree(workspace.path, dest)
            git("init", "-q", cwd=dest)
        linked = _link_dependencies(workspace.path, dest) if workspace.has_worktree else []
        _exclude(dest, linked)
        git("add", "-A", cwd=dest)
        git(*IDENTITY, "commit", "-q", "--allow-empty", "--no-verify", "-m", "baseline", cwd=dest)
        baseline = git("rev-parse", "HEAD", cwd=dest).stdout.decode().strip()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Scratch(root=root, path=dest, baseline=baseline)


def _has_head(path: Path) -> bool:
    return git("rev-parse", "--verify", "-q", "HEAD", cwd=path, check=False).returncode == 0


def _clone(workspace: Workspace, dest: Path) -> None:
    """A checkout of HEAD that shares the repository's objects (read-only, through alternates)
    plus, for a repository with a work tree, its uncommitted changes and untracked files.

    Like a `git worktree`, but without writing anything into the user's .git (a worktree adds
    metadata there, runs its post-checkout hook and stores new objects in its object store).
    """
    src = workspace.path
    head = git("rev-parse", "HEAD", cwd=src).stdout.decode().strip()
    git("clone", "-q", "--shared", "--no-checkout", "--", str(src), str(dest))
    git("checkout", "-q", "--detach", head, cwd=dest)
    if not workspace.has_worktree:
        return
    changes = git(
        "diff", "--binary", "--no-ext-diff", "--no-textconv", "--no-color", "HEAD", cwd=src
    ).stdout
    if changes.strip():
        git("apply", "--binary", "--whitespace=nowarn", "-", cwd=dest, input=changes)
    _copy_untracked(src, dest)


def scratch_commit(scratch: Scratch, message: str, paths: Iterable[str]) -> str:
    paths = list(paths)
    if paths:
        git("add", "-A", "--", *paths, cwd=scratch.path)
    git(*IDENTITY, "commit", "-q", "--allow-empty", "--no-verify", "-m", message, cwd=scratch.path)
    return git("rev-parse", "HEAD", cwd=scratch.path).stdout.decode().strip()


def scratch_reset(scratch: Scratch, commit: str) -> None:
    git("reset", "-q", "--hard", commit, cwd=scratch.path)


def scratch_diff(scratch: Scratch) -> str:
    """Everything the loop changed, as one patch for `git apply` (or `patch -p1`)."""
    out = git(
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        scratch.baseline,
        "HEAD",
        cwd=scratch.path,
    ).stdout
    return out.decode("utf-8", "replace")


# --- Unified diffs: parsing and confined application --------------------------------------------


@dataclasses.dataclass(slots=True)
class Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: list[str] = dataclasses.field(default_factory=list)  # " x", "-x", "+x"
    new_no_eol: bool = False  # the new side's last line has no newline


@dataclasses.dataclass(slots=True)
class FilePatch:
    old_path: str | None  # None for a new file
    new_path: str | None  # None for a deleted file
    hunks: list[Hunk] = dataclasses.field(default_factory=list)

    @property
    def path(self) -> str:
        return self.new_path or self.old_path or ""


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_FENCE_RE = re.compile(r"^```[\w+-]*\s*\n(.*?)\n```\s*$", re.DOTALL)


def _strip_fences(text: str) -> str:
    text = text.strip("\n")
    m = _FENCE_RE.match(text.strip())
    return m.group(1) if m else text


def _unquote_path(raw: str) -> str:
    raw = raw.split("\t", 1)[0].rstrip()
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        raw = codecs.escape_decode(raw[1:-1].encode("latin-1", "backslashreplace"))[0].decode(
            "utf-8", "replace"
        )
    return raw


def _header_path(raw: str, prefix: str) -> str | None:
    path = _unquote_path(raw)
    if path == "/dev/null":
        return None
    if path.startswith(prefix):
        path = path[len(prefix) :]
    return path


def parse_unified_diff(text: str) -> list[FilePatch]:
    """Parse a unified diff (git's or plain). Lenient about what models get wrong (hunk line
    counts, a missing space on blank context lines, a Markdown fence), strict about the rest:
    binary patches, symlinks, mode changes, renames and copies are refused."""
    if not isinstance(text, str) or not text.strip():
        raise PatchError("the patch is empty")
    if len(text) > MAX_PATCH_CHARS:
        raise PatchError(f"the patch is larger than {MAX_PATCH_CHARS} characters")
    lines = _strip_fences(text.replace("\r\n", "\n")).split("\n")
    patches: list[FilePatch] = []
    current: FilePatch | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(("GIT binary patch", "Binary files ")):
            raise PatchError("binary patches are not accepted")
        if line.startswith(("new file mode 120000", "deleted file mode 120000", "new mode 120000")):
            raise PatchError("patches may not create or change symlinks")
        if line.startswith(("rename from", "rename to", "copy from", "copy to")):
            raise PatchError("renames and copies are not accepted; delete and add instead")
        if line.startswith(("old mode", "new mode")):
            raise PatchError("file mode changes are not accepted")
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            current = FilePatch(
                old_path=_header_path(line[4:], "a/"), new_path=_header_path(lines[i + 1][4:], "b/")
            )
            if current.old_path is None and current.new_path is None:
                raise PatchError("a file header names /dev/null on both sides")
            patches.append(current)
            i += 2
            continue
        m = _HUNK_RE.match(line)
        if m:
            if current is None:
                raise PatchError("a hunk comes before any ---/+++ file header")
            hunk = Hunk(
                old_start=int(m.group(1)),
                old_len=int(m.group(2)) if m.group(2) is not None else 1,
                new_start=int(m.group(3)),
                new_len=int(m.group(4)) if m.group(4) is not None else 1,
            )
            i = _read_hunk(lines, i + 1, hunk)
            current.hunks.append(hunk)
            continue
        i += 1
    if not patches:
        raise PatchError("no file changes found (expected ---/+++ headers and @@ hunks)")
    if len(patches) > MAX_PATCH_FILES:
        raise PatchError(f"the patch touches more than {MAX_PATCH_FILES} files")
    for fp in patches:
        if not fp.hunks and fp.new_path is not None:
            raise PatchError(f"{fp.path}: a file header without any hunk")
    return patches


def _read_hunk(lines: list[str], i: int, hunk: Hunk) -> int:
    old_left, new_left = hunk.old_len, hunk.new_len
    while i < len(lines):
        line = lines[i]
        if line.startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ "):
            break
        if line.startswith(("@@", "diff --git")):
            break
        if line.startswith("\\"):
            # "\ No newline at end of file" after a line the new side keeps.
            if hunk.lines and hunk.lines[-1][0] in "+ ":
                hunk.new_no_eol = True
            i += 1
            continue
        if line == "":
            # A blank context line whose leading space was lost, while the header says more
            # lines follow; otherwise the blank line separates the hunk from what comes next.
            if old_left > 0 and new_left > 0 and _more_hunk_lines(lines, i + 1):
                hunk.lines.append(" ")
                old_left -= 1
                new_left -= 1
                i += 1
                continue
            break
        tag = line[0]
        if tag == " ":
            old_left -= 1
            new_left -= 1
        elif tag == "-":
            old_left -= 1
        elif tag == "+":
            new_left -= 1
        else:
            break
        hunk.lines.append(line)
        i += 1
    return i


def _more_hunk_lines(lines: list[str], i: int) -> bool:
    return (
        i < len(lines)
        and lines[i][:1] in (" ", "-", "+", "")
        and not lines[i].startswith(("--- ", "+++ "))
    )


TEST_DIR_NAMES = frozenset({"test", "tests", "__tests__", "spec", "specs", "testdata", "e2e"})
TEST_FILE_RE = re.compile(
    r"(^test_.*\.py$|.*_test\.py$|^conftest\.py$|.*_test\.go$|"
    r".*\.(test|spec)\.[cm]?[jt]sx?$|.*_spec\.rb$|.*Test\.java$|.*Tests?\.cs$)"
)


def is_test_path(path: str) -> bool:
    parts = PurePosixPath(path).parts
    if any(part.lower() in TEST_DIR_NAMES for part in parts[:-1]):
        return True
    return bool(parts) and bool(TEST_FILE_RE.match(parts[-1]))


def safe_target(root: Path, rel: str) -> Path:
    """The file `rel` names inside root, or PatchError when it could land anywhere else."""
    if not rel or "\x00" in rel or "\\" in rel or len(rel) > 1000:
        raise PatchError(f"{rel[:80]!r}: not a valid relative path")
    if rel.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", rel):
        raise PatchError(f"{rel[:80]!r}: absolute paths are not accepted")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts:
        raise PatchError(f"{rel[:80]!r}: not a file path")
    if ".." in parts:
        raise PatchError(f"{rel[:80]!r}: paths may not contain '..'")
    if any(p.lower() == ".git" for p in parts):
        raise PatchError(f"{rel[:80]!r}: the .git folder is off limits")
    root = root.resolve()
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise PatchError(f"{rel[:80]!r}: goes through a symlink ({part})")
    if not _inside(current.resolve(), root):
        raise PatchError(f"{rel[:80]!r}: resolves outside the workspace copy")
    return current


def _split_lines(text: str) -> tuple[list[str], bool]:
    if text == "":
        return [], True
    ends_with_newline = text.endswith("\n")
    body = text[:-1] if ends_with_newline else text
    return body.split("\n"), ends_with_newline


def _find_block(lines: list[str], block: list[str], expected: int, start: int) -> int | None:
    """Where `block` occurs in lines at or after start, nearest to expected: exact first, then
    ignoring trailing whitespace (models often lose it)."""
    if not block:
        return min(max(expected, start), len(lines))
    n = len(block)
    candidates = range(start, len(lines) - n + 1)
    for compare in (
        lambda a, b: a == b,
        lambda a, b: a.rstrip() == b.rstrip(),
    ):
        hits = [p for p in candidates if all(compare(lines[p + k], block[k]) for k in range(n))]
        if hits:
            return min(hits, key=lambda p: abs(p - expected))
    return None


def apply_hunks(text: str, hunks: list[Hunk], *, path: str = "") -> str:
    lines, eol = _split_lines(text)
    crlf = bool(lines) and all(line.endswith("\r") for line in lines if line)
    if crlf:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    delta = 0
    floor = 0
    for n, hunk in enumerate(hunks, 1):
        old = [line[1:] for line in hunk.lines if line[0] in " -"]
        new = [line[1:] for line in hunk.lines if line[0] in " +"]
        # "@@ -3,0 +4,2 @@" inserts after line 3; otherwise the hunk starts at line old_start.
        base = hunk.old_start if not old else max(0, hunk.old_start - 1)
        pos = _find_block(lines, old, max(0, base + delta), floor)
        if pos is None:
            raise PatchError(f"{path}: hunk {n} does not match the file")
        lines[pos : pos + len(old)] = new
        delta = pos - base + len(new) - len(old)
        floor = pos + len(new)
        if hunk.new_no_eol and floor == len(lines):
            eol = False
    if crlf:
        lines = [line + "\r" for line in lines]
    if not lines:
        return ""
    return "\n".join(lines) + ("\n" if eol else "")


def _read_text(target: Path, rel: str) -> str:
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        raise PatchError(f"{rel}: no such file to change") from None
    except OSError as exc:
        raise PatchError(f"{rel}: cannot read ({exc.strerror})") from None
    if b"\0" in data[:8192]:
        raise PatchError(f"{rel}: binary files cannot be patched")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PatchError(f"{rel}: not UTF-8 text") from None


def _write_confined(root: Path, rel: str, text: str) -> None:
    target = safe_target(root, rel)  # checked again: nothing may have changed since
    parent = target.parent
    # Create missing folders one by one, refusing any that appears as a symlink.
    missing = []
    probe = parent
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir()
    if parent.is_symlink() or not _inside(parent.resolve(), root.resolve()):
        raise PatchError(f"{rel}: resolves outside the workspace copy")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def check_patch(patches: list[FilePatch], root: Path, *, allow_tests: bool) -> None:
    for fp in patches:
        for rel in {p for p in (fp.old_path, fp.new_path) if p is not None}:
            safe_target(root, rel)
            if not allow_tests and is_test_path(rel):
                raise PatchError(
                    f"{rel}: the patch changes a test file; tests are not to be changed "
                    "(AUTOFIX_ALLOW_TEST_CHANGES is off)"
                )
        if fp.old_path and fp.new_path and fp.old_path != fp.new_path:
            raise PatchError(f"{fp.old_path} -> {fp.new_path}: renames are not accepted")


def apply_patch(diff: str, root: Path, *, allow_tests: bool = False) -> list[str]:
    """Apply a unified diff inside root, all files or none. Returns the paths it changed.

    PatchError when it is malformed, escapes root (absolute, `..`, `.git`, a symlink on the way),
    touches tests while they are protected, or does not match the files.
    """
    root = Path(root)
    patches = parse_unified_diff(diff)
    check_patch(patches, root, allow_tests=allow_tests)
    planned: dict[str, str | None] = {}  # path -> new text, None to delete
    for fp in patches:
        rel = fp.path
        target = safe_target(root, rel)
        if fp.old_path is None:
            if rel in planned or target.exists():
                raise PatchError(f"{rel}: the patch creates a file that already exists")
            current = ""
        elif rel in planned:
            current = planned[rel] or ""
        else:
            if not target.is_file():
                raise PatchError(f"{rel}: no such file to change")
            current = _read_text(target, rel)
        updated = apply_hunks(current, fp.hunks, path=rel)
        planned[rel] = None if fp.new_path is None else updated
    for rel, text in planned.items():
        if text is None:
            target = safe_target(root, rel)
            target.unlink()
        else:
            _write_confined(root, rel, text)
    return list(planned)


def make_diff(rel: str, before: str, after: str) -> str:
    """A git-style unified diff of one file (used by the heuristic fallback)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{rel}",
        tofile=f"b/{rel}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# --- The prompt ---------------------------------------------------------------------------------

PATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "diff": {
            "type": "string",
            "description": "A unified diff (git style, a/ and b/ prefixes) fixing the failures.",
        },
        "explanation": {"type": "string", "description": "Why the change fixes the failures."},
    },
    "required": ["diff", "explanation"],
    "additionalProperties": False,
}

SYSTEM_PROMPT = """You fix failing tests in a software project.
You get the test command, the failing tests with their messages, the end of the test output and
excerpts of the relevant source files. Answer with JSON: {"diff": "...", "explanation": "..."}.
"diff" is a unified diff in git style: "--- a/<path>" and "+++ b/<path>" headers with paths
relative to the project root, then "@@ -l,n +l,n @@" hunks with at least 3 lines of unchanged
context copied exactly from the files. Make the smallest change that fixes the cause.
{tests_rule}
Never touch files outside the project, the .git folder, or binary files. If you cannot find a fix,
answer with an empty "diff" and say why in "explanation"."""

TESTS_PROTECTED = (
    "Do not change test files: the tests describe the intended behaviour; fix the code under test."
)
TESTS_ALLOWED = "Change a test only if the test itself is clearly wrong."

SOURCE_EXTENSIONS = (
    ".py",
    ".js",
    ".mjs",
    ".cjs",
    ".ts",
    ".tsx",
    ".jsx",
    ".rs",
    ".go",
)
_PATH_MENTION_RE = re.compile(
    r'File "(?P<py>[^"\n]+)", line (?P<pyline>\d+)'
    r"|(?P<path>(?:[A-Za-z0-9_.@~+-]*/)*[A-Za-z0-9_.@+-]+\.(?:py|[cm]?js|tsx?|jsx|rs|go))"
    r"(?::(?P<line>\d+))?"
)


def _readable_source(root: Path, rel: str) -> Path | None:
    name = PurePosixPath(rel).name
    if name in SECRET_NAMES or name.endswith(SECRET_SUFFIXES) or name.startswith(".env"):
        return None
    try:
        target = safe_target(root, rel)
    except PatchError:
        return None
    if not target.is_file():
        return None
    parts = set(PurePosixPath(rel).parts)
    if parts & SKIP_ANYWHERE:
        return None
    return target


def _relative(root: Path, raw: str) -> str | None:
    raw = raw.strip()
    if raw.startswith("file://"):
        raw = unquote(urlparse(raw).path)
    path = Path(raw)
    if path.is_absolute():
        try:
            path = path.resolve().relative_to(root.resolve())
        except (ValueError, OSError):
            return None
    rel = PurePosixPath(*[p for p in path.parts if p not in (".",)]).as_posix()
    return None if rel.startswith("..") or rel == "." else rel


def mentioned_files(root: Path, text: str) -> dict[str, list[int]]:
    """Workspace files named in a test output, most mentioned first, with the lines named."""
    found: dict[str, list[int]] = {}
    for m in _PATH_MENTION_RE.finditer(text):
        raw = m.group("py") or m.group("path")
        line = m.group("pyline") or m.group("line")
        rel = _relative(root, raw)
        if rel is None or _readable_source(root, rel) is None:
            continue
        found.setdefault(rel, [])
        if line:
            found[rel].append(int(line))
    return dict(sorted(found.items(), key=lambda kv: -len(kv[1])))


_PY_IMPORT_RE = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+import|import\s+([\w.]+))", re.MULTILINE)
_JS_IMPORT_RE = re.compile(
    r"""(?:require\(\s*|from\s+|import\s*\(\s*|import\s+)['"](\.{1,2}/[^'"]+)['"]"""
)
_JS_SUFFIXES = ("", ".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx", "/index.js", "/index.ts")


def imported_files(root: Path, rel: str, text: str) -> list[str]:
    """Workspace files that `rel` imports (Python, JS/TS; same package for Go; crate root for Rust)."""
    folder = PurePosixPath(rel).parent
    out: list[str] = []
    if rel.endswith(".py"):
        for m in _PY_IMPORT_RE.finditer(text):
            module = m.group(1) or m.group(2) or ""
            dots = len(module) - len(module.lstrip("."))
            parts = [p for p in module.lstrip(".").split(".") if p]
            bases = [folder] if dots else [PurePosixPath(""), PurePosixPath("src"), folder]
            if dots > 1:
                bases = [PurePosixPath(*folder.parts[: max(0, len(folder.parts) - dots + 1)])]
            for base in bases:
                for n in range(len(parts), 0, -1):
                    stem = base.joinpath(*parts[:n])
                    for cand in (f"{stem}.py", f"{stem}/__init__.py"):
                        if _readable_source(root, cand):
                            out.append(cand)
                            break
                    else:
                        continue
                    break
    elif rel.endswith((".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx")):
        for m in _JS_IMPORT_RE.finditer(text):
            spec = m.group(1)
            for suffix in _JS_SUFFIXES:
                cand = _normalize(folder / (spec + suffix))
                if cand and _readable_source(root, cand):
                    out.append(cand)
                    break
    elif rel.endswith(".go"):
        directory = root / folder
        for sibling in sorted(directory.glob("*.go"))[:20]:
            cand = (folder / sibling.name).as_posix()
            if not sibling.name.endswith("_test.go") and _readable_source(root, cand):
                out.append(cand)
    elif rel.endswith(".rs"):
        for cand in ("src/lib.rs", "src/main.rs"):
            if _readable_source(root, cand):
                out.append(cand)
    return list(dict.fromkeys(c for c in out if c != rel))


def _normalize(path: PurePosixPath) -> str | None:
    parts: list[str] = []
    for part in path.parts:
        if part == "..":
            if not parts:
                return None
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts) if parts else None


def _project_sources(root: Path, runner: str, limit: int = 200) -> list[str]:
    """Small source files of the project, for when the output names none."""
    exts = {
        "pytest": (".py",),
        "jest": (".js", ".ts", ".jsx", ".tsx", ".mjs", ".cjs"),
        "mocha": (".js", ".mjs", ".cjs", ".ts"),
        "node": (".js", ".mjs", ".cjs"),
        "cargo": (".rs",),
        "go": (".go",),
    }.get(runner, SOURCE_EXTENSIONS)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_ANYWHERE)
        for name in sorted(filenames):
            if name.endswith(exts):
                rel = Path(dirpath, name).relative_to(root).as_posix()
                if _readable_source(root, rel):
                    found.append(rel)
                    if len(found) >= limit:
                        return found
    # Code under test before the tests, smaller files first.
    return sorted(found, key=lambda r: (is_test_path(r), (root / r).stat().st_size))


def _excerpt(text: str, lines: list[int], limit: int) -> tuple[str, str]:
    """The whole file when it fits, else windows around the named lines."""
    if len(text) <= limit:
        return text, "whole file"
    all_lines = text.splitlines()
    if not lines:
        cut = text[:limit]
        return cut[: cut.rfind("\n") + 1], f"first {cut.count(chr(10))} lines"
    windows: list[tuple[int, int]] = []
    for n in sorted(set(lines)):
        lo, hi = max(1, n - 25), min(len(all_lines), n + 25)
        if windows and lo <= windows[-1][1] + 1:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    parts, used, spans = [], 0, []
    for lo, hi in windows:
        chunk = "\n".join(all_lines[lo - 1 : hi]) + "\n"
        if used + len(chunk) > limit:
            break
        parts.append(chunk)
        spans.append(f"{lo}-{hi}")
        used += len(chunk)
    return "...\n".join(parts), "lines " + ", ".join(spans)


def source_excerpts(
    root: Path, output: str, runner: str, *, budget: int
) -> list[tuple[str, str, str]]:
    """(path, what part, text) of the files most likely involved, within budget characters."""
    mentioned = mentioned_files(root, output)
    order: list[str] = []
    for rel in mentioned:
        order.append(rel)
    for rel in list(order):
        target = _readable_source(root, rel)
        if target is None:
            continue
        try:
            text = target.read_text(encoding="utf-8", errors="replace")[:200_000]
        except OSError:
            continue
        order.extend(imported_files(root, rel, text))
    if not order:
        order = _project_sources(root, runner)
    excerpts: list[tuple[str, str, str]] = []
    used = 0
    for rel in dict.fromkeys(order):
        target = _readable_source(root, rel)
        if target is None:
            continue
        try:
            text = target.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        room = min(PROMPT_FILE_CHARS, budget - used)
        if room < 400:
            break
        body, part = _excerpt(text, mentioned.get(rel, []), room)
        excerpts.append((rel, part, redact(body)))
        used += len(body) + len(rel) + 40
    return excerpts


_LANGUAGES = {".py": "python", ".rs": "rust", ".go": "go", ".ts": "typescript", ".tsx": "tsx"}


def _fence_language(rel: str) -> str:
    suffix = PurePosixPath(rel).suffix
    return _LANGUAGES.get(suffix, "javascript" if suffix in (".js", ".mjs", ".cjs", ".jsx") else "")


def build_prompt(
    *,
    command: list[str],
    runner: str,
    test_run: TestRun,
    root: Path,
    allow_tests: bool,
    history: list[str],
    max_chars: int = PROMPT_MAX_CHARS,
) -> tuple[str, str]:
    """(system prompt, prompt): bounded, with secrets redacted."""
    system = SYSTEM_PROMPT.replace(
        "{tests_rule}", TESTS_ALLOWED if allow_tests else TESTS_PROTECTED
    )
    parts = [
        f"Test runner: {runner}",
        f"Test command: {shlex.join(command)}",
        f"Exit code: {test_run.exit_code}{' (timed out)' if test_run.timed_out else ''}",
        f"\nFailing tests ({test_run.failure_count}):",
    ]
    for failure in test_run.failures[:PROMPT_FAILURES]:
        where = f" [{failure['file']}]" if failure.get("file") else ""
        message = (failure.get("message") or "").strip()[:1000]
        parts.append(
            f"- {failure['test']}{where}: {message}" if message else f"- {failure['test']}"
        )
    if len(test_run.failures) > PROMPT_FAILURES:
        parts.append(f"- ... and {len(test_run.failures) - PROMPT_FAILURES} more")
    tail = test_run.output[-PROMPT_OUTPUT_CHARS:]
    parts.append(f"\nEnd of the test output:\n```\n{tail}\n```")
    if history:
        parts.append("\nEarlier attempts in this session:\n" + "\n".join(history[-4:]))
    head = redact("\n".join(parts))
    budget = max(2000, max_chars - len(head) - 500)
    excerpts = source_excerpts(root, test_run.output, runner, budget=budget)
    files = [
        f"\nFile {rel} ({part}):\n```{_fence_language(rel)}\n{text.rstrip()}\n```"
        for rel, part, text in excerpts
    ]
    prompt = head + "\n\nSource files:" + "".join(files) if files else head
    prompt += "\n\nAnswer with the JSON object only."
    return system, prompt[: max_chars + 1000]


# --- The heuristic fallback ---------------------------------------------------------------------

PY_STDLIB_MODULES = frozenset(
    [
        "os",
        "sys",
        "re",
        "json",
        "math",
        "time",
        "random",
        "logging",
        "itertools",
        "functools",
        "collections",
        "subprocess",
        "shutil",
        "tempfile",
        "pathlib",
        "typing",
        "hashlib",
        "base64",
        "uuid",
        "copy",
        "string",
        "textwrap",
        "decimal",
        "statistics",
        "operator",
        "csv",
        "glob",
        "io",
        "struct",
        "enum",
        "dataclasses",
        "inspect",
        "pprint",
        "heapq",
        "bisect",
        "fractions",
        "secrets",
        "zlib",
        "gzip",
        "platform",
        "socket",
        "threading",
        "asyncio",
        "contextlib",
        "warnings",
        "traceback",
        "unicodedata",
        "urllib",
    ]
)
PY_IMPORTS: dict[str, str] = {
    **{name: f"import {name}" for name in PY_STDLIB_MODULES},
    "Path": "from pathlib import Path",
    "defaultdict": "from collections import defaultdict",
    "OrderedDict": "from collections import OrderedDict",
    "Counter": "from collections import Counter",
    "deque": "from collections import deque",
    "namedtuple": "from collections import namedtuple",
    "dataclass": "from dataclasses import dataclass",
    "partial": "from functools import partial",
    "reduce": "from functools import reduce",
    "lru_cache": "from functools import lru_cache",
    "wraps": "from functools import wraps",
    "Decimal": "from decimal import Decimal",
    "Fraction": "from fractions import Fraction",
}

NODE_BUILTINS = frozenset(
    [
        "fs",
        "path",
        "os",
        "crypto",
        "util",
        "assert",
        "url",
        "events",
        "http",
        "https",
        "zlib",
        "stream",
        "readline",
        "net",
        "dns",
        "querystring",
        "child_process",
        "worker_threads",
        "perf_hooks",
        "timers",
        "v8",
        "vm",
        "tls",
        "dgram",
    ]
)


@dataclasses.dataclass(slots=True)
class HeuristicFix:
    diff: str
    explanation: str


_PY_NAME_ERROR_RE = re.compile(r"NameError: name '(\w+)' is not defined")
_PY_NO_MODULE_RE = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")
_PYTEST_LOCATION_RE = re.compile(r"^(\S+\.py):(\d+): (?:in \S+|\w+)", re.MULTILINE)
_PY_FRAME_RE = re.compile(r'File "([^"]+\.py)", line (\d+)')
_JS_REFERENCE_RE = re.compile(r"(?:ReferenceError: )?\b([A-Za-z_$][\w$]*) is not defined\b")
_JS_FRAME_RE = re.compile(r"(?:\(|\s)((?:file://)?/[^\s()]+?\.[cm]?[jt]s):(\d+):\d+\)?")


def _python_location(root: Path, output: str, at: int) -> str | None:
    """The workspace .py file where the error at offset `at` was raised."""
    after = _PYTEST_LOCATION_RE.search(output, at)
    if after and output.count("\n", at, after.start()) < 40:
        rel = _relative(root, after.group(1))
        if rel and _readable_source(root, rel):
            return rel
    frames = [m for m in _PY_FRAME_RE.finditer(output, 0, at)]
    for m in reversed(frames):
        rel = _relative(root, m.group(1))
        if rel and _readable_source(root, rel):
            return rel
    return None


def _python_insert_at(lines: list[str]) -> int:
    """After the shebang/comments, the module docstring, and the leading import block."""
    i = 0
    n = len(lines)
    while i < n and (lines[i].startswith("#") or not lines[i].strip()):
        i += 1
    if i < n and lines[i].lstrip().startswith(('"""', "'''", 'r"""', "r'''")):
        quote = '"""' if '"""' in lines[i] else "'''"
        rest = lines[i].split(quote, 1)[1]
        if quote not in rest:
            i += 1
            while i < n and quote not in lines[i]:
                i += 1
        i += 1
    insert = i
    while i < n:
        line = lines[i]
        if line.startswith(("import ", "from ")):
            if "(" in line and ")" not in line:
                while i < n and ")" not in lines[i]:
                    i += 1
            i += 1
            insert = i
        elif not line.strip() or line.startswith("#"):
            i += 1
        else:
            break
    return insert


def _fix_python_name_error(root: Path, output: str, allow_tests: bool) -> HeuristicFix | None:
    for m in _PY_NAME_ERROR_RE.finditer(output):
        name = m.group(1)
        statement = PY_IMPORTS.get(name)
        if statement is None:
            continue
        rel = _python_location(root, output, m.start())
        if rel is None or (is_test_path(rel) and not allow_tests):
            continue
        before = (root / rel).read_text(encoding="utf-8")
        lines = before.splitlines(keepends=True)
        if any(line.rstrip("\n") == statement for line in lines):
            continue
        at = _python_insert_at([line.rstrip("\n") for line in lines])
        new_lines = [*lines[:at], statement + "\n", *lines[at:]]
        following = lines[at] if at < len(lines) else ""
        if following.strip() and not following.startswith(("import ", "from ")):
            new_lines.insert(at + 1, "\n")
        return HeuristicFix(
            diff=make_diff(rel, before, "".join(new_lines)),
            explanation=f"NameError: name '{name}' is not defined in {rel}; "
            f"added the standard-library import `{statement}`.",
        )
    return None


def _local_modules(root: Path) -> set[str]:
    names: set[str] = set()
    for base in (root, root / "src"):
        if not base.is_dir():
            continue
        for entry in base.iterdir():
            if entry.name.startswith(".") or entry.name in SKIP_ANYWHERE:
                continue
            if entry.is_file() and entry.suffix == ".py":
                names.add(entry.stem)
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                names.add(entry.name)
    return names


def _fix_python_module_typo(root: Path, output: str, allow_tests: bool) -> HeuristicFix | None:
    for m in _PY_NO_MODULE_RE.finditer(output):
        missing = m.group(1).split(".")[0]
        local = _local_modules(root)
        if missing in local:
            continue
        close = difflib.get_close_matches(missing, sorted(local), n=2, cutoff=0.75)
        if len(close) != 1:
            continue
        module = close[0]
        pattern = re.compile(
            rf"^(\s*(?:from|import)\s+){re.escape(missing)}(?=[\s.,]|$)", re.MULTILINE
        )
        diffs, changed = [], []
        for rel in _project_sources(root, "pytest"):
            if is_test_path(rel) and not allow_tests:
                continue
            before = (root / rel).read_text(encoding="utf-8", errors="replace")
            after = pattern.sub(lambda mm, to=module: mm.group(1) + to, before)
            if after != before:
                diffs.append(make_diff(rel, before, after))
                changed.append(rel)
        if diffs:
            return HeuristicFix(
                diff="".join(diffs),
                explanation=f"No module named '{missing}', but the project has a module "
                f"'{module}'; fixed the import in {', '.join(changed)}.",
            )
    return None


def _fix_js_reference_error(root: Path, output: str, allow_tests: bool) -> HeuristicFix | None:
    if "ReferenceError" not in output:
        return None
    for m in _JS_REFERENCE_RE.finditer(output):
        name = m.group(1)
        if name not in NODE_BUILTINS:
            continue
        rel = None
        for frame in _JS_FRAME_RE.finditer(output, m.end()):
            cand = _relative(root, frame.group(1))
            if cand and _readable_source(root, cand) and "node_modules" not in cand:
                rel = cand
                break
        if rel is None or (is_test_path(rel) and not allow_tests):
            continue
        before = (root / rel).read_text(encoding="utf-8")
        esm = rel.endswith(".mjs") or bool(
            re.search(r"^\s*(import\s.+\sfrom\s|export\s)", before, re.MULTILINE)
        )
        statement = (
            f"import {name} from 'node:{name}';"
            if esm
            else f"const {name} = require('node:{name}');"
        )
        if statement in before:
            continue
        lines = before.splitlines(keepends=True)
        at = 0
        while at < len(lines) and (
            lines[at].startswith("#!") or lines[at].strip() in ("'use strict';", '"use strict";')
        ):
            at += 1
        after = "".join([*lines[:at], statement + "\n", *lines[at:]])
        return HeuristicFix(
            diff=make_diff(rel, before, after),
            explanation=f"ReferenceError: {name} is not defined in {rel}; "
            f"added the node built-in module: `{statement}`.",
        )
    return None


def missing_dependency_notes(output: str, root: Path) -> list[str]:
    """Dependencies named by the errors that are not local modules: reported, not installed."""
    notes = []
    local = _local_modules(root)
    for m in _PY_NO_MODULE_RE.finditer(output):
        name = m.group(1).split(".")[0]
        if name not in local and not difflib.get_close_matches(name, sorted(local), cutoff=0.75):
            notes.append(f"Python package '{name}' is not installed (add it to the dependencies)")
    for m in re.finditer(r"Cannot find module '([^'./][^']*)'", output):
        notes.append(f"npm package '{m.group(1)}' is not installed (add it to package.json)")
    return list(dict.fromkeys(notes))[:5]


HEURISTICS: tuple[Callable[[Path, str, bool], HeuristicFix | None], ...] = (
    _fix_python_name_error,
    _fix_python_module_typo,
    _fix_js_reference_error,
)


def heuristic_fix(root: Path, output: str, *, allow_tests: bool = False) -> HeuristicFix | None:
    """A deterministic fix for a well-known error named in the output, or None."""
    for heuristic in HEURISTICS:
        try:
            fix = heuristic(root, output, allow_tests)
        except (OSError, UnicodeDecodeError, PatchError):
            continue
        if fix is not None:
            return fix
    return None


# --- Asking the LLM -----------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Proposal:
    diff: str = ""
    explanation: str = ""
    llm_output: LLMOutput | None = None
    unavailable: bool = False  # no provider answered (or only the offline placeholder)
    error: str = ""


def _store_output(
    run: AutofixRun,
    *,
    system: str,
    prompt: str,
    response: LLMResponse | None,
    error: LLMError | None,
    started: Any,
) -> LLMOutput:
    """Store one call as an LLMOutput (already finished), so it is reviewable like any job."""
    fields: dict[str, Any] = {
        "user": run.owner,
        "purpose": LLM_PURPOSE,
        "subject": f"autofix:{run.pk}",
        "context": {"autofix_run": str(run.pk)},
        "output_format": OutputFormat.JSON,
        "json_schema": PATCH_SCHEMA,
        "system_prompt": system,
        "prompt": prompt,
        "max_tokens": LLM_MAX_TOKENS,
        "temperature": 0.2,
        "attempts": 1,
        "started_at": started,
        "completed_at": timezone.now(),
    }
    if response is not None:
        fields.update(
            provider=response.provider,
            model=response.model,
            offline=response.offline,
            raw_response=response.text,
            parsed=response.parsed,
            provider_chain=[a.to_dict() for a in response.attempts],
            structured_mode=response.structured_mode or "",
            input_tokens=response.usage.input_tokens,
            output_tokens=response.usage.output_tokens,
            cached_tokens=response.usage.cached_tokens,
            cost_usd=Decimal(str(round(response.cost_usd, 6))),
            latency_ms=response.latency_ms,
        )
    if error is not None:
        fields.update(
            status=JobStatus.FAILED,
            error=redact(str(error))[:4000],
            error_code=type(error).__name__[:50],
            provider_chain=[a.to_dict() for a in error.attempts],
        )
    else:
        fields["status"] = JobStatus.COMPLETED
    return LLMOutput.objects.create(**fields)


def ask_llm(run: AutofixRun, *, system: str, prompt: str) -> Proposal:
    """One synchronous call through the router; the exchange is stored as an LLMOutput."""
    request = LLMRequest(
        messages=[Message("user", prompt)],
        system=system,
        max_tokens=LLM_MAX_TOKENS,
        temperature=0.2,
        json_schema=PATCH_SCHEMA,
        schema_name="autofix_patch",
        metadata={"purpose": LLM_PURPOSE, "autofix_run": str(run.pk)},
    )
    started = timezone.now()
    try:
        response = gateway.get_router().complete(request)
    except StructuredOutputError as exc:
        output = _store_output(
            run, system=system, prompt=prompt, response=exc.response, error=exc, started=started
        )
        return Proposal(llm_output=output, error=f"the answer was not the JSON asked for: {exc}")
    except (AllProvidersTransientError, AllProvidersFailedError) as exc:
        output = _store_output(
            run, system=system, prompt=prompt, response=None, error=exc, started=started
        )
        return Proposal(llm_output=output, unavailable=True, error=redact(str(exc))[:500])
    except LLMError as exc:
        output = _store_output(
            run, system=system, prompt=prompt, response=None, error=exc, started=started
        )
        return Proposal(llm_output=output, unavailable=True, error=redact(str(exc))[:500])
    output = _store_output(
        run, system=system, prompt=prompt, response=response, error=None, started=started
    )
    if response.offline:
        return Proposal(
            llm_output=output,
            unavailable=True,
            error="only the offline placeholder answered: no LLM provider is configured or up",
        )
    parsed = response.parsed
    if parsed is None:
        try:
            parsed = json.loads(response.text)
        except ValueError:
            parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("diff"), str):
        return Proposal(llm_output=output, error="the answer has no diff")
    return Proposal(
        diff=parsed["diff"],
        explanation=str(parsed.get("explanation") or "")[:5000],
        llm_output=output,
    )


# --- The loop -----------------------------------------------------------------------------------

Progress = Callable[[str], None]


def _failures_json(test_run: TestRun) -> list[dict[str, Any]]:
    """The parsed failures as stored (a test may print a secret into its failure message)."""
    return [
        {**f, "test": redact(str(f.get("test", ""))), "message": redact(f.get("message") or "")}
        for f in test_run.failures[:200]
    ]


def _improvement(before: int, after: int) -> float:
    if before <= 0:
        return 0.0
    return round((before - after) * 100.0 / before, 2)


@dataclasses.dataclass(slots=True)
class _State:
    run: AutofixRun
    scratch: Scratch
    argv: list[str]
    deadline: float | None
    progress: Progress
    current: TestRun | None = None
    head: str = ""
    history: list[str] = dataclasses.field(default_factory=list)
    failed_applies: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def timeout(self) -> float:
        limit = test_timeout()
        if self.deadline is not None:
            limit = min(limit, max(1.0, self.deadline - time.monotonic()))
        return limit

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _save(run: AutofixRun, *fields: str) -> None:
    run.save(update_fields=[*fields, "updated_at"])


def _finish(
    state: _State, *, status: str, reason: str, message: str, patch: str | None = None
) -> AutofixRun:
    run = state.run
    current = state.current
    run.status = status
    run.stop_reason = reason
    notes = " ".join(state.notes)
    run.message = (message + (" " + notes if notes else ""))[:4000]
    run.final_patch = patch if patch is not None else scratch_diff(state.scratch)
    if current is not None:
        run.exit_code_after = current.exit_code
        run.failure_count_after = current.failure_count
        run.failures_after = _failures_json(current)
        run.output_after = clip_output(redact(current.output))
    run.finished_at = timezone.now()
    updated = AutofixRun.objects.filter(pk=run.pk, claim=run.claim).update(
        status=run.status,
        stop_reason=run.stop_reason,
        message=run.message,
        final_patch=run.final_patch,
        exit_code_after=run.exit_code_after,
        failure_count_after=run.failure_count_after,
        failures_after=run.failures_after,
        output_after=run.output_after,
        finished_at=run.finished_at,
        fallback_used=run.fallback_used,
        updated_at=timezone.now(),
    )
    if not updated:
        logger.warning("autofix run finished elsewhere; result dropped", extra={"run": str(run.pk)})
    state.progress(f"done: {run.status} ({run.stop_reason}) {run.message}")
    return run


def _propose(state: _State, iteration: AutofixIteration) -> Proposal:
    run, current = state.run, state.current
    assert current is not None
    system, prompt = build_prompt(
        command=state.argv,
        runner=run.runner,
        test_run=current,
        root=state.scratch.path,
        allow_tests=run.allow_test_changes,
        history=state.history,
    )
    proposal = ask_llm(run, system=system, prompt=prompt)
    if proposal.llm_output is not None:
        out = proposal.llm_output
        AutofixRun.objects.filter(pk=run.pk).update(
            input_tokens=F("input_tokens") + out.input_tokens,
            output_tokens=F("output_tokens") + out.output_tokens,
            cost_usd=F("cost_usd") + out.cost_usd,
        )
    iteration.llm_output = proposal.llm_output
    if not proposal.unavailable:
        iteration.fix_source = AutofixFixSource.LLM
        return proposal
    # Every provider failed: the seed's heuristic fallback, deterministic fixes only.
    fix = heuristic_fix(state.scratch.path, current.output, allow_tests=run.allow_test_changes)
    run.fallback_used = True
    _save(run, "fallback_used")
    if fix is None:
        return proposal
    iteration.fix_source = AutofixFixSource.HEURISTIC
    note = (
        "No LLM provider answered, so the heuristic fallback applied only deterministic, "
        "well-known fixes."
    )
    if note not in state.notes:
        state.notes.append(note)
    return Proposal(
        diff=fix.diff,
        explanation="[heuristic fallback] " + fix.explanation,
        llm_output=proposal.llm_output,
        error=proposal.error,
    )


def _iterate(state: _State, number: int) -> AutofixRun | None:
    """One turn. Returns the finished run when the loop stops, else None."""
    run, scratch = state.run, state.scratch
    current = state.current
    assert current is not None
    state.progress(
        f"iteration {number}/{run.max_iterations}: {current.failure_count} failing, asking for a fix"
    )
    iteration = AutofixIteration.objects.create(
        run=run,
        number=number,
        command=state.argv,
        failure_count=current.failure_count,
        failures=_failures_json(current),
    )
    run.iteration_count = number
    # The heartbeat: a run whose claimed_at stops moving is what the sweeper calls stuck.
    run.claimed_at = timezone.now()
    _save(run, "iteration_count", "claimed_at")
    proposal = _propose(state, iteration)
    iteration.explanation = redact(proposal.explanation)
    iteration.patch = proposal.diff[:MAX_PATCH_CHARS]

    def done_iteration() -> None:
        iteration.finished_at = timezone.now()
        iteration.save()

    if proposal.unavailable and iteration.fix_source != AutofixFixSource.HEURISTIC:
        iteration.apply_error = f"no fix proposed: {proposal.error}"
        done_iteration()
        notes = missing_dependency_notes(current.output, scratch.path)
        message = (
            f"No fix from an LLM ({proposal.error}), and the heuristic fallback knows no "
            "deterministic fix for these failures."
        )
        if notes:
            message += " Noticed: " + "; ".join(notes) + "."
        return _finish(
            state,
            status=AutofixStatus.FAILED,
            reason=AutofixStopReason.LLM_UNAVAILABLE,
            message=message,
        )
    try:
        if not proposal.diff.strip():
            raise PatchError(
                proposal.error
                or f"no diff proposed ({redact(proposal.explanation)[:300] or 'no reason given'})"
            )
        touched = apply_patch(proposal.diff, scratch.path, allow_tests=run.allow_test_changes)
    except PatchError as exc:
        state.failed_applies += 1
        iteration.apply_error = redact(exc.message)[:2000]
        done_iteration()
        state.history.append(
            f"- attempt {number}: your patch was rejected: {iteration.apply_error[:500]}"
        )
        state.progress(f"iteration {number}: patch not applied: {iteration.apply_error[:200]}")
        if state.failed_applies >= 2:
            return _finish(
                state,
                status=AutofixStatus.FAILED,
                reason=AutofixStopReason.PATCH_FAILED,
                message=f"Stopped: patches failed to apply twice in a row "
                f"(last: {iteration.apply_error[:500]}).",
            )
        return None
    state.failed_applies = 0
    iteration.applied = True
    previous_head = state.head
    state.head = scratch_commit(scratch, f"autofix iteration {number}", touched)
    state.progress(f"iteration {number}: patch applied to {', '.join(touched)}; re-running tests")
    after = run_tests(state.argv, cwd=scratch.path, timeout=state.timeout())
    iteration.exit_code_after = after.exit_code
    iteration.timed_out_after = after.timed_out
    iteration.failure_count_after = after.failure_count
    iteration.failures_after = _failures_json(after)
    iteration.output_after = clip_output(redact(after.output))
    improvement = _improvement(current.failure_count, after.failure_count)
    iteration.improvement_percent = improvement
    if after.passed:
        state.current = after
        done_iteration()
        return _finish(
            state,
            status=AutofixStatus.SUCCEEDED,
            reason=AutofixStopReason.ALL_PASS,
            message=f"All tests pass after {number} iteration(s).",
        )
    if after.timed_out or after.failure_count >= current.failure_count:
        # No better (or hung): take the patch back out so the proposal keeps the best state.
        scratch_reset(scratch, previous_head)
        state.head = previous_head
        iteration.reverted = True
    else:
        state.current = after
    done_iteration()
    state.history.append(
        f"- attempt {number}: your patch applied; failing tests went from "
        f"{current.failure_count} to {after.failure_count}"
        + (" (taken back out)" if iteration.reverted else "")
        + f". Patch was:\n{proposal.diff[:1500]}"
    )
    state.progress(
        f"iteration {number}: {current.failure_count} -> {after.failure_count} failing "
        f"({improvement:+.1f}%)" + (", reverted" if iteration.reverted else "")
    )
    if improvement < improvement_threshold():
        return _finish(
            state,
            status=AutofixStatus.FAILED,
            reason=AutofixStopReason.NO_IMPROVEMENT,
            message=f"Stopped: iteration {number} improved the failures by {improvement:.1f}%, "
            f"below the {improvement_threshold():g}% threshold.",
        )
    return None


def execute(
    run: AutofixRun,
    *,
    progress: Progress | None = None,
    deadline: float | None = None,
) -> AutofixRun:
    """Run the loop for a claimed run (status running) and finish it. Never raises for failures
    of the workspace, the tests or the LLM: they end the run with a reason."""
    progress = progress or (lambda line: None)
    # A run asked for under WORKSPACE_ROOT is held to it again: the path may have changed since.
    root = Path(settings.WORKSPACE_ROOT).resolve()
    within = bool(run.source_path) and _inside(Path(run.source_path), root)
    try:
        workspace = resolve_workspace(
            run.source_path or run.workspace, root=root if within else None
        )
    except WorkspaceError as exc:
        return _fail_early(run, f"workspace: {exc.message}", progress)
    try:
        scratch = make_scratch(workspace)
    except (WorkspaceError, OSError) as exc:
        return _fail_early(run, f"could not copy the workspace: {redact(str(exc))}", progress)
    try:
        return _loop(run, scratch, progress, deadline)
    except AutofixError as exc:
        return _fail_early(run, exc.message, progress)
    except Exception as exc:  # a bug must still end the run, not leave it running
        logger.exception("autofix run crashed", extra={"run": str(run.pk)})
        return _fail_early(run, f"crashed: {type(exc).__name__}: {redact(str(exc))}", progress)
    finally:
        if not _setting("AUTOFIX_KEEP_SCRATCH", False):
            scratch.remove()


def _fail_early(run: AutofixRun, message: str, progress: Progress) -> AutofixRun:
    run.status = AutofixStatus.ERROR
    run.stop_reason = AutofixStopReason.ERROR
    run.message = message[:4000]
    run.finished_at = timezone.now()
    AutofixRun.objects.filter(pk=run.pk, claim=run.claim).update(
        status=run.status,
        stop_reason=run.stop_reason,
        message=run.message,
        finished_at=run.finished_at,
        updated_at=timezone.now(),
    )
    progress(f"error: {run.message}")
    return run


def _loop(
    run: AutofixRun, scratch: Scratch, progress: Progress, deadline: float | None
) -> AutofixRun:
    argv = list(run.command) or default_command(run.runner)
    check_command(argv)
    state = _State(run=run, scratch=scratch, argv=argv, deadline=deadline, progress=progress)
    state.head = scratch.baseline
    progress(f"running {shlex.join(argv)} in a scratch copy of {run.source_path}")
    first = run_tests(argv, cwd=scratch.path, timeout=state.timeout())
    state.current = first
    run.exit_code_before = first.exit_code
    run.failure_count_before = first.failure_count
    run.failures_before = _failures_json(first)
    run.output_before = clip_output(redact(first.output))
    _save(run, "exit_code_before", "failure_count_before", "failures_before", "output_before")
    if first.error:
        return _fail_early(run, f"the test command did not start: {first.error}", progress)
    progress(f"before: exit code {first.exit_code}, {first.failure_count} failing")
    if first.passed:
        return _finish(
            state,
            status=AutofixStatus.SUCCEEDED,
            reason=AutofixStopReason.ALREADY_PASSING,
            message="The tests already pass; nothing to fix.",
            patch="",
        )
    if first.timed_out or first.truncated:
        what = "ran over its time limit" if first.timed_out else "wrote too much output"
        return _finish(
            state,
            status=AutofixStatus.FAILED,
            reason=AutofixStopReason.TIMEOUT,
            message=f"The test command {what} and was killed; fix that first.",
            patch="",
        )
    for number in range(1, run.max_iterations + 1):
        if state.out_of_time():
            return _finish(
                state,
                status=AutofixStatus.FAILED,
                reason=AutofixStopReason.TIME_BUDGET,
                message=f"Stopped after {number - 1} iteration(s): the run's time budget is spent.",
            )
        finished = _iterate(state, number)
        if finished is not None:
            return finished
    return _finish(
        state,
        status=AutofixStatus.FAILED,
        reason=AutofixStopReason.MAX_ITERATIONS,
        message=f"Stopped after {run.max_iterations} iteration(s) with "
        f"{state.current.failure_count if state.current else '?'} test(s) still failing.",
    )


# --- Services: request, run (the job), review, sweep --------------------------------------------


def _clamp_iterations(value: int | None) -> int:
    n = max_iterations_setting() if value is None else int(value)
    if n < 1 or n > MAX_ITERATIONS_CAP:
        raise AutofixError(f"must be between 1 and {MAX_ITERATIONS_CAP}", field="maxIterations")
    return n


def autofix_prepare(
    *,
    workspace: str | None = None,
    project_id: str | None = None,
    command: str | list[str] | None = None,
    restrict_to_root: bool = True,
) -> tuple[Workspace, str, list[str]]:
    """Validate a request: (workspace, runner, argv). AutofixError with the field at fault."""
    if workspace is None and project_id is None:
        raise WorkspaceError("give a workspace path or a projectId", field="workspace")
    root = Path(settings.WORKSPACE_ROOT) if restrict_to_root else None
    ws = resolve_workspace(workspace, project_id=project_id, root=root)
    argv = parse_command(command)
    if argv is not None:
        runner = check_command(argv)
    else:
        detect_in = ws.path if ws.has_worktree else None
        detected = detect_runner(detect_in) if detect_in is not None else None
        if detected is None and not ws.has_worktree:
            detected = _detect_in_bare(ws.path)
        if detected is None:
            raise AutofixError(
                "could not tell the test runner from the workspace's files; give a command",
                field="command",
            )
        runner, argv = detected, default_command(detected)
    return ws, runner, argv


def _detect_in_bare(path: Path) -> str | None:
    listed = git("ls-tree", "--name-only", "HEAD", cwd=path, check=False)
    names = (
        set(listed.stdout.decode("utf-8", "replace").split("\n"))
        if listed.returncode == 0
        else set()
    )
    for marker, runner in (
        ("Cargo.toml", "cargo"),
        ("go.mod", "go"),
        ("package.json", "node"),
        ("pytest.ini", "pytest"),
        ("pyproject.toml", "pytest"),
        ("setup.py", "pytest"),
        ("setup.cfg", "pytest"),
    ):
        if marker in names:
            return runner
    return None


@transaction.atomic
def autofix_request(
    *,
    owner: Any = None,
    workspace: str | None = None,
    project_id: str | None = None,
    command: str | list[str] | None = None,
    max_iterations: int | None = None,
    allow_test_changes: bool | None = None,
    restrict_to_root: bool = True,
    enqueue: bool = True,
) -> AutofixRun:
    """Validate, store a queued AutofixRun, and queue the job when the transaction commits."""
    ws, runner, argv = autofix_prepare(
        workspace=workspace,
        project_id=project_id,
        command=command,
        restrict_to_root=restrict_to_root,
    )
    run = AutofixRun.objects.create(
        owner=owner if getattr(owner, "is_authenticated", False) else None,
        workspace=(workspace if workspace is not None else f"project:{project_id}")[:1000],
        source_path=str(ws.path),
        source_kind=ws.kind,
        runner=runner,
        command=argv,
        max_iterations=_clamp_iterations(max_iterations),
        allow_test_changes=(
            allow_test_changes_setting() if allow_test_changes is None else allow_test_changes
        ),
    )
    if enqueue:
        _enqueue(run)
    return run


def _enqueue(run: AutofixRun) -> None:
    jobs.enqueue(RUN_TASK, str(run.pk), queue="low", task_name=f"autofix-{run.pk}")


def _claim(run_id: Any) -> AutofixRun | None:
    """Take a queued run. A conditional UPDATE: of two workers handed the same run, one gets it
    and the other goes away ("another worker got there first")."""
    claim = uuid.uuid4()
    now = timezone.now()
    claimed = AutofixRun.objects.filter(pk=run_id, status=AutofixStatus.QUEUED).update(
        status=AutofixStatus.RUNNING,
        claim=claim,
        claimed_at=now,
        started_at=now,
        attempts=F("attempts") + 1,
        updated_at=now,
    )
    if not claimed:
        return None
    # A previous attempt died mid-way: its iterations describe a scratch copy that is gone.
    AutofixIteration.objects.filter(run_id=run_id).delete()
    return AutofixRun.objects.select_related("owner").get(pk=run_id)


def autofix_run(
    *, run_id: Any, progress: Progress | None = None, time_budget: float | None = None
) -> AutofixRun | None:
    """Claim the run and execute the loop (the job, and the management command in the
    foreground). Safe to call again for the same id: a run is claimed once."""
    run = _claim(run_id)
    if run is None:
        logger.info(
            "autofix run not runnable (finished or running elsewhere)", extra={"run": str(run_id)}
        )
        return None
    deadline = time.monotonic() + time_budget if time_budget else None
    return execute(run, progress=progress, deadline=deadline)


@transaction.atomic
def autofix_review(*, run: AutofixRun, user: Any, decision: str, note: str = "") -> AutofixRun:
    """A reviewer accepts or rejects the proposed patch (Grimoire never applies it itself)."""
    if decision not in (AutofixReview.ACCEPTED, AutofixReview.REJECTED, AutofixReview.PENDING):
        raise AutofixError("decision must be accepted, rejected or pending", field="decision")
    run.review_status = decision
    run.reviewed_by = user if decision != AutofixReview.PENDING else None
    run.reviewed_at = timezone.now() if decision != AutofixReview.PENDING else None
    run.review_note = note[:4000]
    run.save(
        update_fields=["review_status", "reviewed_by", "reviewed_at", "review_note", "updated_at"]
    )
    return run


MAX_ATTEMPTS = 3


@jobs.register_sweeper("autofix_runs")
def sweep_stuck_autofix_runs() -> int:
    """Queued runs whose enqueue was lost, and running runs whose worker died, go again (a run
    only reads the workspace, so starting over is safe); after MAX_ATTEMPTS they fail."""
    now = timezone.now()
    grace = now - timedelta(minutes=5)
    stuck = now - timedelta(seconds=run_time_budget() + 180)
    requeued = 0
    dead = AutofixRun.objects.filter(status=AutofixStatus.RUNNING, claimed_at__lt=stuck)
    for run in dead.only("pk", "attempts")[:100]:
        if run.attempts >= MAX_ATTEMPTS:
            AutofixRun.objects.filter(pk=run.pk, status=AutofixStatus.RUNNING).update(
                status=AutofixStatus.ERROR,
                stop_reason=AutofixStopReason.ERROR,
                message=f"the worker running this was lost {run.attempts} times",
                finished_at=now,
                updated_at=now,
            )
        elif AutofixRun.objects.filter(
            pk=run.pk, status=AutofixStatus.RUNNING, claimed_at__lt=stuck
        ).update(status=AutofixStatus.QUEUED, updated_at=now):
            _enqueue(run)
            requeued += 1
    # Touching updated_at spaces the re-sends out: a run waiting behind long ones in the low
    # queue is sent again every few minutes at most, not at every sweep.
    lost = list(
        AutofixRun.objects.filter(status=AutofixStatus.QUEUED, updated_at__lt=grace).values_list(
            "pk", flat=True
        )[:100]
    )
    for run_id in lost:
        if AutofixRun.objects.filter(
            pk=run_id, status=AutofixStatus.QUEUED, updated_at__lt=grace
        ).update(updated_at=now):
            jobs.enqueue(RUN_TASK, str(run_id), queue="low", task_name=f"autofix-{run_id}")
            requeued += 1
    return requeued


__all__ = [
    "ALLOWED_PREFIXES",
    "PATCH_SCHEMA",
    "RUNNERS",
    "AutofixError",
    "CommandNotAllowedError",
    "PatchError",
    "Scratch",
    "TestRun",
    "Workspace",
    "WorkspaceError",
    "apply_patch",
    "autofix_prepare",
    "autofix_request",
    "autofix_review",
    "autofix_run",
    "build_prompt",
    "check_command",
    "detect_runner",
    "execute",
    "heuristic_fix",
    "is_test_path",
    "make_scratch",
    "parse_command",
    "parse_failures",
    "parse_unified_diff",
    "resolve_workspace",
    "run_command",
    "run_tests",
    "scratch_diff",
    "sweep_stuck_autofix_runs",
]
