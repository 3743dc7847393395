"""manage.py summarize_log: JSON lines, readable summary, unreadable files. No database."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("summarize_log", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_json_prints_one_object_per_file_in_order(tmp_path):
    plain = tmp_path / "pytest.log"
    shutil.copy(FIXTURES / "pytest_github_actions.log", plain)
    packed = tmp_path / "make.log.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "gcc_make.log").read_bytes()))

    out, err = run(str(plain), str(packed), "--json")

    assert err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["path"] for row in rows] == [str(plain), str(packed)]
    assert list(rows[0]) == [
        "path",
        "total_lines",
        "error_count",
        "warning_count",
        "errors",
        "warnings",
        "failures",
        "primary_error",
        "excerpt",
    ]
    assert rows[0]["total_lines"] == 59
    assert rows[0]["failures"][0] == {
        "runner": "pytest",
        "test": "tests/test_cart.py::test_total_with_discount",
        "message": "assert 40 == 36",
        "line": 20,
    }
    assert rows[1]["primary_error"]["line"] == 8
    assert rows[1]["primary_error"]["text"].startswith("src/buffer.c:57:5: error:")
    assert rows[1]["excerpt"]["start"] <= 8 <= rows[1]["excerpt"]["end"]


def test_a_missing_file_is_reported_on_stderr_and_the_others_still_run(tmp_path):
    good = FIXTURES / "rustc_error.log"
    missing = tmp_path / "nope.log"
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(CommandError, match="1 of 2 file"):
        call_command("summarize_log", str(missing), str(good), "--json", stdout=out, stderr=err)

    assert (
        err.getvalue().strip() == f"summarize_log: cannot read {missing}: No such file or directory"
    )
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["path"] for row in rows] == [str(good)]


def test_a_directory_and_a_corrupt_gzip_are_unreadable(tmp_path):
    corrupt = tmp_path / "broken.log.gz"
    corrupt.write_bytes(b"\x1f\x8b" + b"\x00" * 40)
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match="2 of 2"):
        call_command("summarize_log", str(tmp_path), str(corrupt), stdout=out, stderr=err)
    assert err.getvalue().count("summarize_log: cannot read") == 2
    assert out.getvalue() == ""


def test_the_readable_summary_names_the_primary_error_failures_and_excerpt():
    out, _ = run(str(FIXTURES / "maven_surefire_jenkins.log"))
    assert "41 lines, 8 errors, 0 warnings, 1 test failures" in out
    assert "primary error (line 15, test)" in out
    assert "failed [junit] com.acme.billing.TaxCalculatorTest.appliesReducedRate (line 15)" in out
    assert "excerpt (lines 14-19):" in out


def test_a_log_without_errors_says_so(tmp_path):
    path = tmp_path / "clean.log"
    path.write_text("Compiling app v1.0\nFinished in 2.1s\n")
    out, _ = run(str(path))
    assert "2 lines, 0 errors" in out
    assert "no error found" in out


def _compiler_errors_log(tmp_path: Path, count: int) -> Path:
    """A make run that failed with `count` distinct compiler errors."""
    path = tmp_path / "gcc.log"
    path.write_text(
        "\n".join(f"src/m{i}.c:{i}:5: error: 'x{i}' undeclared" for i in range(count))
        + "\nmake: *** [all] Error 1\n"
    )
    return path


def test_the_more_count_is_what_is_left_of_the_listed_errors(tmp_path):
    # Fourteen compiler errors are all listed; ten are shown, four are left.
    out, _ = run(str(_compiler_errors_log(tmp_path, 14)))
    assert "15 errors" in out
    assert "... 4 more" in out


def test_no_more_line_when_the_error_count_is_larger_than_the_list(tmp_path):
    # Thirty retry warnings look like errors (error_count) but are not listed, so
    # there is nothing "more" to promise.
    path = tmp_path / "retries.log"
    path.write_text(
        "Compiling\n"
        + "ERROR: retrying download (attempt 1)\n" * 30
        + "src/a.c:3:5: error: 'x' undeclared\nmake: *** [all] Error 1\n"
    )
    out, _ = run(str(path))
    assert "32 errors" in out
    assert "src/a.c:3:5: error: 'x' undeclared" in out
    assert "more" not in out.split("errors:")[1].split("excerpt")[0]


def test_a_capped_list_says_at_least(tmp_path):
    # 300 compiler errors: the analysis lists at most MAX_FINDINGS (200) of them.
    from builds.logparse import MAX_FINDINGS

    out, _ = run(str(_compiler_errors_log(tmp_path, 300)))
    assert f"... at least {MAX_FINDINGS - 10} more" in out
