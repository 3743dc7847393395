"""builds.junit: failures from JUnit XML, streamed and defused. Pure, no database."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from builds.junit import JUnitError, iter_junit_failures, looks_like_junit, parse_junit

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


def test_pytest_report_gives_failures_and_errors_but_not_skips():
    failures = parse_junit(FIXTURES / "junit_pytest.xml")
    assert [(f.runner, f.test, f.message, f.file) for f in failures] == [
        (
            "junit",
            "tests.test_cart.test_total_with_discount",
            "assert 40 == 36",
            "tests/test_cart.py",
        ),
        (
            "junit",
            "tests.test_checkout.test_db_ready",
            'failed on setup with "ConnectionRefusedError: [Errno 111] Connection refused"',
            "tests/test_checkout.py",
        ),
    ]
    # The line is where the <failure>/<error> element sits in the report.
    assert [f.line for f in failures] == [6, 17]


def test_surefire_report_prefixes_the_exception_type_and_ignores_flaky_reruns():
    failures = parse_junit((FIXTURES / "junit_surefire.xml").read_bytes())
    assert [(f.test, f.message) for f in failures] == [
        (
            "com.acme.billing.TaxCalculatorTest.appliesReducedRate",
            "org.opentest4j.AssertionFailedError: expected: <7.00> but was: <19.00>",
        )
    ]


def test_a_failure_without_message_uses_the_first_line_of_its_body():
    xml = b"""<testsuite><testcase classname="pkg" name="TestX"><failure>
        handler_test.go:12: expected 200, got 504
        more output</failure></testcase></testsuite>"""
    assert parse_junit(xml)[0].message == "handler_test.go:12: expected 200, got 504"


@pytest.mark.parametrize("name", ["junit_billion_laughs.xml", "junit_external_entity.xml"])
def test_dtds_and_entities_are_refused_before_they_expand(name):
    with pytest.raises(JUnitError, match="not allowed"):
        parse_junit(FIXTURES / name)


def test_an_internal_entity_without_doctype_is_still_refused():
    # Without a DTD, an undefined entity is simply malformed.
    with pytest.raises(JUnitError):
        parse_junit(
            b'<testsuite><testcase name="t"><failure message="&boom;"/></testcase></testsuite>'
        )


@pytest.mark.parametrize(
    "xml",
    [b"", b"<testsuite><testcase name='a'>", b"not xml at all", b"<testsuite></testsuites>"],
)
def test_malformed_reports_raise_a_clear_error(xml):
    with pytest.raises(JUnitError, match="not well-formed"):
        parse_junit(xml)


def test_large_reports_are_read_in_chunks():
    cases = "".join(
        f'<testcase classname="c" name="t{i}"><failure message="m{i}">{"x" * 200}</failure></testcase>'
        for i in range(3000)
    )
    data = f"<testsuites><testsuite>{cases}</testsuite></testsuites>".encode()
    assert len(data) > 5 * 64 * 1024
    stream = io.BytesIO(data)
    first = next(iter_junit_failures(stream))
    assert first.test == "c.t0"
    assert stream.tell() < len(data)  # the first failure came out before the whole file was read
    assert len(parse_junit(data)) == 1000  # default cap
    assert len(parse_junit(data, max_failures=5000)) == 3000


def test_a_huge_failure_body_is_kept_bounded():
    xml = (
        b'<testsuite><testcase name="t"><failure>'
        + b"y" * 5_000_000
        + b"</failure></testcase></testsuite>"
    )
    [failure] = parse_junit(xml)
    assert len(failure.message) <= 2000


def test_looks_like_junit_sniffs_the_start_of_a_file():
    assert looks_like_junit((FIXTURES / "junit_pytest.xml").read_bytes()[:512])
    assert looks_like_junit(b"\xef\xbb\xbf\n<testsuite name='x'>")
    assert not looks_like_junit(b"<html><body>testsuite</body></html>")
    assert not looks_like_junit(b"2024-01-01T00:00:00Z error: <testsuite")
