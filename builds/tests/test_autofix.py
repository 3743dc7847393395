"""The autofix loop on small real projects made by the tests, with a scripted LLM.

The LLM is the real router with its provider mocked at the httpx transport; the test commands
really run (pytest on this interpreter, `node --test` when node is installed).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from builds import autofix
from builds.models import (
    AutofixFixSource,
    AutofixIteration,
    AutofixRun,
    AutofixStatus,
    AutofixStopReason,
)
from grimoire.testing import OPENAI_TEST_ENV, json_response, openai_chat
from llmcore.models import JobStatus, LLMOutput

OPENAI_ENV = OPENAI_TEST_ENV
PYTEST = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
NODE = shutil.which("node")
GIT = shutil.which("git") or "git"
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


# --- Helpers ------------------------------------------------------------------------------------


def openai_answer(content: str, *, prompt_tokens: int = 120, completion_tokens: int = 40):
    return openai_chat(content, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


def patch_answer(diff: str, explanation: str = "fix"):
    return openai_answer(json.dumps({"diff": diff, "explanation": explanation}))


@pytest.fixture
def provider(llm_script):
    """Script the LLM's answers: `provider(resp, ...)` installs a router, returns the transport."""
    return llm_script


def use_workspace_root(settings, tmp_path) -> Path:
    root = tmp_path / "workspaces"
    root.mkdir()
    settings.WORKSPACE_ROOT = root
    settings.AUTOFIX_SCRATCH_ROOT = tmp_path / "scratch"
    settings.AUTOFIX_TEST_TIMEOUT_SECONDS = 60
    return root


@pytest.fixture
def workspace_root(settings, tmp_path):
    return use_workspace_root(settings, tmp_path)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CALC_BUGGY = "def add(a, b):\n    return a - b\n\n\ndef mul(a, b):\n    return a * b\n"
CALC_TESTS = (
    "from calc import add, mul\n\n\n"
    "def test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_mul():\n    assert mul(2, 3) == 6\n"
)
CALC_FIX = (
    "--- a/calc.py\n"
    "+++ b/calc.py\n"
    "@@ -1,6 +1,6 @@\n"
    " def add(a, b):\n"
    "-    return a - b\n"
    "+    return a + b\n"
    " \n"
    " \n"
    " def mul(a, b):\n"
)


def python_project(root: Path, name: str = "calc") -> Path:
    return write(
        root / name,
        {
            "pytest.ini": "[pytest]\npythonpath = .\n",
            "calc.py": CALC_BUGGY,
            "tests/test_calc.py": CALC_TESTS,
            "README.md": "A calculator.\n",
        },
    )


MATH_BUGGY = "function add(a, b) {\n  return a - b;\n}\n\nmodule.exports = { add };\n"
MATH_TESTS = (
    "const test = require('node:test');\n"
    "const assert = require('node:assert');\n"
    "const { add } = require('../math');\n\n"
    "test('add adds', () => {\n  assert.strictEqual(add(2, 3), 5);\n});\n"
)
MATH_FIX = (
    "--- a/math.js\n"
    "+++ b/math.js\n"
    "@@ -1,3 +1,3 @@\n"
    " function add(a, b) {\n"
    "-  return a - b;\n"
    "+  return a + b;\n"
    " }\n"
)


def node_project(root: Path, name: str = "mathjs") -> Path:
    return write(
        root / name,
        {
            "package.json": json.dumps({"name": name, "scripts": {"test": "node --test"}}),
            "math.js": MATH_BUGGY,
            "test/math.test.js": MATH_TESTS,
        },
    )


def snapshot(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under root (the .git folder included): its kind, and its bytes' digest or link."""
    seen: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                seen[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[rel] = ("dir", oct(path.stat().st_mode))
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                seen[rel] = ("file", f"{digest} {oct(path.stat().st_mode)}")
    return seen


def start(workspace: Path | str, **kwargs) -> AutofixRun:
    kwargs.setdefault("enqueue", False)
    run = autofix.autofix_request(workspace=str(workspace), **kwargs)
    result = autofix.autofix_run(run_id=run.pk)
    assert result is not None
    run.refresh_from_db()
    return run


def apply_to_copy(project: Path, patch: str, dest: Path) -> Path:
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns(".git"))
    subprocess.run(
        [GIT, "apply", "-"], cwd=dest, input=patch.encode(), check=True, capture_output=True
    )
    return dest


def run_pytest(path: Path) -> int:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=path,
        capture_output=True,
        env={
            **autofix.child_env(),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        },
    ).returncode


def git_init(path: Path) -> None:
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init"],
    ):
        subprocess.run([GIT, *args], cwd=path, check=True, capture_output=True)


# --- The loop end to end: Python ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_right_diff_makes_the_tests_pass_and_the_patch_fixes_the_bug(
    provider, workspace_root, tmp_path
):
    project = python_project(workspace_root)
    before = snapshot(project)
    transport = provider(patch_answer(CALC_FIX, "add used subtraction"))

    run = start(project)

    assert run.status == AutofixStatus.SUCCEEDED
    assert run.stop_reason == AutofixStopReason.ALL_PASS
    assert run.runner == "pytest"
    assert run.failure_count_before == 1
    assert run.failure_count_after == 0
    assert run.iteration_count == 1
    assert "-    return a - b" in run.final_patch
    assert "+    return a + b" in run.final_patch
    assert run.input_tokens == 120 and run.output_tokens == 40
    assert run.cost_usd > 0
    # The user's workspace is untouched, byte for byte, and the scratch copy is gone.
    assert snapshot(project) == before
    assert list((tmp_path / "scratch").iterdir()) == []
    # The final patch, applied to a fresh copy, fixes the bug.
    fixed = apply_to_copy(project, run.final_patch, tmp_path / "fresh")
    assert run_pytest(project) != 0
    assert run_pytest(fixed) == 0

    iteration = run.iterations.get()
    assert iteration.applied is True
    assert iteration.fix_source == AutofixFixSource.LLM
    assert iteration.failure_count == 1
    assert iteration.failure_count_after == 0
    assert iteration.improvement_percent == 100.0
    assert iteration.explanation == "add used subtraction"
    # The exchange is stored as a reviewable LLM output with the failure and the source in it.
    output = iteration.llm_output
    assert output.status == JobStatus.COMPLETED
    assert output.purpose == "builds.autofix"
    assert "test_add" in output.prompt
    assert "return a - b" in output.prompt  # calc.py, imported by the failing test
    sent = json.loads(transport.requests[0].content)
    assert sent["response_format"]["type"] == "json_schema"


@pytest.mark.django_db
def test_secrets_printed_by_the_tests_are_neither_stored_nor_sent(provider, workspace_root):
    secret = "ghp_" + "Q7" * 18
    project = python_project(workspace_root)
    (project / "tests/test_calc.py").write_text(
        CALC_TESTS.replace("== 5\n", f"== 5, 'token={secret}'\n")
    )
    transport = provider(patch_answer(CALC_FIX))

    run = start(project)

    assert run.status == AutofixStatus.SUCCEEDED
    stored = json.dumps(
        [run.output_before, run.failures_before, run.iterations.get().llm_output.prompt]
    )
    assert "REDACTED" in stored
    assert secret not in stored
    assert all(secret not in r.content.decode() for r in transport.requests)


@pytest.mark.django_db
def test_garbage_answers_stop_the_loop_cleanly_with_the_reason(provider, workspace_root):
    project = python_project(workspace_root)
    before = snapshot(project)
    provider(*[openai_answer("Sure! Here is what I think: it's complicated.")] * 8)

    run = start(project)

    assert run.status == AutofixStatus.FAILED
    assert run.stop_reason == AutofixStopReason.PATCH_FAILED
    assert "twice" in run.message
    assert run.final_patch == ""
    assert run.iteration_count == 2
    assert [i.applied for i in run.iterations.all()] == [False, False]
    assert all(i.apply_error for i in run.iterations.all())
    assert LLMOutput.objects.filter(purpose="builds.autofix", status=JobStatus.FAILED).count() == 2
    assert snapshot(project) == before


@pytest.mark.django_db
def test_a_diff_that_does_not_match_twice_stops_with_patch_failed(provider, workspace_root):
    project = python_project(workspace_root)
    nonsense = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n-nothing like this\n+at all\n"
    provider(patch_answer(nonsense), patch_answer("not a diff"))

    run = start(project)

    assert run.stop_reason == AutofixStopReason.PATCH_FAILED
    first, second = run.iterations.all()
    assert "does not match" in first.apply_error
    assert "no file changes" in second.apply_error
    # The second prompt told the model why its first patch was refused.
    assert "does not match" in second.llm_output.prompt


@pytest.mark.django_db
def test_a_patch_escaping_the_scratch_copy_is_refused_and_nothing_is_written(
    provider, workspace_root, tmp_path
):
    project = python_project(workspace_root)
    escape = "--- a/../../outside.txt\n+++ b/../../outside.txt\n@@ -0,0 +1 @@\n+pwned\n"
    absolute = f"--- /dev/null\n+++ {tmp_path}/abs.txt\n@@ -0,0 +1 @@\n+pwned\n"
    provider(patch_answer(escape), patch_answer(absolute))

    run = start(project)

    assert run.stop_reason == AutofixStopReason.PATCH_FAILED
    errors = [i.apply_error for i in run.iterations.all()]
    assert "'..'" in errors[0]
    assert "absolute" in errors[1]
    assert not (tmp_path / "abs.txt").exists()
    assert not any(p.name == "outside.txt" for p in tmp_path.rglob("outside.txt"))


@pytest.mark.django_db
def test_a_patch_to_the_tests_is_refused_unless_allowed(provider, workspace_root, tmp_path):
    project = python_project(workspace_root)
    cheat = (
        "--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n@@ -4,2 +4,2 @@\n"
        " def test_add():\n-    assert add(2, 3) == 5\n+    assert add(2, 3) == -1\n"
    )
    provider(patch_answer(cheat), patch_answer(cheat))
    run = start(project)
    assert run.stop_reason == AutofixStopReason.PATCH_FAILED
    assert "test file" in run.iterations.first().apply_error

    provider(patch_answer(cheat))
    allowed = start(project, allow_test_changes=True)
    assert allowed.status == AutofixStatus.SUCCEEDED
    assert "tests/test_calc.py" in allowed.final_patch


@pytest.mark.django_db
def test_a_patch_that_makes_things_no_better_is_taken_back_out(provider, workspace_root, settings):
    project = python_project(workspace_root)
    settings.MIN_IMPROVEMENT_THRESHOLD_PERCENT = 5.0
    worse = (
        "--- a/calc.py\n+++ b/calc.py\n@@ -5,2 +5,2 @@\n"
        " def mul(a, b):\n-    return a * b\n+    return a ** b\n"
    )
    provider(patch_answer(worse))

    run = start(project)

    assert run.status == AutofixStatus.FAILED
    assert run.stop_reason == AutofixStopReason.NO_IMPROVEMENT
    iteration = run.iterations.get()
    assert iteration.applied and iteration.reverted
    assert iteration.failure_count_after == 2
    assert iteration.improvement_percent == -100.0
    assert run.final_patch == ""  # the proposal keeps the best state: the original
    assert run.failure_count_after == 1


@pytest.mark.django_db
def test_the_loop_stops_at_the_iteration_limit(provider, workspace_root, settings):
    project = write(
        workspace_root / "three",
        {
            "pytest.ini": "[pytest]\npythonpath = .\n",
            "m.py": "A = 0\nB = 0\n",
            "tests/test_m.py": "from m import A, B\n\n\ndef test_a():\n    assert A == 1\n\n\n"
            "def test_b():\n    assert B == 1\n",
        },
    )
    fix_a = "--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,2 @@\n-A = 0\n+A = 1\n B = 0\n"
    provider(patch_answer(fix_a))

    run = start(project, max_iterations=1)

    assert run.status == AutofixStatus.FAILED
    assert run.stop_reason == AutofixStopReason.MAX_ITERATIONS
    assert run.failure_count_before == 2
    assert run.failure_count_after == 1
    assert "+A = 1" in run.final_patch


@pytest.mark.django_db
def test_tests_that_already_pass_need_no_llm(provider, workspace_root):
    project = write(
        workspace_root / "green",
        {"pytest.ini": "[pytest]\n", "test_ok.py": "def test_ok():\n    assert True\n"},
    )
    transport = provider()
    run = start(project)
    assert run.status == AutofixStatus.SUCCEEDED
    assert run.stop_reason == AutofixStopReason.ALREADY_PASSING
    assert run.iteration_count == 0
    assert transport.requests == []


@pytest.mark.django_db
def test_a_git_workspace_is_fixed_from_its_working_state_and_left_untouched(
    provider, workspace_root, tmp_path
):
    project = python_project(workspace_root, "repo")
    (project / "calc.py").write_text(CALC_BUGGY.replace("a - b", "a + b"))
    git_init(project)
    # The bug is an uncommitted change, and an untracked helper is imported by the tests.
    (project / "calc.py").write_text(CALC_BUGGY)
    (project / "extra.py").write_text("ONE = 1\n")
    (project / "tests/test_extra.py").write_text(
        "from extra import ONE\n\n\ndef test_one():\n    assert ONE == 1\n"
    )
    before = snapshot(project)
    provider(patch_answer(CALC_FIX))

    run = start(project)

    assert run.source_kind == "git"
    assert run.status == AutofixStatus.SUCCEEDED, run.message
    assert run.failure_count_before == 1
    assert snapshot(project) == before  # .git included: no worktree, index or object written
    check = subprocess.run(
        [GIT, "apply", "--check", "-"],
        cwd=project,
        input=run.final_patch.encode(),
        capture_output=True,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.django_db
def test_a_file_url_of_a_bare_repository_works(provider, workspace_root):
    source = python_project(workspace_root, "src")
    git_init(source)
    subprocess.run(
        [GIT, "clone", "-q", "--bare", str(source), str(workspace_root / "bare.git")],
        check=True,
        capture_output=True,
    )
    provider(patch_answer(CALC_FIX))
    run = start(f"file://{workspace_root / 'bare.git'}", command=PYTEST)
    assert run.source_kind == "git"
    assert run.status == AutofixStatus.SUCCEEDED, run.message


# --- The loop end to end: JavaScript ------------------------------------------------------------


@needs_node
@pytest.mark.django_db
def test_a_node_test_project_ends_green_with_the_right_diff(provider, workspace_root, tmp_path):
    project = node_project(workspace_root)
    before = snapshot(project)
    provider(patch_answer(MATH_FIX))

    run = start(project)

    assert run.runner == "node"
    assert run.command == ["node", "--test"]
    assert run.status == AutofixStatus.SUCCEEDED, run.message
    assert run.failure_count_before == 1
    assert snapshot(project) == before
    assert "math.js" in run.iterations.get().llm_output.prompt
    fixed = apply_to_copy(project, run.final_patch, tmp_path / "fresh")
    result = subprocess.run([NODE, "--test"], cwd=fixed, capture_output=True)
    assert result.returncode == 0


@needs_node
@pytest.mark.django_db
def test_a_runaway_test_command_is_killed_at_its_time_limit(provider, workspace_root, settings):
    settings.AUTOFIX_TEST_TIMEOUT_SECONDS = 3
    project = write(
        workspace_root / "hang",
        {
            "package.json": "{}",
            "test/hang.test.js": "const test = require('node:test');\n"
            "const fs = require('node:fs');\n"
            "test('hangs', () => {\n"
            "  fs.writeFileSync('pid.txt', String(process.pid));\n"
            "  for (;;) {}\n"
            "});\n",
        },
    )
    settings.AUTOFIX_KEEP_SCRATCH = True
    transport = provider()

    run = start(project)

    assert run.status == AutofixStatus.FAILED
    assert run.stop_reason == AutofixStopReason.TIMEOUT
    assert "time limit" in run.output_after
    assert transport.requests == []
    pid_files = list(Path(settings.AUTOFIX_SCRATCH_ROOT).rglob("pid.txt"))
    assert pid_files, "the test never started"
    assert _dies(int(pid_files[0].read_text()))


@pytest.mark.skipif(shutil.which("cargo") is None, reason="cargo is not installed")
@pytest.mark.django_db
def test_a_cargo_project_ends_green_with_the_right_diff(provider, workspace_root):
    lib = (
        "pub fn add(a: i32, b: i32) -> i32 {\n    a - b\n}\n\n#[cfg(test)]\nmod tests {\n"
        "    use super::*;\n\n    #[test]\n    fn adds() {\n        assert_eq!(add(2, 3), 5);\n"
        "    }\n}\n"
    )
    project = write(
        workspace_root / "crate",
        {
            "Cargo.toml": '[package]\nname = "calc"\nversion = "0.1.0"\nedition = "2021"\n',
            "src/lib.rs": lib,
        },
    )
    fix = (
        "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,3 +1,3 @@\n"
        " pub fn add(a: i32, b: i32) -> i32 {\n-    a - b\n+    a + b\n }\n"
    )
    provider(patch_answer(fix))

    run = start(project)

    assert run.runner == "cargo"
    assert run.failures_before[0]["test"] == "tests::adds"
    assert run.status == AutofixStatus.SUCCEEDED, run.message
    assert "a - b" in run.iterations.get().llm_output.prompt  # src/lib.rs, named by the panic


def _dies(pid: int) -> bool:
    """True once the process is gone; SIGKILL is delivered at once but acted on asynchronously."""
    for _ in range(100):
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped


# --- Heuristic fallback when no provider answers ------------------------------------------------


@pytest.mark.django_db
def test_when_every_provider_fails_the_heuristic_adds_a_missing_stdlib_import(
    provider, workspace_root, tmp_path
):
    project = write(
        workspace_root / "dump",
        {
            "pytest.ini": "[pytest]\npythonpath = .\n",
            "app.py": '"""Dumping."""\n\n\ndef dump(d):\n    return json.dumps(d)\n',
            "tests/test_app.py": 'from app import dump\n\n\ndef test_dump():\n    assert dump({"a": 1}) == \'{"a": 1}\'\n',
        },
    )
    unauthorized = json_response(401, {"error": {"message": "bad key", "type": "auth"}})
    provider(unauthorized, unauthorized)

    run = start(project)

    assert run.status == AutofixStatus.SUCCEEDED, run.message
    assert run.fallback_used is True
    assert "heuristic fallback" in run.message
    assert "+import json" in run.final_patch
    iteration = run.iterations.get()
    assert iteration.fix_source == AutofixFixSource.HEURISTIC
    assert iteration.explanation.startswith("[heuristic fallback]")
    assert iteration.llm_output.status == JobStatus.FAILED
    fixed = apply_to_copy(project, run.final_patch, tmp_path / "fresh")
    assert run_pytest(fixed) == 0


@pytest.mark.django_db
def test_an_offline_only_answer_counts_as_no_provider(provider, workspace_root):
    project = write(
        workspace_root / "paths",
        {
            "pytest.ini": "[pytest]\npythonpath = .\n",
            "app.py": "def home():\n    return os.path.join('a', 'b')\n",
            "tests/test_app.py": "from app import home\n\n\ndef test_home():\n    assert home() == 'a/b'\n",
        },
    )
    provider(env={"LLM_PROVIDERS": "offline"})

    run = start(project)

    assert run.status == AutofixStatus.SUCCEEDED, run.message
    assert run.fallback_used
    assert "+import os" in run.final_patch
    assert run.iterations.get().llm_output.offline is True


@pytest.mark.django_db
def test_without_a_provider_or_a_known_fix_the_run_says_so(provider, workspace_root):
    project = python_project(workspace_root)
    provider(env={"LLM_PROVIDERS": "offline"})

    run = start(project)

    assert run.status == AutofixStatus.FAILED
    assert run.stop_reason == AutofixStopReason.LLM_UNAVAILABLE
    assert "No fix from an LLM (only the offline placeholder answered" in run.message
    assert run.final_patch == ""


@needs_node
@pytest.mark.django_db
def test_the_heuristic_requires_a_missing_node_builtin(provider, workspace_root):
    project = write(
        workspace_root / "files",
        {
            "package.json": "{}",
            "files.js": "function exists(p) {\n  return fs.existsSync(p);\n}\n\nmodule.exports = { exists };\n",
            "test/files.test.js": "const test = require('node:test');\n"
            "const assert = require('node:assert');\n"
            "const { exists } = require('../files');\n\n"
            "test('exists', () => {\n  assert.strictEqual(exists(__filename), true);\n});\n",
        },
    )
    provider(env={"LLM_PROVIDERS": "offline"})

    run = start(project)

    assert run.status == AutofixStatus.SUCCEEDED, run.message
    assert "+const fs = require('node:fs');" in run.final_patch


def test_the_heuristic_fixes_a_misspelt_local_module(tmp_path):
    write(
        tmp_path,
        {
            "calc.py": "def add(a, b):\n    return a + b\n",
            "main.py": "from clac import add\n\nprint(add(1, 2))\n",
        },
    )
    output = "E   ModuleNotFoundError: No module named 'clac'\n"
    fix = autofix.heuristic_fix(tmp_path, output)
    assert fix is not None
    assert "+from calc import add" in fix.diff
    autofix.apply_patch(fix.diff, tmp_path)
    assert (tmp_path / "main.py").read_text().startswith("from calc import add")


def test_the_heuristic_leaves_unknown_names_and_packages_alone(tmp_path):
    write(tmp_path, {"app.py": "def f():\n    return requests.get('x')\n"})
    output = (
        "app.py:2: NameError\nE   NameError: name 'requests' is not defined\n"
        "E   ModuleNotFoundError: No module named 'requests'\n"
    )
    assert autofix.heuristic_fix(tmp_path, output) is None
    notes = autofix.missing_dependency_notes(output, tmp_path)
    assert notes == ["Python package 'requests' is not installed (add it to the dependencies)"]


# --- Applying patches safely (no database) ------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "work"
    write(root, {"src/app.py": "x = 1\ny = 2\nz = 3\n", "tests/test_app.py": "def test(): pass\n"})
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("keep\n")
    return root


def _new_file(path: str, text: str = "pwned") -> str:
    return f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+{text}\n"


@pytest.mark.parametrize(
    ("diff", "message"),
    [
        (_new_file("../outside/evil.txt"), "'..'"),
        ("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+x\n", "'..'"),
        ("--- /dev/null\n+++ /etc/cron.d/evil\n@@ -0,0 +1 @@\n+x\n", "absolute"),
        (_new_file(".git/hooks/pre-commit"), ".git"),
        (_new_file("src/./../../outside/x"), "'..'"),
        ("--- a/src/app.py\n+++ b/src/app.py\nGIT binary patch\nliteral 0\n", "binary"),
        (
            "diff --git a/x b/y\nrename from src/app.py\nrename to src/b.py\n",
            "renames",
        ),
        ("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n", "symlink"),
        ("hello\n", "no file changes"),
        ("", "empty"),
    ],
)
def test_unsafe_or_malformed_patches_are_refused(tree, tmp_path, diff, message):
    before = snapshot(tmp_path)
    with pytest.raises(autofix.PatchError) as info:
        autofix.apply_patch(diff, tree)
    assert message in info.value.message
    assert snapshot(tmp_path) == before


def test_a_patch_through_a_symlink_out_of_the_copy_is_refused(tree, tmp_path):
    os.symlink(tmp_path / "outside", tree / "link")
    os.symlink(tmp_path / "outside" / "secret.txt", tree / "secret.txt")
    for diff in (
        _new_file("link/evil.txt"),
        "--- a/secret.txt\n+++ b/secret.txt\n@@ -1 +1 @@\n-keep\n+pwned\n",
    ):
        with pytest.raises(autofix.PatchError, match="symlink"):
            autofix.apply_patch(diff, tree)
    assert (tmp_path / "outside" / "secret.txt").read_text() == "keep\n"
    assert not (tmp_path / "outside" / "evil.txt").exists()


def test_test_files_are_protected_unless_allowed(tree):
    diff = "--- a/tests/test_app.py\n+++ b/tests/test_app.py\n@@ -1 +1 @@\n-def test(): pass\n+def test(): assert 1\n"
    with pytest.raises(autofix.PatchError, match="test file"):
        autofix.apply_patch(diff, tree)
    assert autofix.apply_patch(diff, tree, allow_tests=True) == ["tests/test_app.py"]


def test_a_patch_applies_all_files_or_none(tree):
    diff = (
        "--- a/src/app.py\n+++ b/src/app.py\n@@ -1 +1 @@\n-x = 1\n+x = 10\n"
        "--- a/src/other.py\n+++ b/src/other.py\n@@ -1 +1 @@\n-nope\n+x\n"
    )
    with pytest.raises(autofix.PatchError, match="no such file"):
        autofix.apply_patch(diff, tree)
    assert (tree / "src/app.py").read_text() == "x = 1\ny = 2\nz = 3\n"


def test_the_parser_forgives_what_models_get_wrong(tree):
    # Wrong line numbers and counts, a Markdown fence, a blank context line without its space.
    (tree / "src/app.py").write_text("a = 1\n\nb = 2\nc = 3\n")
    diff = "```diff\n--- a/src/app.py\n+++ b/src/app.py\n@@ -40,9 +40,9 @@\n a = 1\n\n-b = 2\n+b = 20\n c = 3\n```"
    assert autofix.apply_patch(diff, tree) == ["src/app.py"]
    assert (tree / "src/app.py").read_text() == "a = 1\n\nb = 20\nc = 3\n"


def test_new_and_deleted_files(tree):
    diff = (
        "--- /dev/null\n+++ b/src/pkg/new.py\n@@ -0,0 +1,2 @@\n+A = 1\n+B = 2\n"
        "--- a/src/app.py\n+++ /dev/null\n@@ -1,3 +0,0 @@\n-x = 1\n-y = 2\n-z = 3\n"
    )
    assert sorted(autofix.apply_patch(diff, tree)) == ["src/app.py", "src/pkg/new.py"]
    assert (tree / "src/pkg/new.py").read_text() == "A = 1\nB = 2\n"
    assert not (tree / "src/app.py").exists()
    with pytest.raises(autofix.PatchError, match="already exists"):
        autofix.apply_patch("--- /dev/null\n+++ b/src/pkg/new.py\n@@ -0,0 +1 @@\n+x\n", tree)


def test_hunks_apply_in_order_with_offsets_and_keep_a_missing_final_newline(tree):
    text = "".join(f"line {n}\n" for n in range(1, 21)).rstrip("\n")
    (tree / "src/long.py").write_text(text)
    diff = (
        "--- a/src/long.py\n+++ b/src/long.py\n"
        "@@ -2,1 +2,2 @@\n-line 2\n+line 2a\n+line 2b\n"
        "@@ -20,1 +21,1 @@\n-line 20\n\\ No newline at end of file\n+line twenty\n"
        "\\ No newline at end of file\n"
    )
    autofix.apply_patch(diff, tree)
    result = (tree / "src/long.py").read_text()
    assert result.startswith("line 1\nline 2a\nline 2b\nline 3\n")
    assert result.endswith("line 19\nline twenty")


@pytest.mark.parametrize(
    ("path", "is_test"),
    [
        ("tests/test_x.py", True),
        ("test_x.py", True),
        ("pkg/x_test.go", True),
        ("src/__tests__/a.js", True),
        ("web/a.spec.ts", True),
        ("test/math.test.js", True),
        ("conftest.py", True),
        ("src/calc.py", False),
        ("math.js", False),
        ("src/contest.py", False),
    ],
)
def test_test_paths_are_recognised(path, is_test):
    assert autofix.is_test_path(path) is is_test


# --- The command allowlist ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["bash", "-c", "rm -rf /"],
        ["sh", "-c", "pytest"],
        ["python", "-c", "import os"],
        ["/usr/bin/pytest"],
        ["./node_modules/.bin/jest"],
        ["node", "evil.js"],
        ["node", "--test", "--require", "./x.js"],
        ["node", "--test", "-e", "process.exit(0)"],
        ["go", "test", "-exec", "sh", "./..."],
        ["cargo", "test", "--config", "build.rustc-wrapper='sh'"],
        ["pytest", "/etc"],
        ["pytest", "--rootdir=/"],
        ["pytest", "../other"],
        ["npm", "test"],
        [],
    ],
)
def test_commands_outside_the_allowlist_are_refused(command):
    with pytest.raises(autofix.CommandNotAllowedError):
        autofix.check_command(command)


@pytest.mark.parametrize(
    ("command", "runner"),
    [
        ("python -m pytest -q tests/test_calc.py::test_add", "pytest"),
        ("pytest -k 'add or mul'", "pytest"),
        ("node --test", "node"),
        ("npx --no-install jest --ci", "jest"),
        ("npx mocha", "mocha"),
        ("cargo test --color never", "cargo"),
        ("go test ./...", "go"),
    ],
)
def test_allowed_commands_name_their_runner(command, runner):
    assert autofix.check_command(autofix.parse_command(command)) == runner


@pytest.mark.parametrize(
    ("files", "runner"),
    [
        ({"Cargo.toml": ""}, "cargo"),
        ({"go.mod": "module x\n"}, "go"),
        ({"package.json": '{"devDependencies": {"jest": "^29"}}'}, "jest"),
        ({"package.json": '{"scripts": {"test": "mocha test/"}}'}, "mocha"),
        ({"package.json": '{"scripts": {"test": "node --test"}}'}, "node"),
        ({"pyproject.toml": "[project]\n"}, "pytest"),
        ({"tests/test_a.py": ""}, "pytest"),
        ({"README.md": ""}, None),
    ],
)
def test_the_runner_is_detected_from_the_files(tmp_path, files, runner):
    write(tmp_path, files)
    assert autofix.detect_runner(tmp_path) == runner


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx is not installed")
def test_npx_never_downloads_a_runner():
    env = autofix._test_env(["npx", "jest"])
    assert autofix.resolve_argv(["npx", "jest", "--ci"], env)[1:] == [
        "--no-install",
        "jest",
        "--ci",
    ]
    assert autofix.resolve_argv(["npx", "--no-install", "mocha"], env)[1:] == [
        "--no-install",
        "mocha",
    ]


def test_python_commands_run_on_the_configured_interpreter(settings):
    env = autofix._test_env(["pytest"])
    assert env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] == "1"  # Grimoire's plugins stay out
    assert autofix.resolve_argv(["pytest", "-q"], env) == [sys.executable, "-m", "pytest", "-q"]
    settings.AUTOFIX_PYTHON = "/opt/project/.venv/bin/python"
    assert "PYTEST_DISABLE_PLUGIN_AUTOLOAD" not in autofix._test_env(["pytest"])
    assert autofix.resolve_argv(["python", "-m", "pytest"], env)[0] == settings.AUTOFIX_PYTHON


def test_run_command_caps_the_output_and_kills_the_process(tmp_path):
    write(
        tmp_path, {"test_loud.py": "def test_loud():\n    while True:\n        print('x' * 1000)\n"}
    )
    result = autofix.run_command(
        ["python", "-m", "pytest", "-s", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        timeout=60,
        max_output=20_000,
    )
    assert result.truncated
    assert not result.passed
    assert "output over 20000 bytes" in result.output


def test_a_hanging_test_is_killed_at_the_time_limit(tmp_path):
    write(tmp_path, {"test_hang.py": "def test_hang():\n    while True:\n        pass\n"})
    result = autofix.run_tests(PYTEST, cwd=tmp_path, timeout=2, max_output=10_000)
    assert result.timed_out
    assert not result.passed
    assert result.failures[0]["message"] == "the test command timed out"
    assert "ran over its 2s time limit" in result.output


def test_a_missing_program_is_reported_not_raised(tmp_path, settings):
    result = autofix.run_command(
        ["cargo-that-does-not-exist"], cwd=tmp_path, timeout=5, max_output=100
    )
    assert result.exit_code is None
    assert "could not start" in result.error


# --- Prompt -------------------------------------------------------------------------------------


def test_the_prompt_is_bounded_and_redacts_secrets(tmp_path):
    secret = "ghp_" + "Z9" * 18
    write(
        tmp_path,
        {
            "calc.py": f"TOKEN = '{secret}'\n" + "# filler\n" * 20_000,
            "tests/test_calc.py": CALC_TESTS,
            ".env": f"GITHUB_TOKEN={secret}\n",
        },
    )
    run = autofix.TestRun(
        argv=PYTEST,
        exit_code=1,
        output=f"tests/test_calc.py:5: AssertionError\nleaked {secret}\n" + "noise\n" * 50_000,
        failures=[{"test": "test_add", "message": "assert -1 == 5", "file": None}],
    )
    system, prompt = autofix.build_prompt(
        command=PYTEST,
        runner="pytest",
        test_run=run,
        root=tmp_path,
        allow_tests=False,
        history=[],
        max_chars=20_000,
    )
    assert secret not in prompt
    assert len(prompt) <= 21_000
    assert "test_add" in prompt and "assert -1 == 5" in prompt
    assert "File calc.py (first 1235 lines):\n```python\nTOKEN = '[REDACTED" in prompt
    assert ".env" not in prompt
    assert "Do not change test files" in system


# --- Jobs, sweeper, command ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_run_is_claimed_once(provider, workspace_root):
    project = python_project(workspace_root)
    provider(patch_answer(CALC_FIX))
    run = start(project)
    assert autofix.autofix_run(run_id=run.pk) is None
    assert AutofixIteration.objects.filter(run=run).count() == 1


@pytest.mark.django_db
def test_the_sweeper_requeues_lost_runs_and_gives_up_after_three_attempts(
    workspace_root, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    project = python_project(workspace_root)
    sent = []
    monkeypatch.setattr(autofix.jobs, "enqueue", lambda *a, **k: sent.append(a))
    old = timezone.now() - timedelta(days=1)
    queued = autofix.autofix_request(workspace=str(project), enqueue=False)
    dead = autofix.autofix_request(workspace=str(project), enqueue=False)
    hopeless = autofix.autofix_request(workspace=str(project), enqueue=False)
    AutofixRun.objects.filter(pk=queued.pk).update(updated_at=old)
    AutofixRun.objects.filter(pk=dead.pk).update(status="running", claimed_at=old, attempts=1)
    AutofixRun.objects.filter(pk=hopeless.pk).update(status="running", claimed_at=old, attempts=3)

    assert autofix.sweep_stuck_autofix_runs() == 2

    assert sorted(a[1] for a in sent) == sorted([str(queued.pk), str(dead.pk)])
    dead.refresh_from_db()
    hopeless.refresh_from_db()
    assert dead.status == AutofixStatus.QUEUED
    assert hopeless.status == AutofixStatus.ERROR
    # Sent again only after a pause, not at every sweep.
    assert autofix.sweep_stuck_autofix_runs() == 0


@pytest.mark.django_db
def test_the_management_command_prints_progress_and_the_patch(provider, workspace_root):
    project = python_project(workspace_root)
    provider(patch_answer(CALC_FIX))
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "autofix",
        str(project),
        "--command",
        " ".join(PYTEST),
        "--max-iterations",
        "2",
        stdout=out,
        stderr=err,
    )

    assert "+    return a + b" in out.getvalue()
    assert "iteration 1/2" in err.getvalue()
    assert "done: succeeded" in err.getvalue()


@pytest.mark.django_db
def test_the_management_command_fails_on_a_refused_command(workspace_root):
    project = python_project(workspace_root)
    with pytest.raises(CommandError, match="not an allowed test command"):
        call_command("autofix", str(project), "--command", "bash -c 'echo hi'")
