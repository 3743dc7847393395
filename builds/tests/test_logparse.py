"""builds.logparse: cleaning, streaming, runner parsers, tool errors, primary error and excerpt.

Pure module: no database. Fixtures in fixtures/logs/ are small logs written for these tests.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from pathlib import Path

import pytest

from builds.logparse import (
    MAX_FINDINGS,
    LogAnalysis,
    LogAnalyzer,
    analyze_lines,
    analyze_path,
    analyze_stream,
    analyze_text,
    clean_line,
)

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
ALL_LOGS = sorted(p.name for p in FIXTURES.glob("*.log"))


def fixture(name: str) -> LogAnalysis:
    return analyze_path(FIXTURES / name)


def failures(result: LogAnalysis) -> list[tuple[str, str, str]]:
    return [(f.runner, f.test, f.message) for f in result.failures]


def lines_of(result: LogAnalysis) -> list[int]:
    return [e.line for e in result.errors]


# ---- cleaning ----------------------------------------------------------------------------


def test_clean_line_strips_ansi_and_github_actions_timestamp():
    raw = "2024-03-14T09:12:03.1234567Z \x1b[31m\x1b[1mFAILED\x1b[0m tests/test_a.py::test_b"
    assert clean_line(raw) == "FAILED tests/test_a.py::test_b"


def test_clean_line_strips_the_gh_run_view_job_and_step_columns():
    raw = "build\tRun tests\t2021-12-01T13:01:04.3807878Z LogDifferTest > testParsing() FAILED"
    assert clean_line(raw) == "LogDifferTest > testParsing() FAILED"


@pytest.mark.parametrize(
    "raw",
    [
        "[2024-03-14T09:30:01.123Z] [ERROR] boom",
        "[09:30:01] [ERROR] boom",
        "09:30:01.250 [ERROR] boom",
    ],
)
def test_clean_line_strips_jenkins_timestamps(raw):
    assert clean_line(raw) == "[ERROR] boom"


def test_clean_line_strips_gitlab_timestamp_and_stream_flags():
    assert clean_line("2024-03-14T09:12:03.123456Z 01E+ERROR: boom") == "ERROR: boom"
    assert clean_line("2024-03-14T09:12:03.123456Z 00O $ make") == "$ make"


def test_clean_line_drops_gitlab_section_markers():
    raw = "section_start:1710408003:step_script\r\x1b[0K\x1b[0K\x1b[36;1mExecuting step_script\x1b[0;m"
    assert clean_line(raw) == "Executing step_script"
    assert clean_line("section_end:1710408019:step_script\r\x1b[0K") == ""


def test_clean_line_drops_travis_fold_and_time_markers():
    assert clean_line("travis_fold:start:install\r\x1b[0K$ npm ci") == "$ npm ci"
    assert clean_line("travis_time:end:0a1b:start=1,finish=2,duration=1\r\x1b[0K") == ""
    assert clean_line("travis_fold:end:install\r\x1b[0K") == ""


def test_clean_line_keeps_what_a_carriage_return_left_on_screen():
    raw = (
        "Progress (1): 4.1/11 kB\rProgress (1): 11 kB    \r                   \rDownloaded foo.pom"
    )
    assert clean_line(raw) == "Downloaded foo.pom"
    assert clean_line("ERROR: disk full\r") == "ERROR: disk full"  # the \r of \r\n


def test_clean_line_drops_ansi_remnants_whose_escape_byte_was_lost():
    assert clean_line("[1m>>>[0m Lint for [4msrc/a.py[0m:") == ">>> Lint for src/a.py:"


def test_clean_line_strips_the_timestamp_before_an_indented_stack_frame():
    raw = "2024-03-14T09:12:03.1234567Z \tat com.acme.Cart.total(Cart.java:42)"
    assert clean_line(raw) == "\tat com.acme.Cart.total(Cart.java:42)"


# ---- streaming and line numbering -------------------------------------------------------------


def test_line_numbers_count_newlines_only():
    text = "ok\r\nProgress 10%\rProgress 100%\r\nerror: boom\r\n"
    result = analyze_text(text)
    assert result.total_lines == 3
    assert [(e.line, e.text) for e in result.errors] == [(3, "error: boom")]


def test_a_last_line_without_newline_is_counted():
    assert analyze_text("one\ntwo\nerror: three").total_lines == 3
    assert analyze_text("one\ntwo\n").total_lines == 2
    assert analyze_text("error: three").errors[0].line == 1


def test_an_empty_log_has_no_findings():
    result = analyze_text("")
    assert result.total_lines == 0
    assert result.primary_error is None and result.excerpt is None
    assert result.to_dict()["errors"] == []


@pytest.mark.parametrize("name", ALL_LOGS)
def test_every_entry_point_gives_the_same_analysis(name, tmp_path):
    data = (FIXTURES / name).read_bytes()
    text = data.decode("utf-8")
    expected = analyze_path(FIXTURES / name).to_dict()

    assert analyze_text(text).to_dict() == expected
    assert (
        analyze_lines(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")).to_dict()
        == expected
    )
    for chunk_size in (1, 7, 64):
        assert analyze_stream(io.BytesIO(data), chunk_size=chunk_size).to_dict() == expected
    assert analyze_stream(io.StringIO(text), chunk_size=5).to_dict() == expected

    # Arbitrary pieces, as the API appends log chunks to a running build.
    rng = random.Random(name)
    analyzer = LogAnalyzer()
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 300)
        analyzer.feed_bytes(data[pos : pos + step])
        pos += step
    assert analyzer.finish().to_dict() == expected

    gz = tmp_path / "log.txt"  # no .gz suffix: detected by the magic bytes
    gz.write_bytes(gzip.compress(data))
    assert analyze_path(gz).to_dict() == expected


def test_feed_accepts_lines_with_or_without_their_newline():
    a, b = LogAnalyzer(), LogAnalyzer()
    for line in ("make all", "src/a.c:1:2: error: boom", "make: *** [all] Error 1"):
        a.feed(line)
        b.feed(line + "\n")
    assert a.finish().to_dict() == b.finish().to_dict()


def test_finish_is_idempotent():
    analyzer = LogAnalyzer()
    analyzer.feed("error: boom")
    assert analyzer.finish() is analyzer.finish()


def test_invalid_utf8_is_replaced_not_fatal():
    result = analyze_stream(io.BytesIO(b"ok\n\xff\xfe error: bad \xc3 byte\n"))
    assert result.total_lines == 2
    assert result.errors[0].line == 2
    assert "\ufffd" in result.errors[0].text


def test_an_enormous_line_is_counted_once_and_stored_bounded():
    data = b"x" * 3_000_000 + b" error: at the end\nerror: next line\n"
    result = analyze_stream(io.BytesIO(data), chunk_size=65536)
    assert result.total_lines == 2
    assert [e.line for e in result.errors] == [2]
    assert all(len(e.text) <= 2000 for e in result.errors)


def test_counts_stay_exact_when_the_lists_are_capped():
    lines = [f"src/m{i}.c:{i}:1: error: bad thing {i}" for i in range(1500)]
    lines += [f"src/m{i}.c:{i}:1: warning: odd thing {i}" for i in range(700)]
    result = analyze_lines(lines)
    assert result.error_count == 1500
    assert result.warning_count == 700
    assert len(result.errors) == MAX_FINDINGS
    assert len(result.warnings) == MAX_FINDINGS
    assert result.errors[0].line == 1


def test_to_dict_has_exactly_the_summarize_log_shape():
    data = fixture("pytest_github_actions.log").to_dict()
    assert list(data) == [
        "total_lines",
        "error_count",
        "warning_count",
        "errors",
        "warnings",
        "failures",
        "primary_error",
        "excerpt",
    ]
    assert set(data["errors"][0]) == {"line", "text", "fingerprint"}
    assert set(data["failures"][0]) == {"runner", "test", "message", "line"}
    assert set(data["primary_error"]) == {"line", "text", "fingerprint"}
    assert set(data["excerpt"]) == {"start", "end", "text"}
    json.dumps(data)  # serialisable as is


# ---- noise ------------------------------------------------------------------------------------


def test_github_wrapper_noise_is_not_an_error():
    result = analyze_text(
        "##[error]Process completed with exit code 1.\n"
        "##[error]Executing the custom container implementation failed. Please contact your self hosted runner administrator.\n"
    )
    assert result.error_count == 0
    assert result.primary_error is None


def test_the_step_script_echoed_by_github_actions_is_not_output():
    result = fixture("pytest_github_actions.log")
    assert all("this echo is part of the script" not in e.text for e in result.errors)


def test_maven_help_boilerplate_is_not_an_error():
    result = fixture("maven_surefire_jenkins.log")
    texts = [e.text for e in result.errors]
    assert not any("re-run Maven" in t or "[Help 1]" in t for t in texts)


@pytest.mark.parametrize(
    "line",
    [
        "[INFO] Tests run: 4, Failures: 0, Errors: 0, Skipped: 0, Time elapsed: 0.2 s - in com.acme.FooTest",
        "Cache errors                          0",
        "Compilation failures                  0",
        "tests/test_errors.py::test_error_page PASSED",
        "  if-no-files-found: error",
        "[INFO] no errors, no warnings",
        "gcc -Werror -c main.c",
    ],
)
def test_lines_that_only_look_like_errors_are_not_errors(line):
    assert analyze_text(line + "\n").error_count == 0


def test_explicit_warning_levels_make_warnings_not_errors():
    result = analyze_text(
        "[WARNING] Failure to transfer org.acme:lib:1.0 from https://repo.example/ was cached in the local repository\n"
        "npm WARN deprecated left-pad@1.3.0: use String.prototype.padStart()\n"
        "warning: unused variable `x`\n"
    )
    assert result.error_count == 0
    assert result.warning_count == 3


# ---- test runners -------------------------------------------------------------------------------


def test_pytest_failures_in_github_actions():
    result = fixture("pytest_github_actions.log")
    assert failures(result) == [
        ("pytest", "tests/test_cart.py::test_total_with_discount", "assert 40 == 36"),
        (
            "pytest",
            "tests/test_checkout.py::test_payment_declined",
            "shop.gateway.PaymentError: card declined: insufficient_funds",
        ),
    ]
    # The per-test report under FAILURES, not the progress line, is what explains the failure.
    assert result.primary_error.line == 26
    assert "test_total_with_discount" in result.primary_error.text
    assert result.primary_error.kind == "test"
    assert result.excerpt.start <= 26 and result.excerpt.end >= 33
    assert "E       assert 40 == 36" in result.excerpt.text


def test_unittest_failures_and_errors():
    result = fixture("unittest_failures.log")
    assert failures(result) == [
        ("unittest", "tests.test_dates.DateTests.test_timezone", "KeyError: 'Mars/Olympus_Mons'"),
        ("unittest", "tests.test_dates.DateTests.test_parse_range", "AssertionError: 6 != 7"),
    ]
    assert result.primary_error.line == 8
    assert (result.excerpt.start, result.excerpt.end) == (8, 17)


def test_jest_failures_and_a_suite_that_failed_to_run():
    result = fixture("jest_failures.log")
    assert failures(result) == [
        (
            "jest",
            "formatPrice \u203a rounds half cents up",
            "expect(received).toBe(expected) // Object.is equality",
        ),
        (
            "jest",
            "src/api/__tests__/client.test.ts (suite failed to run)",
            "Cannot find module '../retry' from 'src/api/client.ts'",
        ),
    ]
    assert result.failures[0].file == "src/lib/__tests__/price.test.ts"
    assert result.primary_error.line == 11
    assert "Received:" in result.excerpt.text


def test_mocha_failures_with_multi_line_titles():
    result = fixture("mocha_failures.log")
    assert failures(result) == [
        (
            "mocha",
            "Orders #create rejects an empty basket",
            "AssertionError [ERR_ASSERTION]: Missing expected exception (ValidationError).",
        ),
        (
            "mocha",
            "Orders #cancel keeps the audit trail",
            "AssertionError [ERR_ASSERTION]: Expected values to be strictly equal:",
        ),
    ]
    # The numbered listing above "2 failing" ("1) rejects an empty basket") is not a failure report.
    assert [f.line for f in result.failures] == [17, 24]
    assert result.primary_error.line == 17


def test_cargo_test_failures_with_old_and_new_panic_formats():
    result = fixture("cargo_test_failures.log")
    assert failures(result) == [
        (
            "cargo",
            "money::tests::rejects_negative",
            "assertion `left == right` failed: negative amounts must be rejected",
        ),
        (
            "cargo",
            "parse::tests::parses_amount",
            "called `Result::unwrap()` on an `Err` value: InvalidDigit",
        ),
    ]
    assert result.primary_error.text == "---- money::tests::rejects_negative stdout ----"
    assert "panicked at src/money.rs:88:9" in result.excerpt.text


def test_go_test_failures_with_subtests():
    result = fixture("go_test_failures.log")
    assert failures(result) == [
        ("go", "TestReserve", ""),
        (
            "go",
            "TestReserve/out_of_stock",
            "reserve_test.go:48: Reserve() error = <nil>, want ErrOutOfStock",
        ),
    ]
    assert result.failures[1].file == "reserve_test.go"
    assert result.primary_error.line == 6
    # The excerpt ends with the failure's message, not on the "FAIL" summaries after it.
    assert (result.excerpt.start, result.excerpt.end) == (6, 8)
    # The package's outcome line is listed once; the bare "FAIL" lines are only counted.
    assert lines_of(result) == [6, 7, 8, 10]
    assert result.error_count == 6


def test_go_build_failure_points_at_the_compiler_error():
    result = fixture("go_build_failure.log")
    assert result.primary_error.line == 3
    assert result.primary_error.kind == "compiler"
    # The "# package" header belongs to the excerpt.
    assert result.excerpt.start == 2


def test_maven_surefire_failure_in_jenkins():
    result = fixture("maven_surefire_jenkins.log")
    assert failures(result) == [
        (
            "junit",
            "com.acme.billing.TaxCalculatorTest.appliesReducedRate",
            "org.opentest4j.AssertionFailedError: expected: <7.00> but was: <19.00>",
        )
    ]
    assert result.primary_error.line == 15
    assert "<<< FAILURE!" in result.primary_error.text
    assert "TaxCalculatorTest.java:34" in result.excerpt.text


def test_an_exception_logged_by_a_passing_test_class_is_not_the_primary_error():
    result = fixture("maven_surefire_jenkins.log")
    assert result.primary_error.line != 9
    # Still counted as an error line, but not listed: it did not fail the build.
    assert result.error_count == 8
    assert 9 not in lines_of(result)
    assert {15, 16, 25} <= set(lines_of(result))


def test_gradle_test_failure():
    result = fixture("gradle_test_failures.log")
    assert failures(result) == [
        (
            "gradle",
            "ShippingRulesTest.expressCostsExtra()",
            "java.lang.AssertionError: expected:<12.5> but was:<10.0>",
        )
    ]
    assert result.primary_error.line == 7


def test_rspec_failure_in_gitlab_ci():
    result = fixture("rspec_gitlab.log")
    assert failures(result) == [("rspec", "Invoice#total includes VAT", "expected: 121 got: 100")]
    assert result.primary_error.line == 11
    assert "Failure/Error: expect(invoice.total).to eq(121)" in result.excerpt.text


def test_failures_list_is_capped_but_keeps_the_first_ones():
    lines = [f"--- FAIL: TestCase{i} (0.00s)\n    case_test.go:{i}: bad" for i in range(450)]
    result = analyze_text("\n".join(lines) + "\n")
    assert len(result.failures) == MAX_FINDINGS
    assert result.failures[0].test == "TestCase0"
    assert result.failures[0].message == "case_test.go:0: bad"


@pytest.mark.parametrize(
    ("text", "runner", "test"),
    [
        ("[  FAILED  ] ParserTest.HandlesEmpty (3 ms)\n", "gtest", "ParserTest.HandlesEmpty"),
        ("not ok 3 - parses dates\n", "tap", "parses dates"),
        (
            "FAILED tests/test_a.py::TestX::test_y - ValueError: nope\n",
            "pytest",
            "tests/test_a.py::TestX::test_y",
        ),
        (
            "/src/tests/cart.cpp:42: FAILED:\n  REQUIRE( total == 121 )\n",
            "catch2",
            "/src/tests/cart.cpp:42",
        ),
        (
            '/src/cart.cpp(42): error: in "cart/total": check total == 121 has failed\n',
            "boost",
            "cart/total",
        ),
        ("The following tests FAILED:\n\t  3 - unit_tests (Failed)\n", "ctest", "unit_tests"),
        (
            "\u2500\u2500 Failure (test-cart.R:12:3): totals include VAT \u2500\u2500\u2500\u2500\n",
            "testthat",
            "totals include VAT",
        ),
        (
            "Test Failed at /ci/pkg/test/runtests.jl:12\n  Expression: x == 1\n",
            "julia",
            "/ci/pkg/test/runtests.jl:12",
        ),
        (
            "    [FAIL] Shop.Tests.CartTests.TotalIncludesVat\n",
            "dotnet",
            "Shop.Tests.CartTests.TotalIncludesVat",
        ),
        (
            "  1) Failed : Shop.Tests.CartTests.Total\n  Expected: 121\n",
            "dotnet",
            "Shop.Tests.CartTests.Total",
        ),
        (
            "  Failed Shop.Tests.CartTests.Total [12 ms]\n  Error Message:\n",
            "dotnet",
            "Shop.Tests.CartTests.Total",
        ),
    ],
)
def test_other_test_result_lines(text, runner, test):
    result = analyze_text(text)
    assert [(f.runner, f.test) for f in result.failures] == [(runner, test)]


# ---- compilers and tools ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "line", "kind", "snippet"),
    [
        ("gcc_make.log", 8, "compiler", "implicit declaration of function 'buffer_grow'"),
        ("rustc_error.log", 2, "compiler", "error[E0425]: cannot find value `balanse`"),
        ("tsc_errors.log", 4, "compiler", "error TS2322"),
        ("javac_error.log", 2, "compiler", "Exporter.java:31: error: cannot find symbol"),
        ("mypy_errors.log", 2, "compiler", 'incompatible type "str"; expected "Item"'),
        ("eslint_errors.log", 5, "lint", "'unused' is assigned a value but never used"),
        ("npm_eresolve.log", 3, "dependency", "npm ERR! code ERESOLVE"),
        (
            "pip_resolution.log",
            4,
            "dependency",
            "Could not find a version that satisfies the requirement shopkit",
        ),
        (
            "cargo_dependency.log",
            2,
            "dependency",
            "failed to select a version for the requirement `serde",
        ),
        ("go_mod_dependency.log", 3, "dependency", "v1.4.2.mod: 404 Not Found"),
    ],
)
def test_tool_errors(name, line, kind, snippet):
    result = fixture(name)
    assert result.primary_error.line == line
    assert result.primary_error.kind == kind
    assert snippet in result.primary_error.text
    assert result.excerpt.start <= line <= result.excerpt.end


def test_compiler_warnings_and_wrappers():
    result = fixture("gcc_make.log")
    assert [w.line for w in result.warnings] == [5]
    # "make: *** ... Error 1" is counted (it is an error line) but never explains the failure,
    # so it is not listed next to the compiler error it wraps.
    assert lines_of(result) == [8]
    assert result.error_count == 2
    assert "^~~~~~~~~~~" in result.excerpt.text


def test_tsc_reports_both_error_formats():
    result = fixture("tsc_errors.log")
    assert [e.line for e in result.errors if "error TS" in e.text] == [4, 5]


def test_eslint_warnings_are_warnings():
    result = fixture("eslint_errors.log")
    assert [w.line for w in result.warnings] == [6]
    assert [e.line for e in result.errors if e.kind == "lint"][:2] == [5, 9]


def test_travis_log_with_folds_timers_and_progress():
    result = fixture("travis_npm.log")
    assert result.primary_error.line == 13
    assert (
        result.primary_error.text == "TypeError: Cannot read properties of undefined (reading 'id')"
    )
    assert "at buildOrder" in result.excerpt.text
    # The wrapper lines "The command ... exited with 1." and "Done." are noise, not errors.
    assert result.error_count == 1


# ---- primary error heuristics -------------------------------------------------------------------


def test_the_error_in_the_failed_step_beats_errors_in_other_steps():
    log = "\n".join(
        [
            "##[group]Run ./scripts/setup.sh",
            "##[endgroup]",
            "error: optional cache not found, continuing",
            "##[group]Run make test",
            "##[endgroup]",
            "src/app.c:10:3: warning: unused",
            "ERROR: integration database did not start",
            "##[error]Process completed with exit code 2.",
            "Post job cleanup.",
            "fatal: could not read Username for 'https://github.com'",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.primary_error.line == 7


def test_a_repeated_identical_error_points_at_the_last_attempt():
    log = "\n".join(
        [
            "##[error]fatal: couldn't find remote ref refs/tags/v9",
            "Retrying in 10 seconds",
            "##[error]fatal: couldn't find remote ref refs/tags/v9",
            "Retrying in 20 seconds",
            "##[error]fatal: couldn't find remote ref refs/tags/v9",
            "##[error]Process completed with exit code 128.",
        ]
    )
    assert analyze_text(log + "\n").primary_error.line == 5


def test_a_chained_python_exception_points_at_the_exception_finally_raised():
    log = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "/app/tools/sync.py", line 10, in run',
            "    subprocess.run(cmd, check=True, timeout=5)",
            "subprocess.TimeoutExpired: Command '['git', 'fetch']' timed out after 5 seconds",
            "",
            "The above exception was the direct cause of the following exception:",
            "",
            "Traceback (most recent call last):",
            '  File "/app/tools/sync.py", line 40, in <module>',
            "    main()",
            '  File "/app/tools/sync.py", line 12, in run',
            '    raise RuntimeError("Failed to fetch the release branch") from e',
            "RuntimeError: Failed to fetch the release branch",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.primary_error.line == 13
    assert result.excerpt.start == 1 and result.excerpt.end == 13


def test_an_ignored_exception_is_not_the_primary_error():
    log = "\n".join(
        [
            "ERROR: migrations are out of date",
            "Exception ignored in atexit callback: <function _exit_function at 0x7f>",
            "Traceback (most recent call last):",
            '  File "/usr/lib/python3.12/multiprocessing/util.py", line 357, in _exit_function',
            "    p.join()",
            "KeyboardInterrupt:",
        ]
    )
    assert analyze_text(log + "\n").primary_error.line == 1


def test_a_failed_step_without_a_recognisable_error_falls_back_to_its_last_message():
    log = "\n".join(
        [
            "##[group]Run ./check-size.sh",
            "##[endgroup]",
            "Checking bundle size",
            "Bundle is 912 kB, budget is 500 kB",
            "##[error]Process completed with exit code 1.",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.primary_error.line == 4
    assert result.error_count == 0  # a guess, not an error line


def test_an_exception_only_saying_that_something_failed_loses_to_the_real_one():
    log = "\n".join(
        [
            "test_model 1/1 failed! Received signal: SIGSEGV",
            "Traceback (most recent call last):",
            '  File "/src/run_test.py", line 10, in <module>',
            "    raise RuntimeError(failure.message)",
            "RuntimeError: test_model 1/1 failed!",
        ]
    )
    assert analyze_text(log + "\n").primary_error.line == 1


def test_primary_fingerprint_matches_the_same_error_in_the_errors_list():
    result = fixture("gcc_make.log")
    same = [e for e in result.errors if e.line == result.primary_error.line]
    assert same and same[0].fingerprint == result.primary_error.fingerprint


def test_the_same_failure_in_two_builds_has_the_same_fingerprint():
    first = analyze_text(
        "2024-01-01T10:00:00.0000000Z /home/runner/work/a/a/src/cart.c:57:5: error: implicit declaration of function 'grow'\n"
    )
    second = analyze_text(
        "[2024-02-02T11:11:11.111Z] /builds/acme/a/src/cart.c:61:9: error: implicit declaration of function 'grow'\n"
    )
    third = analyze_text("/builds/acme/a/src/cart.c:61:9: error: expected ';' before '}' token\n")
    assert first.primary_error.fingerprint == second.primary_error.fingerprint
    assert first.primary_error.fingerprint != third.primary_error.fingerprint


# ---- more runners ---------------------------------------------------------------------------------

PHPUNIT = """PHPUnit 10.5.2 by Sebastian Bergmann and contributors.

..F.                                                                4 / 4 (100%)

There was 1 failure:

1) Tests\\Unit\\CartTest::testTotalIncludesTax
Failed asserting that 100 is identical to 121.

/app/tests/Unit/CartTest.php:27

FAILURES!
Tests: 4, Assertions: 9, Failures: 1.
"""

EXUNIT = """  1) test totals include VAT (Shop.CartTest)
     test/shop/cart_test.exs:12
     Assertion with == failed
     code:  assert Cart.total(cart) == 121
     left:  100
     right: 121

Finished in 0.1 seconds (0.00s async, 0.1s sync)
3 tests, 1 failure
"""

SCALATEST = """[info] CartSpec:
[info] - should sum items
[info] - should include VAT *** FAILED ***
[info]   100 did not equal 121 (CartSpec.scala:14)
[info] Run completed in 312 milliseconds.
"""

BAZEL = """FAIL: //shop:cart_test (see /home/ci/.cache/bazel/testlogs/shop/cart_test/test.log)
INFO: Build completed, 1 test FAILED, 3 total actions
"""


@pytest.mark.parametrize(
    ("text", "expected", "primary_line"),
    [
        (
            PHPUNIT,
            (
                "phpunit",
                "Tests\\Unit\\CartTest::testTotalIncludesTax",
                "Failed asserting that 100 is identical to 121.",
            ),
            7,
        ),
        (EXUNIT, ("exunit", "Shop.CartTest: totals include VAT", "Assertion with == failed"), 1),
        (
            SCALATEST,
            ("scalatest", "should include VAT", "100 did not equal 121 (CartSpec.scala:14)"),
            3,
        ),
        (BAZEL, ("bazel", "//shop:cart_test", ""), 1),
    ],
)
def test_phpunit_exunit_scalatest_and_bazel(text, expected, primary_line):
    result = analyze_text(text)
    assert failures(result) == [expected]
    assert result.primary_error.line == primary_line


def test_a_numbered_list_outside_a_failure_report_is_not_a_failure():
    result = analyze_text("Steps:\n  1) install dependencies\n  2) run the failing suite again\n")
    assert result.failures == [] and result.error_count == 0


def test_failing_to_upload_reports_loses_to_the_real_error():
    log = "\n".join(
        [
            "CheckoutSuite - failed. This test class should extend TestCase but it doesn't.",
            "Failed to upload artifacts: Unable to locate credentials",
            "Error uploading metric test_stats to DynamoDB: AccessDenied",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.error_count == 3
    assert result.primary_error.line == 1


def _java_failure(method: str, line: int) -> str:
    return "\n".join(
        [
            "[ERROR] Tests run: 1, Failures: 0, Errors: 1, Skipped: 0, Time elapsed: 0.1 s <<< FAILURE! - in com.acme.OrderTest",
            'java.lang.NullPointerException: Cannot invoke "Customer.id()" because "c" is null',
            f"\tat com.acme.orders.OrderService.{method}(OrderService.java:{line})",
            f"\tat com.acme.orders.OrderTest.places(OrderTest.java:{line + 40})",
            "\tat java.base/java.util.ArrayList.forEach(ArrayList.java:1596)",
            "",
        ]
    )


def test_exception_fingerprints_fold_in_the_project_frames_that_follow_them():
    def exception_fingerprint(text: str) -> str:
        [finding] = [
            e
            for e in analyze_text(text).errors
            if e.text.startswith("java.lang.NullPointerException")
        ]
        return finding.fingerprint

    same_place = exception_fingerprint(_java_failure("place", 88))
    moved_lines = exception_fingerprint(_java_failure("place", 91))
    other_place = exception_fingerprint(_java_failure("cancel", 88))
    assert same_place == moved_lines
    assert same_place != other_place


def test_python_exception_fingerprints_fold_in_the_traceback_frames():
    def tb(func: str) -> str:
        return "\n".join(
            [
                "Traceback (most recent call last):",
                f'  File "/srv/app/billing/{func}.py", line 12, in {func}',
                "    total = prices[sku]",
                "KeyError: 'sku-123'",
            ]
        )

    assert (
        analyze_text(tb("invoice")).primary_error.fingerprint
        != analyze_text(tb("refund")).primary_error.fingerprint
    )
    assert (
        analyze_text(tb("invoice")).primary_error.fingerprint
        == analyze_text(tb("invoice").replace("line 12", "line 30")).primary_error.fingerprint
    )


def test_an_exception_raised_while_handling_another_is_secondary():
    log = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "/srv/tools/notify.py", line 23, in <module>',
            "    gh = Github(login, token)",
            "NameError: name 'Github' is not defined",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            '  File "/srv/tools/notify.py", line 35, in <module>',
            "    except GithubException as e:",
            "NameError: name 'GithubException' is not defined",
        ]
    )
    assert analyze_text(log + "\n").primary_error.line == 4


def test_lintrunner_style_errors_and_warnings():
    log = "\n".join(
        [
            ">>> Lint for torch/utils/data.py:",
            "",
            "  Error (MYPY) [attr-defined]",
            '    Module "torch" has no attribute "frobnicate"',
            "  Warning (FLAKE8) E501",
            "    line too long (121 > 120 characters)",
        ]
    )
    result = analyze_text(log + "\n")
    assert [(e.line, e.kind) for e in result.errors] == [(3, "lint")]
    assert [w.line for w in result.warnings] == [5]


def test_a_line_that_only_says_something_failed_loses_to_one_that_says_why():
    log = "\n".join(
        [
            "Checking API compatibility",
            "REGRESSION: benchmark 'startup' failed, actual 39636 is 10.19% higher than expected 35970",
            "Lint failed!",
        ]
    )
    assert analyze_text(log + "\n").primary_error.line == 2


def test_looking_back_does_not_depend_on_how_the_log_was_chunked():
    log = (
        "##[group]Run ./check-size.sh\n##[endgroup]\n"
        + "".join(f"measuring chunk {i}\n" for i in range(40))
        + "Bundle is 912 kB, budget is 500 kB\n##[error]Process completed with exit code 1.\n"
    ).encode()
    expected = analyze_stream(io.BytesIO(log)).to_dict()
    assert expected["primary_error"]["text"] == "Bundle is 912 kB, budget is 500 kB"
    for size in (1, 3, 17, 40, 100):
        assert analyze_stream(io.BytesIO(log), chunk_size=size).to_dict() == expected


def test_what_the_analyzer_keeps_is_bounded_whatever_the_log_size():
    from builds import logparse

    analyzer = LogAnalyzer()
    for i in range(30_000):
        analyzer.feed(f"src/mod{i}.c:{i}:1: error: {'x' * 300} {i}")
        analyzer.feed(f"    detail line for error {i}")
        analyzer.feed("")
        analyzer.feed("")
    result = analyzer.finish()
    assert result.error_count == 30_000
    assert len(analyzer._blocks) <= logparse._MAX_BLOCKS
    assert all(len(b.lines) <= logparse._MAX_BLOCK_STORE for b in analyzer._blocks.values())
    assert len(analyzer._candidates) + len(analyzer._recent_candidates) <= logparse._MAX_CANDIDATES
    assert result.excerpt.start <= result.primary_error.line <= result.excerpt.end


@pytest.mark.parametrize(
    "marker",
    [
        "##[error]Bash exited with code '1'.",  # Azure Pipelines
        "Exited with code exit status 1",  # CircleCI
        "\U0001f6a8 Error: The command exited with status 1",  # Buildkite
        "Process exited with code 1",  # TeamCity
        "##[error]Process completed with exit code 1.",  # GitHub Actions
        'The command "make test" exited with 2.',  # Travis CI
        "ERROR: Job failed: exit code 1",  # GitLab CI
        "Build step 'Execute shell' marked build as failure",  # Jenkins
    ],
)
def test_ci_step_failure_markers_are_noise_that_mark_the_step_failed(marker):
    log = "\n".join(
        [
            "##[section]Starting: Lint",
            "ERROR: flake8 not installed, skipping",
            "##[section]Starting: Test",
            "Checking bundle size",
            "Bundle is 912 kB, budget is 500 kB",
            marker,
        ]
    )
    result = analyze_text(log + "\n")
    assert result.error_count == 1  # the marker itself is not an error line
    # The failed step's last message beats an error printed by a step that went on fine.
    assert result.primary_error.line == 5


def test_azure_pipelines_failed_step_wins():
    log = "\n".join(
        [
            "##[section]Starting: Restore",
            "error: optional feed unreachable, continuing",
            "##[section]Starting: Test",
            "error: 3 tests failed in OrdersTests",
            "##[error]Bash exited with code '1'.",
        ]
    )
    assert analyze_text(log + "\n").primary_error.line == 4


def test_utf16_logs_from_windows_agents(tmp_path):
    path = tmp_path / "build.log"
    path.write_bytes(
        "\ufeffBuilding...\r\nC:\\src\\app\\main.cpp(12): error C2065: 'x': undeclared identifier\r\n".encode(
            "utf-16-le"
        )
    )
    result = analyze_path(path)
    assert result.total_lines == 2
    assert result.primary_error.line == 2
    assert result.primary_error.kind == "compiler"


def test_feeding_a_finished_analysis_is_an_error():
    analyzer = LogAnalyzer()
    analyzer.feed("error: boom")
    analyzer.finish()
    with pytest.raises(RuntimeError, match="finished"):
        analyzer.feed("more")
    with pytest.raises(RuntimeError, match="finished"):
        analyzer.feed_bytes(b"more\n")


def test_clang_fatal_error_and_linker_errors():
    log = "\n".join(
        [
            "In file included from src/main.c:3:",
            "src/net.h:9:10: fatal error: 'openssl/ssl.h' file not found",
            "#include <openssl/ssl.h>",
            "         ^~~~~~~~~~~~~~~",
            "1 error generated.",
        ]
    )
    result = analyze_text(log + "\n")
    assert (result.primary_error.line, result.primary_error.kind) == (2, "compiler")
    assert result.excerpt.start == 1  # the "In file included from" header belongs to it

    linked = analyze_text(
        "cc -o app main.o net.o\n"
        "/usr/bin/ld: main.o: in function `main':\n"
        "main.c:(.text+0x1c): undefined reference to `net_connect'\n"
        "collect2: error: ld returned 1 exit status\n"
    )
    assert linked.primary_error.line == 3
    assert linked.primary_error.kind == "compiler"


def test_each_echoed_shell_command_is_a_step_of_its_own():
    log = "\n".join(
        [
            "$ ./scripts/lint.sh",
            "ERROR: eslint cache not found, linting everything",
            "$ npm test",
            "Orders service should reject empty baskets failed",
            'The command "npm test" exited with 1.',
        ]
    )
    assert analyze_text(log + "\n").primary_error.line == 4


def test_the_reason_on_a_pytest_e_line_is_the_primary_error_of_a_collection_error():
    log = "\n".join(
        [
            "==================================== ERRORS ====================================",
            "____________________ ERROR collecting tests/test_reports.py _____________________",
            "ImportError while importing test module '/w/tests/test_reports.py'.",
            "tests/test_reports.py:3: in <module>",
            "    from shop.reports import monthly_totals",
            "E   ModuleNotFoundError: No module named 'pandas'",
            "=========================== short test summary info ============================",
            "ERROR tests/test_reports.py",
            "!!!!!!!!!!!!!!!!!!!! Interrupted: 1 error during collection !!!!!!!!!!!!!!!!!!!!",
        ]
    )
    analysis = analyze_text(log)
    assert analysis.primary_error is not None
    assert analysis.primary_error.text == "E   ModuleNotFoundError: No module named 'pandas'"


def test_an_indented_exception_under_a_failing_js_test_is_an_error():
    log = "FAIL src/Cart.test.tsx\n  \u25cf Cart \u203a renders\n\n    TypeError: Cannot read properties of undefined (reading 'length')\n"
    texts = [e.text.strip() for e in analyze_text(log).errors]
    assert "TypeError: Cannot read properties of undefined (reading 'length')" in texts


# ---- which error lines are listed -------------------------------------------------------------


def test_wrapper_lines_are_counted_but_not_listed_next_to_the_error_they_wrap():
    log = "\n".join(
        [
            "##[group]Run make test",
            "##[endgroup]",
            "Traceback (most recent call last):",
            '  File "run.py", line 3, in <module>',
            "    import shop.cart",
            "ImportError: cannot import name 'grow' from 'shop.cart'",
            "Got exit code 1",
            "make: *** [Makefile:8: test] Error 1",
            "##[error]Process completed with exit code 2.",
        ]
    )
    result = analyze_text(log + "\n")
    assert lines_of(result) == [6]
    assert result.error_count == 3
    # The excerpt is the traceback: it does not run on into the lines that restate it.
    assert (result.excerpt.start, result.excerpt.end) == (3, 6)


def test_a_wrapper_is_listed_when_nothing_more_specific_was_found():
    result = analyze_text("cc -c cart.c\nmake: *** [Makefile:8: cart.o] Error 1\n")
    assert lines_of(result) == [2]
    assert result.primary_error.line == 2


def test_a_retried_error_is_listed_once_at_the_attempt_that_failed_the_step():
    log = "\n".join(
        [
            "##[group]Run actions/checkout@v4",
            "##[endgroup]",
            "fatal: couldn't find remote ref refs/tags/v9",
            "The process '/usr/bin/git' failed with exit code 128",
            "Waiting 12 seconds before trying again",
            "fatal: couldn't find remote ref refs/tags/v9",
            "The process '/usr/bin/git' failed with exit code 128",
            "Waiting 15 seconds before trying again",
            "fatal: couldn't find remote ref refs/tags/v9",
            "##[error]The process '/usr/bin/git' failed with exit code 128",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.primary_error.line == 9
    assert lines_of(result) == [9]
    assert result.error_count == 6


def test_errors_of_a_step_that_did_not_fail_are_counted_but_not_listed():
    log = "\n".join(
        [
            "##[group]Run ./upload-metrics.sh",
            "##[endgroup]",
            "Error: could not reach metrics.example.com",
            "##[group]Run pytest",
            "##[endgroup]",
            "FAILED tests/test_cart.py::test_total - assert 3 == 4",
            "##[error]Process completed with exit code 1.",
        ]
    )
    result = analyze_text(log + "\n")
    assert lines_of(result) == [6]
    assert result.error_count == 2


def test_the_failing_steps_errors_are_listed_however_many_errors_came_before():
    lines = ["##[group]Run ./lint.sh", "##[endgroup]"]
    lines += [f"ERROR: style issue number {i} in module_{i}" for i in range(MAX_FINDINGS + 100)]
    lines += [
        "##[group]Run make",
        "##[endgroup]",
        "src/cart.c:57:5: error: implicit declaration of function 'grow'",
        "##[error]Process completed with exit code 2.",
    ]
    result = analyze_lines(lines)
    assert result.error_count == MAX_FINDINGS + 101
    assert [e.text for e in result.errors] == [
        "src/cart.c:57:5: error: implicit declaration of function 'grow'"
    ]
    assert result.primary_error.line == len(lines) - 1


def test_the_outcome_line_of_the_failing_report_is_listed_with_the_failure():
    log = "\n".join(
        [
            "=================================== FAILURES ===================================",
            "_________________________________ test_total __________________________________",
            "E       assert 3 == 4",
            "tests/test_app.py:7: AssertionError",
            "=========================== short test summary info ============================",
            "FAILED tests/test_app.py::test_total - assert 3 == 4",
            "========================= 1 failed, 1 passed in 0.05s ==========================",
        ]
    )
    result = analyze_text(log + "\n")
    assert lines_of(result) == [2, 6, 7]
    assert result.error_count == len(result.errors)


# ---- excerpt extent ---------------------------------------------------------------------------


def test_a_python_traceback_excerpt_starts_at_the_innermost_frame_of_the_projects_code():
    log = "\n".join(
        [
            "+ python tools/check_config.py",
            "Traceback (most recent call last):",
            '  File "/usr/lib/python3.12/runpy.py", line 198, in _run_module_as_main',
            "    return _run_code(code, main_globals, None,",
            '  File "/home/runner/work/shop/shop/tools/check_config.py", line 40, in <module>',
            "    main()",
            '  File "/home/runner/work/shop/shop/tools/check_config.py", line 12, in main',
            "    load(cfg)",
            '  File "/opt/venv/lib/python3.12/site-packages/yaml/__init__.py", line 81, in load',
            "    return loader.get_single_data()",
            "yaml.scanner.ScannerError: mapping values are not allowed here",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.primary_error.line == 11
    # The last call in the project's code and the library frames under it; not the entry point.
    assert (result.excerpt.start, result.excerpt.end) == (7, 11)
    assert result.excerpt.text.startswith(
        '  File "/home/runner/work/shop/shop/tools/check_config.py", line 12'
    )


def test_a_python_traceback_of_library_frames_only_starts_where_it_was_raised():
    log = "\n".join(
        [
            "Traceback (most recent call last):",
            '  File "/usr/lib/python3.12/runpy.py", line 198, in _run_module_as_main',
            "    return _run_code(code, main_globals, None,",
            '  File "/opt/venv/lib/python3.12/site-packages/pip/_internal/main.py", line 9, in main',
            "    return command.main(args)",
            "OSError: [Errno 28] No space left on device",
        ]
    )
    result = analyze_text(log + "\n")
    assert (result.excerpt.start, result.excerpt.end) == (4, 6)


def test_a_go_panic_excerpt_holds_its_goroutine_trace():
    log = "\n".join(
        [
            "ok  \tgithub.com/acme/shop/internal/store\t0.031s",
            "--- FAIL: TestCheckout (0.00s)",
            "panic: runtime error: invalid memory address or nil pointer dereference [recovered]",
            "\tpanic: runtime error: invalid memory address or nil pointer dereference",
            "[signal SIGSEGV: segmentation violation code=0x1 addr=0x128 pc=0xd0ce46]",
            "",
            "goroutine 24 [running]:",
            "testing.tRunner.func1.2({0xdf8580, 0x1835d80})",
            "\t/opt/hostedtoolcache/go/1.22.0/x64/src/testing/testing.go:1389 +0x24e",
            "github.com/acme/shop/internal/cart.(*Cart).Total(0x0)",
            "\t/home/runner/work/shop/shop/internal/cart/cart.go:53 +0x126",
            "created by testing.(*T).Run",
            "\t/opt/hostedtoolcache/go/1.22.0/x64/src/testing/testing.go:1486 +0x35f",
            "FAIL\tgithub.com/acme/shop/internal/cart\t0.012s",
            "ok  \tgithub.com/acme/shop/internal/pricing\t0.008s",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.primary_error.line == 2
    assert (result.excerpt.start, result.excerpt.end) == (2, 13)
    assert "cart.go:53" in result.excerpt.text


def test_a_post_processing_failure_after_the_real_one_is_counted_but_not_listed():
    log = "\n".join(
        [
            "test_model 1/1 failed!",
            "Collecting the test reports",
            "Uploading the test reports",
            "Failed to upload artifacts: Unable to locate credentials",
        ]
    )
    result = analyze_text(log + "\n")
    assert result.primary_error.line == 1
    assert lines_of(result) == [1]
    assert result.error_count == 2


# ---- classification shortcuts: they must not change what a line is -------------------------


@pytest.mark.parametrize("indent", ["", "  ", "\t", "\u2003"])
def test_level_tags_are_recognised_after_any_leading_whitespace(indent):
    result = analyze_text(
        f"{indent}INFO: Error while fetching cache\n{indent}[INFO] Failed to fetch cache\n"
        f"{indent}WARNING: disk almost full\n{indent}npm WARN deprecated left-pad\n"
    )
    assert (result.error_count, result.warning_count) == (0, 2)


def test_a_repeated_line_is_counted_and_located_each_time():
    result = analyze_text(
        "ERROR: connection reset\nok\nWARNING: slow disk\nok\nok\nok\n"
        "ERROR: connection reset\nok\nWARNING: slow disk\n"
    )
    assert (result.error_count, result.warning_count) == (2, 2)
    assert [w.line for w in result.warnings] == [3, 9]
    assert result.primary_error is not None and result.primary_error.line == 7


def test_a_repeated_line_whose_meaning_depends_on_context_is_read_again():
    # A Maven result line is a test failure only in the "[ERROR] Failures:" list.
    line = "[ERROR]   OrderTest.testTotal:42 expected: <1> but was: <2>"
    result = analyze_text(f"{line}\nok\nok\nok\n[ERROR] Failures: \n{line}\n")
    assert [(f.test, f.line) for f in result.failures] == [("OrderTest.testTotal", 6)]


def test_a_step_script_line_is_not_output_even_when_real_output_repeats_it():
    result = analyze_text(
        "ERROR: tests failed\n##[group]Run make test\nERROR: tests failed\n##[endgroup]\n"
        "ERROR: tests failed\n"
    )
    assert result.error_count == 2


def test_the_direct_re2_calls_find_what_the_public_re2_api_finds():
    from builds import logparse

    buf = (
        b"2024-03-14T09:12:03Z ok\n2024-03-14T09:12:04Z \x1b[31mERROR\x1b[0m: boom\n"
        b'npm ERR! code ELIFECYCLE\nall good\n  File "a.py", line 3\nFAIL\tpkg 0.5s\n\xff\xfe fail\n'
    )
    for begin, end in [(0, len(buf)), (buf.index(b"npm"), len(buf)), (0, buf.index(b"all"))]:
        public = [m.span() for m in logparse._HIT_RE.finditer(buf, begin, end)]
        assert logparse._hit_spans(buf, begin, end) == public
    for low in ["npm err! code elifecycle", "nothing here", "--- fail: testfoo (0.1s)", "\u25cf x"]:
        assert sorted(logparse._triggers(low) or []) == sorted(
            logparse._TRIGGER_SET.Match(low) or []
        )
